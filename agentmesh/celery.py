"""The Celery application. Configuration comes from Django settings (CELERY_ namespace)."""

import os

from celery import Celery, signals
from kombu.transport import TRANSPORT_ALIASES

# `filesystem://` (the embedded broker) means kombu's filesystem transport with atomic message
# writes, in every process that loads this app (agentmesh.core.fs_broker says why).
TRANSPORT_ALIASES["filesystem"] = "agentmesh.core.fs_broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentmesh.settings.dev")

app = Celery("agentmesh")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Celery's Django fixup closes every database connection around each task, so each task would
# open a new connection (a new PostgreSQL backend). Let Django's own per-request rule decide
# instead: keep a connection for DATABASE_CONN_MAX_AGE seconds (0, the default, closes it after
# every task as before) and drop one that errored or fails its health check.
app.conf.CELERY_DB_REUSE_MAX = 2**62  # read by celery.fixups.django: it then never closes itself


def keep_or_close_db_connections(sender=None, **kwargs) -> None:
    if sender is not None and not getattr(sender.request, "is_eager", False):
        from django.db import close_old_connections

        close_old_connections()


@signals.worker_init.connect
def _connect_db_connection_handlers(**kwargs) -> None:
    # Connected once the apps are ready, so after them the postrun handler runs last: a
    # connection the observability flush opened at postrun is closed too (with CONN_MAX_AGE 0).
    for signal in (signals.task_prerun, signals.task_postrun):
        signal.connect(keep_or_close_db_connections, dispatch_uid=f"agentmesh.db.{signal.name}")


@signals.worker_init.connect
@signals.beat_init.connect
def _persistent_db_connections(**kwargs) -> None:
    # Before the prefork children exist: they inherit no pool (agentmesh.core.db).
    from agentmesh.core.db import use_persistent_connections

    use_persistent_connections()
