from django.core.management.base import CommandError

from agentmesh.core.crypto import DecryptionError
from agentmesh.core.management.base import AuditedCommand
from masterdata.services import secret_keys_rotate


class Command(AuditedCommand):
    help = (
        "Re-encrypt every secret under the first key of FERNET_KEYS. Put the new key first, run "
        "this, then remove the old key."
    )

    def handle(self, *args, **options):
        try:
            count = secret_keys_rotate()
        except DecryptionError as exc:
            raise CommandError(f"{exc} Nothing was changed.") from exc
        self.stdout.write(self.style.SUCCESS(f"Re-encrypted {count} secret(s) under the first key."))
