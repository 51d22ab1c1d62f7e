"""Receivers connected in IntegrationConfig.ready()."""

import logging

logger = logging.getLogger("integration.webhooks")


def dispatch_event_to_webhooks(sender, instance, created, **kwargs) -> None:
    """A recorded event → deliveries to its owner's subscribed webhooks (never breaks recording)."""
    from django.db import transaction

    from .services.webhooks import is_subscribed, webhooks_dispatch_event

    if not created or not is_subscribed(instance.actor_id, instance.type):
        return  # most events: no savepoint, no query

    try:
        with transaction.atomic():  # a savepoint: a failure here cannot poison the event's write
            webhooks_dispatch_event(event=instance)
    except Exception:
        logger.warning("queueing webhook deliveries for event %s failed", instance.pk, exc_info=True)


def record_agent_run_succeeded(sender, instance, update_fields=None, **kwargs) -> None:
    """The agents app records failed and incomplete runs; a succeeded run has no event of its own,
    so the final save of a run (the one that sets `finished_at`) records `agent.run.succeeded`."""
    from agents.models import RunStatus
    from observability.services import event_record

    from .services.webhooks import is_subscribed

    if not update_fields or "finished_at" not in update_fields or instance.status != RunStatus.SUCCEEDED:
        return
    if not is_subscribed(instance.user_id, "agent.run.succeeded"):
        return  # only webhooks want it: no extra write on every run otherwise
    event_record(
        type="agent.run.succeeded",
        source="integration",
        actor=instance.user_id,
        resource=instance,
        payload={"agent_id": str(instance.agent_id), "duration_ms": instance.duration_ms},
    )


def record_waiting_for_approval(sender, instance, update_fields=None, **kwargs) -> None:
    """An execution that turns `waiting` with an approval step waiting → one
    `workflow.execution.waiting_approval` event (the engine records none)."""
    from observability.services import event_record
    from workflows.models import ExecutionStatus, StepStatus

    if not update_fields or "status" not in update_fields or instance.status != ExecutionStatus.WAITING:
        return
    nodes = list(
        instance.steps.filter(status=StepStatus.WAITING, wait_kind="approval").values_list(
            "node_id", flat=True
        )
    )
    if nodes:
        event_record(
            type="workflow.execution.waiting_approval",
            source="integration",
            actor=instance.user_id,
            resource=instance,
            payload={"workflow_id": str(instance.workflow_id), "nodes": nodes},
        )
