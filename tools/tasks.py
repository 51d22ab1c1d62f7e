from celery import shared_task

from . import services


@shared_task(acks_late=True, reject_on_worker_lost=True, soft_time_limit=330, time_limit=360)
def run_tool_execution(execution_id: str) -> str | None:
    """Run a queued tool execution; a redelivered or finished one is left alone."""
    execution = services.tool_execution_run_queued(execution_id=execution_id)
    return execution.status if execution else None
