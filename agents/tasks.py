from celery import shared_task

from .models import AgentRun
from .runs import run_execute


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=900, time_limit=960)
def run_agent(run_id: str) -> str | None:
    """Execute a background run; a redelivered or finished run is left alone."""
    run = AgentRun.objects.select_related("version").filter(pk=run_id).first()
    if run is None:
        return None
    return run_execute(run=run).status
