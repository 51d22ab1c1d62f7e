"""The lists of history and access records cost the same number of queries for one row as for
several (related rows are joined, never loaded per row)."""

import itertools

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from agentmesh.accounts.models import Role

pytestmark = pytest.mark.django_db
_n = itertools.count()


def _event(owner):
    from observability.services import event_record

    event_record(type="agent.deployed", actor=owner, message="x")


def _alert(owner):
    from observability.models import Alert, AlertRule

    rule = AlertRule.objects.create(owner=owner, name=f"r{next(_n)}", metric="events", threshold=1)
    now = timezone.now()
    Alert.objects.create(owner=owner, rule=rule, title="t", fired_at=now, last_seen_at=now)


def _delivery(owner):
    from integration.models import WebhookDelivery
    from integration.services.webhooks import webhook_create

    webhook, _ = webhook_create(
        owner=owner, name=f"h{next(_n)}", url="http://127.0.0.1:9/", event_types=["workflow.execution.failed"]
    )
    WebhookDelivery.objects.create(webhook=webhook, message_id="m", event_type="workflow.execution.failed")


def _job(owner):
    from integration.models import IntegrationJob

    IntegrationJob.objects.create(kind="sync_master_data", owner=owner)


def _prompt_version(owner):
    from masterdata.services import prompt_create

    prompt_create(owner=owner, name=f"p{next(_n)}", template="Hi")


def _template_rows(owner):
    from templates_app import services

    template = services.template_create(
        owner=owner,
        name=f"t{next(_n)}",
        kind="tool",
        body={
            "resources": [
                {
                    "key": "t",
                    "kind": "tool",
                    "spec": {
                        "name": f"calc{next(_n)}",
                        "type": "builtin",
                        "config": {"function": "calculator"},
                    },
                }
            ]
        },
    )
    services.template_instantiate(template=template, actor=owner)


def _tokens(owner):
    from rest_framework_simplejwt.tokens import RefreshToken

    RefreshToken.for_user(owner).blacklist()


def _trigger(owner):
    from integration.services.webhooks import trigger_create
    from workflows.services import workflow_create

    workflow = workflow_create(
        owner=owner,
        name=f"w{next(_n)}",
        definition={"nodes": [{"id": "a", "type": "transform", "config": {"template": "1"}}], "edges": []},
    )
    trigger_create(workflow=workflow, actor=owner, name="t")


CASES = [
    ("observability/event", _event),
    ("observability/alert", _alert),
    ("observability/alertrule", _alert),
    ("integration/webhookdelivery", _delivery),
    ("integration/webhook", _delivery),
    ("integration/integrationjob", _job),
    ("integration/workflowtrigger", _trigger),
    ("masterdata/promptversion", _prompt_version),
    ("templates_app/templateversion", _template_rows),
    ("templates_app/templateinstance", _template_rows),
    ("token_blacklist/outstandingtoken", _tokens),
    ("token_blacklist/blacklistedtoken", _tokens),
]


@pytest.mark.parametrize(("page", "make"), CASES, ids=[page for page, _ in CASES])
def test_list_queries_do_not_grow_with_rows(make_user, page, make):
    client = Client()
    client.force_login(make_user(Role.ADMIN, is_staff=True, is_superuser=True))
    owners = [make_user(Role.DEVELOPER) for _ in range(4)]
    make(owners[0])
    url = f"/admin/{page}/"
    client.get(url)  # warm (session, content types)
    with CaptureQueriesContext(connection) as one:
        assert client.get(url).status_code == 200
    for owner in owners[1:]:
        make(owner)
    with CaptureQueriesContext(connection) as four:
        assert client.get(url).status_code == 200
    assert len(four) == len(one), [q["sql"] for q in four.captured_queries][len(one) - 2 :]
