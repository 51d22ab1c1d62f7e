"""Django's PostgreSQL backend (and its psycopg pool), failing fast while the server is away.

Without this, every database access of a request during an outage waits for a connection
(the pool timeout or connect_timeout): the request that already failed would wait again when
the end of the request records it. After a failure to connect, further attempts fail at once
for UNAVAILABLE_SECONDS: in this thread always, in every thread of the process when the
failure was the server's (not a pool that is merely busy).
"""

import time

from django.db.backends.postgresql import base

UNAVAILABLE_SECONDS = 2.0
_process_unavailable_until = [0.0]


def _pool_failures(pool) -> int:
    if pool is None:
        return 0
    stats = pool.get_stats()
    return stats.get("connections_errors", 0) + stats.get("connections_lost", 0)


class DatabaseWrapper(base.DatabaseWrapper):
    _unavailable_until = 0.0

    def get_new_connection(self, conn_params):
        if time.monotonic() < max(self._unavailable_until, _process_unavailable_until[0]):
            raise self.Database.OperationalError("the database was unreachable a moment ago")
        pool = self.pool
        failures = _pool_failures(pool)
        try:
            return super().get_new_connection(conn_params)
        except self.Database.OperationalError:
            until = time.monotonic() + UNAVAILABLE_SECONDS
            self._unavailable_until = until
            if pool is None or _pool_failures(pool) > failures:
                _process_unavailable_until[0] = until
            raise
