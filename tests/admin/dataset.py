"""A few objects of every model the admin shows, made through the services (as real callers
make them), plus known secret plaintexts that must never appear in an admin page."""

from datetime import timedelta

from django.test import TestCase
from django.utils import timezone

from agentmesh.accounts.models import Role, User

SECRET_PLAINTEXT = "sk-admin-page-Zq8vN3kLmP0wXy7Rt-plaintext"
CONNECTION_SECRET = "conn-admin-page-9hT2bQ4mV7xK1-plaintext"
SEARCH_TERM = "admin-dataset"


def build() -> dict:
    """Create the dataset; returns the users and the plaintexts (secrets, tokens) to look for."""
    from agents.runs import run_execute, run_start
    from integration.services import demo_seed
    from masterdata import services as masterdata

    owner = User.objects.create_user(
        username=f"{SEARCH_TERM}-owner",
        email="owner@example.com",
        password="x-Passw0rd!",
        role=Role.DEVELOPER,
    )
    admin = User.objects.create_user(
        username=f"{SEARCH_TERM}-admin",
        email="admin@example.com",
        password="x-Passw0rd!",
        role=Role.ADMIN,
        is_staff=True,
        is_superuser=True,
    )
    plaintexts = [SECRET_PLAINTEXT, CONNECTION_SECRET]

    with TestCase.captureOnCommitCallbacks(execute=True):
        # masterdata: every kind, a secret used as a model's API key
        masterdata.skill_create(owner=owner, name=f"{SEARCH_TERM} skill")
        masterdata.constraint_create(
            owner=owner, name=f"{SEARCH_TERM} limits", type="resource_limit", rules={"max_turns": 5}
        )
        masterdata.prompt_create(owner=owner, name=f"{SEARCH_TERM} prompt", template="Hello {{ name }}!")
        secret = masterdata.secret_create(owner=owner, name=f"{SEARCH_TERM}-key", value=SECRET_PLAINTEXT)
        masterdata.model_config_create(
            owner=owner,
            name=f"{SEARCH_TERM} openai",
            provider="openai",
            model_name="gpt-4o-mini",
            api_key_secret=secret,
        )

        # tools, agents and one run with a tool call (echo provider, offline)
        demo_seed(owner=owner)
        from agents.models import Agent
        from tools.models import Tool
        from tools.services import tool_execute

        agent = Agent.objects.get(owner=owner, name="echo-assistant")
        run, _ = run_start(agent=agent, user=owner, input='call calculator {"expression": "6*7"}')
        run_execute(run=run)
        tool_execute(tool=Tool.objects.get(owner=owner, name="calculator"), arguments={"expression": "1+1"})

        # a workflow and a finished execution with its steps
        from workflows import services as workflows

        workflow = workflows.workflow_create(
            owner=owner,
            name=f"{SEARCH_TERM} flow",
            definition={
                "nodes": [{"id": "a", "type": "transform", "config": {"template": "{{ inputs.n }}"}}],
                "edges": [],
            },
        )
        workflows.workflow_execute(workflow=workflow, user=owner, inputs={"n": 3})

        # a template, one version, one instance
        from templates_app import services as templates

        template = templates.template_create(
            owner=owner,
            name=f"{SEARCH_TERM} template",
            kind="tool",
            body={"resources": [{"key": "t", "kind": "tool", "spec": _tool_spec()}]},
            parameters={"type": "object", "properties": {"prefix": {"type": "string", "default": "x"}}},
        )
        templates.template_instantiate(template=template, actor=owner, params={"prefix": "made"})

        # observability: an alert rule, a manual alert, a span, a log record, samples, series
        from observability import services as observability
        from observability.models import (
            AlertRule,
            LogRecord,
            MetricSeries,
            PipelineState,
            RequestSample,
            Span,
        )

        AlertRule.objects.create(
            owner=owner, name=f"{SEARCH_TERM} errors", metric="http_errors", threshold=10, window_minutes=5
        )
        observability.alert_create_manual(owner=owner, title=f"{SEARCH_TERM} disk full", severity="critical")
        now = timezone.now()
        Span.objects.create(
            trace_id="a" * 32,
            span_id="b" * 16,
            name=f"{SEARCH_TERM} span",
            kind="llm",
            start_time=now - timedelta(seconds=8),
            end_time=now,
            duration_ms=7914.103,
            status="ok",
            model="echo",
            input_tokens=10,
            output_tokens=5,
            cost_usd="0.000042",
        )
        LogRecord.objects.create(
            timestamp=now, level="warning", levelno=30, logger="admin.dataset", message=f"{SEARCH_TERM} log"
        )
        RequestSample.objects.create(
            timestamp=now, method="GET", route="/api/v1/agents/", status=200, duration_ms=12.5
        )
        MetricSeries.objects.create(name="agentmesh_test_total", labels='{"kind":"admin"}', value=3)
        PipelineState.objects.update_or_create(key="admin_dataset", defaults={"value": {"ok": True}})

    # integration (no on-commit here: nothing is delivered)
    from integration.models import IntegrationJob, WebhookDelivery
    from integration.services import connections
    from integration.services import webhooks as hooks

    connection_secret = masterdata.secret_create(
        owner=owner, name=f"{SEARCH_TERM}-conn", value=CONNECTION_SECRET
    )
    connections.api_connection_create(
        owner=owner,
        name=f"{SEARCH_TERM} api",
        base_url="http://127.0.0.1:9/",
        auth_type="bearer",
        secret=connection_secret,
        actor=owner,
    )
    webhook, webhook_secret = hooks.webhook_create(
        owner=owner,
        name=f"{SEARCH_TERM} hook",
        url="http://127.0.0.1:9/hook",
        event_types=["workflow.execution.failed"],
    )
    plaintexts.append(webhook_secret)
    WebhookDelivery.objects.create(
        webhook=webhook,
        message_id="msg_admin_dataset",
        event_type="workflow.execution.failed",
        payload={"type": "workflow.execution.failed", "data": {}},
        status="failed",
        response_code=500,
        error="HTTP 500",
        duration_ms=12.0,
    )
    _trigger, token, trigger_secret = hooks.trigger_create(
        workflow=workflow, actor=owner, name=f"{SEARCH_TERM} trigger"
    )
    plaintexts += [token, trigger_secret]
    IntegrationJob.objects.create(
        kind="sync_master_data", status="succeeded", owner=owner, params={"url": "http://127.0.0.1:9/"}
    )

    # third-party records: refresh tokens (one revoked), login failures
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from rest_framework_simplejwt.tokens import RefreshToken

    refresh = RefreshToken.for_user(owner)
    revoked = RefreshToken.for_user(owner)
    revoked.blacklist()
    plaintexts += [str(refresh), str(revoked)]
    for model in (AccessAttempt, AccessLog, AccessFailureLog):
        extra = {"failures_since_start": 2} if model is AccessAttempt else {}
        model.objects.create(
            username=f"{SEARCH_TERM}-owner",
            ip_address="198.51.100.7",
            user_agent="pytest",
            path_info="/api/v1/auth/login",
            http_accept="application/json",
            **extra,
        )

    # core and system
    from agentmesh.core.models import OutboundAllowRule
    from system.models import (
        Backup,
        BeatTick,
        ControlRequest,
        FeatureFlag,
        MetricSample,
        SystemCheck,
        WorkerHeartbeat,
    )

    OutboundAllowRule.objects.create(pattern="hooks.example.com", description=f"{SEARCH_TERM} rule")
    WorkerHeartbeat.objects.create(hostname=f"celery@{SEARCH_TERM}", seen_at=timezone.now(), beats=3)
    now = timezone.now()
    BeatTick.objects.create(sent_at=now, ran_at=now, lag_ms=12.5, ticks=4, worker=f"celery@{SEARCH_TERM}")
    SystemCheck.objects.create(key="beat_silent", state="ok", value=3.0, threshold=60.0, checked_at=now)
    MetricSample.objects.create(metric="cpu_percent", value=12.5, taken_at=now)
    ControlRequest.objects.create(kind="restart", target="breakers", requested_by=admin, result={"reset": 0})
    Backup.objects.create(
        status="succeeded",
        requested_format="portable",
        format="portable",
        note=f"{SEARCH_TERM} backup",
        file_name="agentmesh-admin-dataset.zip",
        size_bytes=1024,
        sha256="0" * 64,
        duration_seconds=0.5,
        started_at=now,
        finished_at=now,
    )
    FeatureFlag.objects.create(name=f"{SEARCH_TERM}-flag", percent=30, roles=["developer"])

    return {"owner": owner, "admin": admin, "plaintexts": plaintexts}


def _tool_spec() -> dict:
    return {"name": "{{ params.prefix }}_calc", "type": "builtin", "config": {"function": "calculator"}}
