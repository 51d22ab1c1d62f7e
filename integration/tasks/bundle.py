"""Thin Celery entry point for integration jobs (master-data sync)."""

from celery import shared_task

__all__ = ["run_integration_job"]


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=600,
    time_limit=660,
    autoretry_for=(ConnectionError,),
    max_retries=3,
    retry_backoff=True,
    retry_jitter=True,
)
def run_integration_job(job_id: str) -> str | None:
    """Run one queued IntegrationJob by id (idempotent: a finished job is left alone)."""
    from ..services.sync import integration_job_run

    job = integration_job_run(job_id=job_id)
    return job.status if job else None
