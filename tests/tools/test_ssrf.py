"""SSRF at the tool level: every forbidden destination is refused when the tool is saved,
validated and executed, and never receives a request; the allow-list lets an intranet host in."""

import pytest

from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.models import OutboundAllowRule
from agentmesh.core.safe_http import clear_allow_rule_cache
from tests.fake_api import FakeAPI
from tools import services
from tools.models import Tool

pytestmark = pytest.mark.django_db

FORBIDDEN = [
    "http://127.0.0.1/",
    "http://localhost/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://2130706433/",
    "http://0x7f000001/",
    "http://127.1/",
    "http://0.0.0.0/",
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00::1]/",
    "file:///etc/passwd",
    "gopher://x/",
]


@pytest.fixture
def nothing_allowed(settings):
    settings.SAFE_HTTP_ALLOWLIST = []
    clear_allow_rule_cache()
    yield
    clear_allow_rule_cache()


@pytest.fixture(scope="module")
def public_looking():
    """A server on 127.0.0.2 stands for a public host: only it is allow-listed where used."""
    api = FakeAPI(host="127.0.0.2").start()
    yield api
    api.stop()


def _saved_anyway(owner, url) -> Tool:
    """A row as an older rule set may have left it (the service would refuse it now)."""
    return Tool.objects.create(
        owner=owner, name="legacy", slug="legacy", type="http", config={"url": url},
        parameters_schema={"type": "object", "properties": {}},
    )  # fmt: skip


@pytest.mark.usefixtures("nothing_allowed")
@pytest.mark.parametrize("url", FORBIDDEN)
def test_forbidden_destination_is_refused_on_save_validate_and_execute(developer, url, fake_api):
    with pytest.raises(ServiceValidationError) as refused:
        services.tool_create(owner=developer, name="t", type="http", config={"url": url})
    assert "config.url" in refused.value.detail

    tool = _saved_anyway(developer, url)
    checks = services.tool_validate(tool=tool, actor=developer)
    assert not all(c.ok for c in checks)
    tool.refresh_from_db()
    assert tool.status == "draft"

    before = len(fake_api.requests)
    execution = services.tool_execute(tool=tool, arguments={}, actor=developer)
    assert execution.status == "failed" and execution.error_kind == "refused", execution.error
    assert len(fake_api.requests) == before


def test_redirect_to_loopback_is_refused_on_validate_and_execute(
    developer, settings, public_looking, fake_api
):
    settings.SAFE_HTTP_ALLOWLIST = ["127.0.0.2"]
    clear_allow_rule_cache()
    target = f"{fake_api.url}/items/1"  # 127.0.0.1: not allowed here
    tool = services.tool_create(
        owner=developer, name="hop", type="http", config={"url": f"{public_looking.url}/redirect?to={target}"}
    )
    checks = {c.name: c for c in services.tool_validate(tool=tool, actor=developer)}
    assert checks["url_allowed"].ok and not checks["reachable"].ok
    assert "127.0.0.1" in checks["reachable"].message
    before = len(fake_api.requests)
    execution = services.tool_execute(tool=tool, arguments={}, actor=developer)
    assert execution.status == "failed" and execution.error_kind == "refused"
    assert public_looking.last()["path"] == "/redirect" and len(fake_api.requests) == before


def test_admin_allow_rule_lets_an_intranet_host_through(developer, nothing_allowed, fake_api):
    with pytest.raises(ServiceValidationError):
        services.tool_create(
            owner=developer, name="intranet", type="http", config={"url": f"{fake_api.url}/items/{{id}}"}
        )
    OutboundAllowRule.objects.create(pattern="127.0.0.1", description="the intranet API")
    clear_allow_rule_cache()
    tool = services.tool_create(
        owner=developer, name="intranet", type="http", config={"url": f"{fake_api.url}/items/{{id}}"}
    )
    assert all(c.ok for c in services.tool_validate(tool=tool, actor=developer))
    execution = services.tool_execute(tool=tool, arguments={"id": "5"}, actor=developer)
    assert execution.status == "succeeded" and execution.result["id"] == "5"
