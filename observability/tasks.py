"""Thin Celery entry points: alert evaluation and retention (beat), alert notifications, and a
trace probe used by the cross-process tracing test and operators."""

from celery import shared_task

from . import services
from .models import Alert


@shared_task(
    name="observability.tasks.evaluate_alert_rules", soft_time_limit=50, time_limit=55, ignore_result=True
)
def evaluate_alert_rules() -> dict:
    """Every minute (beat): evaluate enabled alert rules. Idempotent: one open alert per rule."""
    return services.alert_rules_evaluate()


@shared_task(
    name="observability.tasks.prune_observability_data",
    soft_time_limit=600,
    time_limit=660,
    ignore_result=True,
)
def prune_observability_data() -> dict:
    """Hourly (beat): delete recorded data past its retention, in batches."""
    return services.retention_prune()


@shared_task(
    name="observability.tasks.deliver_alert_notifications",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=60,
    time_limit=75,
    ignore_result=True,
)
def deliver_alert_notifications(alert_id: str, transition: str) -> None:
    """Send an alert to its rule's channels. Exits quietly if the alert is gone."""
    alert = Alert.objects.select_related("rule").filter(pk=alert_id).first()
    if alert is None or alert.rule_id is None:
        return
    services.alert_notify(alert=alert, transition=transition)


@shared_task(name="observability.tasks.trace_probe", soft_time_limit=30, time_limit=40, ignore_result=True)
def trace_probe(label: str) -> None:
    """Open one child span under the task's span (checks that traces cross processes)."""
    with services.span(f"probe.{label}", kind="internal", attributes={"agentmesh.probe": label}):
        services.event_record(type="observability.probe", source="observability", payload={"label": label})
