"""API connections (OAuth2 client credentials with a token cache, checks) used by HTTP tools, and
external-tool import from real OpenAPI and MCP servers on 127.0.0.1."""

import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import pytest
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integration.models import ApiConnection
from integration.services.connections import external_tool_import
from masterdata.services import secret_create
from observability import buffer
from observability.models import ObservabilityEvent
from tests.api_base import assert_problem
from tests.tools.test_mcp_executor import mcp_url  # noqa: F401  (the MCP server fixture)
from tests.tools.test_openapi_import import pet_server, petstore  # noqa: F401  (the OpenAPI server)
from tools.models import Tool, ToolStatus
from tools.services import tool_create, tool_execute

WRITE = re.compile(r"\s*(INSERT|UPDATE|DELETE)\b", re.I)
CLIENT_SECRET = "oauth-client-S3CRET-value-7f2c"
API_KEY = "api-key-VALUE-91ab44"


# --- a fake OAuth2 token endpoint and an API that requires its bearer token ---------------------
class OAuthServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OAuthHandler)
        self.lock = threading.Lock()
        self.token_requests: list[dict] = []
        self.valid: set[str] = set()
        self.api_calls: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def revoke_all(self) -> None:
        with self.lock:
            self.valid.clear()


class OAuthHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OAuthServer

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, value) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if self.path != "/token":
            return self._json(404, {})
        with self.server.lock:
            self.server.token_requests.append(form)
            n = len(self.server.token_requests)
        ok = (
            form.get("grant_type") == "client_credentials"
            and form.get("client_id") == "agentmesh"
            and form.get("client_secret") == CLIENT_SECRET
        )
        if not ok:
            return self._json(401, {"error": "invalid_client"})
        token = f"token-{n}"
        with self.server.lock:
            self.server.valid.add(token)
        return self._json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def do_GET(self) -> None:
        auth = self.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ")
        with self.server.lock:
            allowed = auth.startswith("Bearer ") and token in self.server.valid
            self.server.api_calls.append(token)
        if not allowed:
            return self._json(401, {"error": "invalid_token"})
        if self.path.startswith("/v1/"):
            return self._json(200, {"path": self.path, "token": token, "team": self.headers.get("X-Team")})
        return self._json(404, {})


@pytest.fixture
def oauth_server():
    server = OAuthServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


LIST = "integration-api:api-connection-list"
CREATE = "integration-api:api-connection-create"
DETAIL = "integration-api:api-connection-detail"
CHECK = "integration-api:api-connection-check"
EXTERNAL = "integration-api:external-tool"


def detail(connection_id) -> str:
    return reverse(DETAIL, kwargs={"pk": connection_id})


def oauth_payload(server: OAuthServer, secret, **extra) -> dict:
    return {
        "name": "partner-api",
        "base_url": server.url + "/v1",
        "auth_type": "oauth2_client_credentials",
        "secret": str(secret.pk),
        "token_url": server.url + "/token",
        "client_id": "agentmesh",
        "scopes": ["read", "write"],
        "default_headers": {"X-Team": "blue"},
        "health_path": "/health",
        **extra,
    }


@pytest.fixture
def client_secret(developer):
    return secret_create(owner=developer, name="partner-client-secret", value=CLIENT_SECRET)


# --- OAuth2 connection used by an HTTP tool --------------------------------------------------------
def test_oauth2_token_is_fetched_once_cached_and_refreshed_after_a_401(
    developer, client_for, oauth_server, client_secret
):
    response = client_for(developer).post(
        reverse(CREATE), oauth_payload(oauth_server, client_secret), format="json"
    )
    assert response.status_code == 201, response.content
    connection_id = response.json()["id"]
    tool = tool_create(
        owner=developer,
        name="partner_item",
        type="http",
        config={"url": "/items/{id}", "connection": connection_id},
    )

    first = tool_execute(tool=tool, arguments={"id": "1"}, actor=developer)
    second = tool_execute(tool=tool, arguments={"id": "2"}, actor=developer)
    assert first.status == second.status == "succeeded", (first.error, second.error)
    assert first.result == {"path": "/v1/items/1", "token": "token-1", "team": "blue"}
    assert second.result["token"] == "token-1"
    assert len(oauth_server.token_requests) == 1  # cached across the two calls
    assert oauth_server.token_requests[0]["scope"] == "read write"

    oauth_server.revoke_all()  # the API now answers 401 to the cached token
    third = tool_execute(tool=tool, arguments={"id": "3"}, actor=developer)
    assert third.status == "succeeded", third.error
    assert third.result["token"] == "token-2"
    assert len(oauth_server.token_requests) == 2
    assert oauth_server.api_calls[-2:] == ["token-1", "token-2"]

    fourth = tool_execute(tool=tool, arguments={"id": "4"}, actor=developer)
    assert fourth.result["token"] == "token-2" and len(oauth_server.token_requests) == 2


def test_a_bad_client_secret_fails_the_tool_call_with_a_config_error(developer, oauth_server):
    wrong = secret_create(owner=developer, name="wrong", value="not-the-secret")
    response_connection = ApiConnection.objects.create(
        owner=developer,
        name="bad",
        base_url=oauth_server.url + "/v1",
        auth_type="oauth2_client_credentials",
        secret=wrong,
        token_url=oauth_server.url + "/token",
        client_id="agentmesh",
    )
    tool = tool_create(
        owner=developer,
        name="bad_tool",
        type="http",
        config={"url": "/x", "connection": str(response_connection.pk)},
    )
    execution = tool_execute(tool=tool, arguments={}, actor=developer)
    assert execution.status == "failed"
    assert execution.error_kind == "config"
    assert "401" in execution.error


def test_api_key_header_and_query_reach_the_api(developer, fake_api):
    key = secret_create(owner=developer, name="key", value=API_KEY)
    header = ApiConnection.objects.create(
        owner=developer,
        name="h",
        base_url=fake_api.url,
        auth_type="api_key_header",
        secret=key,
        key_name="X-Key",
    )
    query = ApiConnection.objects.create(
        owner=developer,
        name="q",
        base_url=fake_api.url,
        auth_type="api_key_query",
        secret=key,
        key_name="key",
    )
    for connection, where in ((header, "headers"), (query, "query")):
        tool = tool_create(
            owner=developer,
            name=f"echo_{connection.name}",
            type="http",
            config={"url": "/echo", "connection": str(connection.pk)},
        )
        execution = tool_execute(tool=tool, arguments={}, actor=developer)
        assert execution.status == "succeeded", execution.error
        seen = execution.result[where]
        assert seen.get("x-key" if where == "headers" else "key") == API_KEY


# --- check ---------------------------------------------------------------------------------------
def test_check_records_ok_and_failure(developer, client_for, fake_api, oauth_server, client_secret):
    client = client_for(developer)
    good = client.post(
        reverse(CREATE), oauth_payload(oauth_server, client_secret, health_path="/health"), format="json"
    )
    assert good.status_code == 201
    response = client.post(reverse(CHECK, kwargs={"pk": good.json()["id"]}))
    assert response.status_code == 200
    body = response.json()
    # /v1/health needs the bearer token: the check fetched one and was let in.
    assert body["last_check_ok"] is True and body["last_check_status"] == 200
    assert oauth_server.api_calls == ["token-1"]

    healthy = client.post(
        reverse(LIST),
        {"name": "fake", "base_url": fake_api.url, "health_path": "/status/204"},
        format="json",
    )
    assert healthy.status_code == 201, healthy.content
    checked = client.post(reverse(CHECK, kwargs={"pk": healthy.json()["id"]})).json()
    assert checked["last_check_ok"] is True and checked["last_check_status"] == 204
    assert checked["last_check_error"] == "" and checked["last_check_at"]

    client.patch(detail(healthy.json()["id"]), {"health_path": "/status/503"}, format="json")
    failing = client.post(reverse(CHECK, kwargs={"pk": healthy.json()["id"]})).json()
    assert failing["last_check_ok"] is False and failing["last_check_status"] == 503
    assert "503" in failing["last_check_error"]

    client.patch(detail(healthy.json()["id"]), {"base_url": f"http://127.0.0.1:{free_port()}"}, format="json")
    down = client.post(reverse(CHECK, kwargs={"pk": healthy.json()["id"]})).json()
    assert down["last_check_ok"] is False and down["last_check_status"] is None and down["last_check_error"]


# --- validation and visibility ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"base_url": "http://169.254.169.254/latest"}, "base_url"),
        ({"base_url": "ftp://example.com"}, "base_url"),
        ({"default_headers": {"Authorization": "Bearer x"}}, "default_headers.Authorization"),
        ({"auth_type": "bearer"}, "secret"),
        ({"auth_type": "basic", "secret": "SECRET"}, "username"),
        ({"auth_type": "api_key_header", "secret": "SECRET"}, "key_name"),
        ({"auth_type": "oauth2_client_credentials", "secret": "SECRET", "client_id": "c"}, "token_url"),
        (
            {
                "auth_type": "oauth2_client_credentials",
                "secret": "SECRET",
                "client_id": "c",
                "token_url": "http://10.0.0.1/token",
            },
            "token_url",
        ),
        ({"health_path": "health"}, "health_path"),
        ({"plaintext_token": "x"}, "plaintext_token"),
    ],
)
def test_invalid_connections_name_the_field(developer, client_for, client_secret, payload, field):
    payload = {k: (str(client_secret.pk) if v == "SECRET" else v) for k, v in payload.items()}
    body = {"name": "c", "base_url": "https://api.example.com", **payload}
    response = client_for(developer).post(reverse(CREATE), body, format="json")
    assert_problem(response, 400, field)


def test_another_users_connection_is_a_404_and_unusable(
    developer, other_developer, client_for, fake_api, client_secret
):
    connection = (
        client_for(developer)
        .post(reverse(LIST), {"name": "mine", "base_url": fake_api.url}, format="json")
        .json()
    )
    other = client_for(other_developer)
    assert_problem(other.get(detail(connection["id"])), 404)
    assert_problem(other.post(reverse(CHECK, kwargs={"pk": connection["id"]})), 404)
    assert_problem(other.delete(detail(connection["id"])), 404)
    assert connection["id"] not in {c["id"] for c in other.get(reverse(LIST)).json()["results"]}
    response = other.post(
        reverse("tools-api:tool-list"),
        {"name": "steal", "type": "http", "config": {"url": "/echo", "connection": connection["id"]}},
        format="json",
    )
    assert_problem(response, 400, "config.connection")
    # …nor with another user's secret as a credential
    response = other.post(
        reverse(CREATE),
        {"name": "x", "base_url": fake_api.url, "auth_type": "bearer", "secret": str(client_secret.pk)},
        format="json",
    )
    assert_problem(response, 400, "secret")
    assert_problem(
        other.post(
            reverse(EXTERNAL),
            {"kind": "http", "name": "t", "url": "/echo", "connection": connection["id"]},
            format="json",
        ),
        400,
        "connection",
    )


def test_a_tool_with_a_connection_takes_a_path_and_no_auth_of_its_own(developer, client_for, fake_api):
    connection = ApiConnection.objects.create(owner=developer, name="c", base_url=fake_api.url)
    client = client_for(developer)
    for config, field in (
        ({"url": "http://example.com/x", "connection": str(connection.pk)}, "config.url"),
        (
            {"url": "/x", "connection": str(connection.pk), "auth": {"type": "bearer", "secret_id": "x"}},
            "config.auth",
        ),
        ({"url": "/x", "connection": "not-a-uuid"}, "config.connection"),
    ):
        response = client.post(
            reverse("tools-api:tool-list"), {"name": "t", "type": "http", "config": config}, format="json"
        )
        assert_problem(response, 400, field)


# --- secrets never leave ----------------------------------------------------------------------------
def test_no_response_or_event_carries_a_secret_value(developer, client_for, oauth_server, client_secret):
    client = client_for(developer)
    bodies = []
    created = client.post(reverse(CREATE), oauth_payload(oauth_server, client_secret), format="json")
    bodies.append(created.content)
    connection_id = created.json()["id"]
    assert created.json()["secret"] == str(client_secret.pk)
    assert created.json()["secret_mask"] == client_secret.mask
    bodies.append(client.get(reverse(LIST)).content)
    bodies.append(client.get(detail(connection_id)).content)
    bodies.append(client.patch(detail(connection_id), {"description": "d"}, format="json").content)
    bodies.append(client.post(reverse(CHECK, kwargs={"pk": connection_id})).content)
    tool = tool_create(
        owner=developer, name="t", type="http", config={"url": "/a", "connection": connection_id}
    )
    execution = tool_execute(tool=tool, arguments={}, actor=developer)
    assert execution.status == "succeeded", execution.error
    # (the fake API echoes the token it got into the tool's result: that body is the API's own)
    assert (
        CLIENT_SECRET.encode()
        not in client.get(reverse("tools-api:execution-detail", kwargs={"pk": execution.pk})).content
    )
    oauth_server.revoke_all()
    tool_execute(tool=tool, arguments={}, actor=developer)  # refreshes the token
    bodies.append(client.delete(detail(connection_id)).content)
    buffer.flush(force=True)
    events = json.dumps(list(ObservabilityEvent.objects.values()), default=str).encode()
    assert b"connection" in events.lower() or b"integration" in events.lower()
    for blob in [*bodies, events]:
        assert CLIENT_SECRET.encode() not in blob
        assert b"token-1" not in blob and b"token-2" not in blob


# --- external tools ----------------------------------------------------------------------------------
def test_external_openapi_dry_run_writes_nothing_then_import_and_deploy(
    developer,
    client_for,
    pet_server,  # noqa: F811
):
    client = client_for(developer)
    body = {"kind": "openapi", "url": pet_server.url + "/openapi.json", "dry_run": True}
    with CaptureQueriesContext(db_connection) as queries:
        plan = external_tool_import(owner=developer, **body)
    assert not [q for q in queries.captured_queries if WRITE.match(q["sql"])]
    assert plan["dry_run"] is True and {t["name"] for t in plan["tools"]} >= {"listPets", "createPet"}
    response = client.post(reverse(EXTERNAL), body, format="json")
    assert response.status_code == 200, response.content
    planned = response.json()
    assert planned["dry_run"] is True
    assert [t["name"] for t in planned["tools"]] == [t["name"] for t in plan["tools"]]
    assert all(t["id"] is None and t["status"] is None for t in planned["tools"])
    assert not Tool.objects.filter(owner=developer).exists()

    body = {
        "kind": "openapi",
        "url": pet_server.url + "/openapi.json",
        "operations": ["listPets", "showPetById"],
        "deploy": True,
    }
    response = client.post(reverse(EXTERNAL), body, format="json")
    assert response.status_code == 201, response.content
    result = response.json()
    assert result["deployed"] is True
    assert {t["status"] for t in result["tools"]} == {"deployed"}
    tool = Tool.objects.get(pk=next(t["id"] for t in result["tools"] if t["name"] == "listPets"))
    assert tool.status == ToolStatus.DEPLOYED
    assert (
        tool_execute(tool=tool, arguments={"limit": 1, "X-Request-ID": "r1"}, actor=developer).status
        == "succeeded"
    )


def test_external_openapi_with_a_connection(developer, client_for, pet_server):  # noqa: F811
    key = secret_create(owner=developer, name="pets-key", value=API_KEY)
    connection = ApiConnection.objects.create(
        owner=developer, name="pets", base_url=pet_server.url + "/api", auth_type="bearer", secret=key
    )
    response = client_for(developer).post(
        reverse(EXTERNAL),
        {
            "kind": "openapi",
            "document": petstore("http://ignored.example.com"),
            "connection": str(connection.pk),
            "operations": ["showPetById"],
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    (item,) = response.json()["tools"]
    assert item["config"]["connection"] == str(connection.pk)
    assert item["config"]["url"].startswith("/pets/")
    tool = Tool.objects.get(pk=item["id"])
    pet_server.requests.clear()
    execution = tool_execute(tool=tool, arguments={"petId": "1"}, actor=developer)
    assert execution.status == "succeeded", execution.error
    assert pet_server.requests[-1]["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert API_KEY.encode() not in response.content


def test_external_deploy_is_all_or_nothing(developer, client_for):
    down = f"http://127.0.0.1:{free_port()}"
    response = client_for(developer).post(
        reverse(EXTERNAL),
        {"kind": "openapi", "document": petstore(down + "/api"), "deploy": True},
        format="json",
    )
    assert_problem(response, 400)
    assert not Tool.objects.filter(owner=developer).exists()


def test_external_mcp_dry_run_import_and_deploy(developer, client_for, mcp_url):  # noqa: F811
    client = client_for(developer)
    with CaptureQueriesContext(db_connection) as queries:
        plan = external_tool_import(owner=developer, kind="mcp", url=mcp_url, dry_run=True)
    assert not [q for q in queries.captured_queries if WRITE.match(q["sql"])]
    assert {"add", "weather_forecast"} <= {t["name"] for t in plan["tools"]}
    response = client.post(reverse(EXTERNAL), {"kind": "mcp", "url": mcp_url, "dry_run": True}, format="json")
    assert response.status_code == 200, response.content
    names = {t["name"] for t in response.json()["tools"]}
    assert {"add", "weather_forecast"} <= names
    assert not Tool.objects.filter(owner=developer).exists()

    response = client.post(
        reverse(EXTERNAL),
        {"kind": "mcp", "url": mcp_url, "operations": ["add"], "deploy": True},
        format="json",
    )
    assert response.status_code == 201, response.content
    (item,) = response.json()["tools"]
    assert item["type"] == "mcp" and item["status"] == "deployed"
    tool = Tool.objects.get(pk=item["id"])
    assert tool_execute(tool=tool, arguments={"a": 2, "b": 3}, actor=developer).result == {"result": 5}

    assert_problem(
        client.post(
            reverse(EXTERNAL), {"kind": "mcp", "url": mcp_url, "connection": str(tool.pk)}, format="json"
        ),
        400,
        "connection",
    )


def test_external_http_tool_with_a_connection(developer, client_for, fake_api):
    connection = ApiConnection.objects.create(
        owner=developer, name="fake", base_url=fake_api.url, default_headers={"X-Team": "red"}
    )
    client = client_for(developer)
    body = {"kind": "http", "name": "get_item", "url": "/items/{id}", "connection": str(connection.pk)}
    dry = client.post(reverse(EXTERNAL), {**body, "dry_run": True}, format="json")
    assert dry.status_code == 200 and dry.json()["tools"][0]["name"] == "get_item"
    assert not Tool.objects.filter(owner=developer).exists()
    response = client.post(reverse(EXTERNAL), {**body, "deploy": True}, format="json")
    assert response.status_code == 201, response.content
    tool = Tool.objects.get(pk=response.json()["tools"][0]["id"])
    assert tool.status == ToolStatus.DEPLOYED
    assert tool_execute(tool=tool, arguments={"id": "7"}, actor=developer).result["name"] == "item 7"
    assert_problem(client.post(reverse(EXTERNAL), {"kind": "soap", "url": "/x"}, format="json"), 400, "kind")


def test_a_new_client_secret_means_a_new_token(developer, oauth_server, client_secret):
    from integration.services.connections import TokenError, oauth2_token
    from masterdata.services import secret_update

    connection = ApiConnection.objects.create(
        owner=developer,
        name="o",
        base_url=oauth_server.url + "/v1",
        auth_type="oauth2_client_credentials",
        secret=client_secret,
        token_url=oauth_server.url + "/token",
        client_id="agentmesh",
    )
    assert oauth2_token(connection=connection) == "token-1"
    assert oauth2_token(connection=connection) == "token-1"
    secret_update(secret=client_secret, value=CLIENT_SECRET)  # same value, rotated: same fingerprint
    assert oauth2_token(connection=connection) == "token-1"
    secret_update(secret=client_secret, value="another-value")
    with pytest.raises(TokenError, match="401"):
        oauth2_token(connection=connection)  # a new fingerprint: fetched again (and refused)
    assert len(oauth_server.token_requests) == 2


# --- admin -------------------------------------------------------------------------------------
@pytest.fixture
def admin_client(client, make_user):
    from agentmesh.accounts.models import Role

    admin = make_user(Role.ADMIN, is_staff=True, is_superuser=True)
    client.force_login(admin)
    return client


def test_admin_pages_mask_the_secret_and_the_check_action_records_the_result(
    admin_client, developer, fake_api, client_secret
):
    connection = ApiConnection.objects.create(
        owner=developer,
        name="adm",
        base_url=fake_api.url,
        auth_type="bearer",
        secret=client_secret,
        health_path="/status/200",
    )
    for url in (
        "/admin/integration/apiconnection/",
        f"/admin/integration/apiconnection/{connection.pk}/change/",
        "/admin/integration/apiconnection/add/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert CLIENT_SECRET not in response.content.decode()
    response = admin_client.post(
        "/admin/integration/apiconnection/",
        {"action": "check_connections", "_selected_action": [str(connection.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    connection.refresh_from_db()
    assert connection.last_check_ok is True and connection.last_check_status == 200
    assert fake_api.requests[-1]["headers"]["authorization"] == f"Bearer {CLIENT_SECRET}"
    assert CLIENT_SECRET not in response.content.decode()


def test_a_token_endpoint_failing_on_refresh_is_a_config_error(developer, oauth_server, client_secret):
    connection = ApiConnection.objects.create(
        owner=developer,
        name="o",
        base_url=oauth_server.url + "/v1",
        auth_type="oauth2_client_credentials",
        secret=client_secret,
        token_url=oauth_server.url + "/token",
        client_id="agentmesh",
    )
    tool = tool_create(
        owner=developer, name="t", type="http", config={"url": "/a", "connection": str(connection.pk)}
    )
    assert tool_execute(tool=tool, arguments={}, actor=developer).status == "succeeded"
    oauth_server.revoke_all()
    ApiConnection.objects.filter(pk=connection.pk).update(client_id="someone-else")
    execution = tool_execute(tool=tool, arguments={}, actor=developer)
    assert execution.status == "failed" and execution.error_kind == "config"
    assert "401" in execution.error


def test_external_tool_refuses_unknown_operations_and_unusable_secrets(
    developer,
    other_developer,
    client_for,
    mcp_url,  # noqa: F811
):
    client = client_for(developer)
    for dry_run in (True, False):
        body = {"kind": "mcp", "url": mcp_url, "operations": ["add", "nope"], "dry_run": dry_run}
        assert_problem(client.post(reverse(EXTERNAL), body, format="json"), 400, "operations[1]")
    theirs = secret_create(owner=other_developer, name="theirs", value="their-value")
    body = {"kind": "mcp", "url": mcp_url, "secret": str(theirs.pk), "dry_run": True}
    assert_problem(client.post(reverse(EXTERNAL), body, format="json"), 400, "secret")
    assert not Tool.objects.filter(owner=developer).exists()
