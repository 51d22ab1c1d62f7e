"""Master-data sync from a real HTTP server on 127.0.0.1 serving another instance's export."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml
from django.urls import reverse

from integration.models import ApiConnection, IntegrationJob
from masterdata.models import Constraint, ModelConfig, Prompt, Skill
from masterdata.services import (
    constraint_create,
    model_config_create,
    prompt_create,
    prompt_update,
    secret_create,
    skill_create,
    skill_update,
)
from tests.api_base import assert_problem

pytestmark = pytest.mark.django_db

SYNC = reverse("integration-api:sync-master-data")
EXPORT = reverse("integration-api:export")


class CatalogueServer:
    """Serves fixed bytes per path, like a second instance's export saved to a web server."""

    def __init__(self):
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.hits: list[str] = []
        self.authorization: str | None = None  # when set, the Authorization header required
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                server.hits.append(self.path)
                if server.authorization and self.headers.get("Authorization") != server.authorization:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body, content_type = server.routes.get(self.path, (b"not found", "text/plain"))
                self.send_response(200 if self.path in server.routes else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def catalogue():
    server = CatalogueServer()
    yield server
    server.close()


def remote_setup(owner):
    secret = secret_create(owner=owner, name="remote-key", value="sk-remote-NEVER-synced")
    skill_create(owner=owner, name="Translate", category="text", tags=["nlp"])
    constraint_create(owner=owner, name="Short runs", type="resource_limit", rules={"max_turns": 5})
    prompt = prompt_create(
        owner=owner, name="greeter", template="Hello {{ who }}", variables=[{"name": "who"}]
    )
    prompt_update(prompt=prompt, actor=owner, template="Hi {{ who }}!")
    echo = model_config_create(owner=owner, name="echo", provider="echo")
    model_config_create(
        owner=owner,
        name="gpt",
        provider="openai",
        model_name="gpt-4o-mini",
        api_key_secret=secret,
        fallback=echo,
    )


def sync(capture, client, url, **extra):
    with capture(execute=True):
        response = client.post(SYNC, {"source": url, **extra}, format="json")
    assert response.status_code == 202, response.content
    job = client.get(reverse("integration-api:job-detail", args=[response.json()["id"]])).json()
    return job


def statuses(job) -> dict:
    return {(i["kind"], i["name"]): i["status"] for i in job["report"]["items"]}


def test_sync_dry_run_then_real_then_unchanged(
    developer, other_developer, client_for, catalogue, django_capture_on_commit_callbacks
):
    remote_setup(other_developer)
    exported = client_for(other_developer).post(EXPORT, {}, format="json").content
    assert b"sk-remote-NEVER-synced" not in exported
    catalogue.routes["/export.json"] = (exported, "application/json")
    url = catalogue.url("/export.json")
    client = client_for(developer)

    job = sync(django_capture_on_commit_callbacks, client, url, dry_run=True)
    assert job["status"] == "succeeded", job
    assert set(statuses(job).values()) == {"created"}, json.dumps(job["report"])[-1500:]
    assert len(job["report"]["items"]) == 5  # skill, constraint, prompt, 2 models; secrets are not items
    assert not Skill.objects.filter(owner=developer).exists()

    job = sync(django_capture_on_commit_callbacks, client, url)
    assert job["status"] == "succeeded", job
    assert set(statuses(job).values()) == {"created"}, json.dumps(job["report"])[-1500:]
    gpt = next(i for i in job["report"]["items"] if i["name"] == "gpt")
    assert "remote-key" in gpt["notes"][0]
    model = ModelConfig.objects.get(owner=developer, name="gpt")
    assert model.is_active is False
    assert model.api_key_secret.name == "remote-key" and model.api_key_secret.encrypted_value == ""
    assert model.fallback == ModelConfig.objects.get(owner=developer, name="echo")
    assert Prompt.objects.get(owner=developer, name="greeter").template == "Hi {{ who }}!"
    assert Constraint.objects.filter(owner=developer, name="Short runs").exists()

    job = sync(django_capture_on_commit_callbacks, client, url)
    assert set(statuses(job).values()) == {"unchanged"}, job["report"]
    assert catalogue.hits == ["/export.json"] * 3


def test_sync_updates_and_conflicts_from_a_yaml_catalogue(
    developer, client_for, catalogue, django_capture_on_commit_callbacks
):
    skill = skill_create(owner=developer, name="Translate", description="local")
    catalogue_doc = {
        "apiVersion": "agentmesh/v1",
        "kind": "AgentMeshExport",
        "skills": [
            {"name": "Translate", "description": "remote"},
            {"name": "Bad", "input_schema": {"type": 3}},
        ],
    }
    catalogue.routes["/catalogue.yaml"] = (yaml.safe_dump(catalogue_doc).encode(), "application/yaml")
    url = catalogue.url("/catalogue.yaml")
    client = client_for(developer)
    job = sync(django_capture_on_commit_callbacks, client, url, on_conflict="skip", kinds=["skills"])
    assert statuses(job) == {("skills", "Translate"): "conflict", ("skills", "Bad"): "error"}
    bad = next(i for i in job["report"]["items"] if i["name"] == "Bad")
    assert bad["errors"][0]["field"].startswith("skills[1].input_schema")
    skill.refresh_from_db()
    assert skill.description == "local"
    job = sync(django_capture_on_commit_callbacks, client, url, kinds=["skills"])
    assert statuses(job)[("skills", "Translate")] == "updated"
    skill.refresh_from_db()
    assert skill.description == "remote"
    skill_update(skill=skill, description="remote")


def test_sync_job_failure_and_visibility(
    developer, other_developer, admin_user, client_for, catalogue, django_capture_on_commit_callbacks
):
    client = client_for(developer)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(SYNC, {"source": catalogue.url("/missing")}, format="json")
    job_url = reverse("integration-api:job-detail", args=[response.json()["id"]])
    job = client.get(job_url).json()
    assert job["status"] == "failed" and "404" in job["error"]
    assert job["params"]["source"].endswith("/missing")
    assert_problem(client_for(other_developer).get(job_url), 404)
    assert client_for(admin_user).get(job_url).status_code == 200


def test_sync_refuses_unsafe_and_connection_sources(
    developer, client_for, django_capture_on_commit_callbacks
):
    client = client_for(developer)
    assert_problem(client.post(SYNC, {"source": "connection"}, format="json"), 400, "source")
    assert_problem(client.post(SYNC, {}, format="json"), 400, "source")
    assert_problem(client.post(SYNC, {"source": "ftp://x"}, format="json"), 400, "source")
    assert_problem(client.post(SYNC, {"source": "http://u:pw@127.0.0.1/x"}, format="json"), 400, "source")
    assert_problem(client.post(SYNC, {"source": "http://x", "kinds": ["agents"]}, format="json"), 400)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(SYNC, {"source": "http://169.254.169.254/latest"}, format="json")
    job = client.get(reverse("integration-api:job-detail", args=[response.json()["id"]])).json()
    assert job["status"] == "failed" and "169.254.169.254" in job["error"]


def test_sync_through_a_bearer_connection(
    developer, other_developer, client_for, catalogue, django_capture_on_commit_callbacks
):
    remote_setup(other_developer)
    catalogue.routes["/export.json"] = (
        client_for(other_developer).post(EXPORT, {}, format="json").content,
        "application/json",
    )
    token = "catalogue-token-NEVER-in-params"
    catalogue.authorization = f"Bearer {token}"
    secret = secret_create(owner=developer, name="catalogue-token", value=token)
    connection = ApiConnection.objects.create(
        owner=developer, name="catalogue", base_url=catalogue.url(""), auth_type="bearer", secret=secret
    )
    client = client_for(developer)
    # without the connection's auth the server refuses
    job = sync(django_capture_on_commit_callbacks, client, catalogue.url("/export.json"))
    assert job["status"] == "failed" and "401" in job["error"]

    body = {"connection": str(connection.pk), "path": "/export.json"}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(SYNC, body, format="json")
    assert response.status_code == 202, response.content
    assert token not in response.content.decode()
    job = client.get(reverse("integration-api:job-detail", args=[response.json()["id"]])).json()
    assert job["status"] == "succeeded", job
    assert set(statuses(job).values()) == {"created"}
    assert job["params"] == {
        "connection": str(connection.pk),
        "path": "/export.json",
        "kinds": ["skills", "constraints", "prompts", "models"],
        "dry_run": False,
        "on_conflict": "overwrite",
    }
    assert token not in json.dumps(IntegrationJob.objects.get(pk=job["id"]).params)
    assert Skill.objects.filter(owner=developer, name="Translate").exists()
    assert ModelConfig.objects.filter(owner=developer, name="gpt").exists()

    # the base URL itself is the default path (404 here: the job fails and says so)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(SYNC, {"connection": str(connection.pk)}, format="json")
    job = client.get(reverse("integration-api:job-detail", args=[response.json()["id"]])).json()
    assert job["status"] == "failed" and "404" in job["error"] and job["params"]["path"] == ""
    assert catalogue.hits[-1] == "/"

    # exactly one of source and connection; a path goes with a connection and starts with /
    both = {**body, "source": catalogue.url("/export.json")}
    assert_problem(client.post(SYNC, both, format="json"), 400, "source")
    assert_problem(
        client.post(SYNC, {"source": catalogue.url("/x"), "path": "/y"}, format="json"), 400, "path"
    )
    assert_problem(client.post(SYNC, {**body, "path": "export.json"}, format="json"), 400, "path")
    # another user's connection (or none) is refused as by the external-tool endpoint
    other = client_for(other_developer)
    assert_problem(other.post(SYNC, body, format="json"), 400, "connection")
    unknown = {"connection": "00000000-0000-0000-0000-000000000000"}
    assert_problem(client.post(SYNC, unknown, format="json"), 400, "connection")
    assert not IntegrationJob.objects.filter(owner=other_developer).exists()


def test_sync_report_is_json_serialisable(developer):
    # the service alone (the management command and the task call it the same way)
    from integration.services.sync import master_data_sync

    bundle = {"apiVersion": "agentmesh/v1", "kind": "AgentMeshExport", "skills": [{"name": "S"}]}
    report = master_data_sync(bundle=bundle, owner=developer)
    json.dumps(report)
    assert report["counts"] == {"created": 1}


def test_sync_from_another_running_instance_through_its_export_endpoint(
    live_server_url, make_user, client_for
):
    """The other instance is a served API (uvicorn): its GET /integration/export, read with a
    bearer token kept in a secret of an API connection."""
    from rest_framework_simplejwt.tokens import RefreshToken

    remote_owner, developer = make_user(), make_user()
    remote_setup(remote_owner)
    token = str(RefreshToken.for_user(remote_owner).access_token)
    secret = secret_create(owner=developer, name="remote-instance-token", value=token)
    connection = ApiConnection.objects.create(
        owner=developer, name="remote", base_url=live_server_url, auth_type="bearer", secret=secret
    )
    client = client_for(developer)
    body = {"connection": str(connection.pk), "path": "/api/v1/integration/export"}
    response = client.post(SYNC, {**body, "dry_run": True}, format="json")  # transactional: runs now
    assert response.status_code == 202, response.content
    job = client.get(reverse("integration-api:job-detail", args=[response.json()["id"]])).json()
    assert job["status"] == "succeeded", job
    assert not Skill.objects.filter(owner=developer).exists()  # a dry run writes nothing

    response = client.post(SYNC, body, format="json")
    job = client.get(reverse("integration-api:job-detail", args=[response.json()["id"]])).json()
    assert job["status"] == "succeeded", job
    assert Skill.objects.filter(owner=developer, name="Translate").exists()
    gpt = ModelConfig.objects.get(owner=developer, name="gpt")
    assert not gpt.is_active  # its secret's value never travels
    assert token not in json.dumps(job)

    response = client.post(SYNC, body, format="json")
    job = client.get(reverse("integration-api:job-detail", args=[response.json()["id"]])).json()
    assert set(statuses(job).values()) == {"unchanged"}, statuses(job)
