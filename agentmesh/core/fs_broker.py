"""The embedded broker: kombu's filesystem transport with atomic message writes.

kombu writes a message file in place (open, write), and a worker that lists the folder in
between moves and reads it empty or half-written; the JSONDecodeError that follows kills the
worker. Here a message is written under a name no reader picks up (`….msg.writing`: readers
take only names ending in `.<queue>.msg`) and renamed into place, which is atomic on POSIX.
"""

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs):
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = f"{final}.writing"
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel
