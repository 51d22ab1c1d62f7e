from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "integration"
    verbose_name = "Integration"

    def ready(self) -> None:
        from tools.connections import register_connection_resolver

        from .services.connections import ConnectionResolver

        register_connection_resolver(ConnectionResolver())

        # webhooks: every recorded event is offered to its owner's subscriptions (observability
        # never imports integration); two lifecycle events the other apps do not record themselves
        from django.db.models.signals import post_delete, post_save

        from agents.models import AgentRun
        from observability.models import ObservabilityEvent
        from workflows.models import WorkflowExecution

        from . import signals
        from .models import Webhook
        from .services.webhooks import subscriptions_clear

        post_save.connect(subscriptions_clear, sender=Webhook, dispatch_uid="integration.subs.saved")
        post_delete.connect(subscriptions_clear, sender=Webhook, dispatch_uid="integration.subs.deleted")
        post_save.connect(
            signals.dispatch_event_to_webhooks,
            sender=ObservabilityEvent,
            dispatch_uid="integration.webhooks.dispatch",
        )
        post_save.connect(
            signals.record_agent_run_succeeded,
            sender=AgentRun,
            dispatch_uid="integration.agent_run_succeeded",
        )
        post_save.connect(
            signals.record_waiting_for_approval,
            sender=WorkflowExecution,
            dispatch_uid="integration.waiting_for_approval",
        )

        from .selectors_flows import flows_status
        from .selectors_status import connections_status, jobs_status, webhooks_status
        from .status import register_status_section

        register_status_section("flows", flows_status)
        register_status_section("webhooks", webhooks_status)
        register_status_section("connections", connections_status)
        register_status_section("jobs", jobs_status)
