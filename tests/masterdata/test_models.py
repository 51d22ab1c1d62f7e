import pytest

from masterdata.models import ModelConfig, Provider
from tests.api_base import assert_problem

from .factories import make_model, make_secret

URL = "/api/v1/master-data/models"


def create(client, **payload):
    return client.post(URL, {"name": "m", **payload}, format="json")


def test_echo_needs_nothing(client_for, developer):
    response = create(client_for(developer), provider="echo")
    assert response.status_code == 201, response.json()
    assert response.json()["model_name"] == "echo"
    assert response.json()["api_key_secret"] is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"provider": "openai_compatible", "model_name": "llama3"}, "base_url"),
        ({"provider": "openai_compatible", "base_url": "http://127.0.0.1:8000/v1"}, "model_name"),
        ({"provider": "anthropic", "model_name": "claude"}, "api_key_secret"),
        ({"provider": "openai", "model_name": "gpt-4o"}, "api_key_secret"),
        ({"provider": "ollama", "model_name": "llama3"}, "base_url"),
        ({"provider": "nope"}, "provider"),
    ],
)
def test_required_fields_per_provider(client_for, developer, payload, field):
    assert_problem(create(client_for(developer), **payload), 400, field)
    assert not ModelConfig.objects.exists()


def test_azure_needs_url_key_and_api_version(client_for, developer):
    secret = make_secret(developer)
    client = client_for(developer)
    payload = {
        "provider": "azure_openai",
        "model_name": "gpt4-deployment",
        "base_url": "http://127.0.0.1:9999/openai",
        "api_key_secret": str(secret.pk),
    }
    assert_problem(create(client, **payload), 400, "api_version")
    response = create(client, **payload, api_version="2024-10-21")
    assert response.status_code == 201, response.json()


def test_anthropic_with_own_secret(client_for, developer):
    secret = make_secret(developer)
    response = create(
        client_for(developer), provider="anthropic", model_name="claude", api_key_secret=str(secret.pk)
    )
    assert response.status_code == 201, response.json()
    assert response.json()["api_key_secret_mask"] == secret.mask


def test_base_url_is_checked_by_the_safe_url_rules(client_for, developer):
    client = client_for(developer)
    common = {"provider": "openai_compatible", "model_name": "llama3"}
    assert_problem(create(client, **common, base_url="http://10.0.0.1/v1"), 400, "base_url")
    assert_problem(create(client, **common, base_url="http://169.254.169.254/latest"), 400, "base_url")
    assert_problem(create(client, **common, base_url="file:///etc/passwd"), 400, "base_url")
    response = create(client, **common, base_url="http://127.0.0.1:11434/v1")  # allow-listed in tests
    assert response.status_code == 201, response.json()


def test_base_url_allowed_by_an_admin_rule(client_for, developer):
    from agentmesh.core.models import OutboundAllowRule

    OutboundAllowRule.objects.create(pattern="10.0.0.0/8")
    response = create(
        client_for(developer), provider="openai_compatible", model_name="m", base_url="http://10.0.0.1/v1"
    )
    assert response.status_code == 201, response.json()


def test_other_users_secret_needs_use_permission(client_for, developer, other_developer):
    theirs = make_secret(other_developer)
    client = client_for(developer)
    payload = {"provider": "anthropic", "model_name": "claude", "api_key_secret": str(theirs.pk)}
    body = assert_problem(create(client, **payload), 400, "api_key_secret")
    unknown = {**payload, "api_key_secret": "00000000-0000-0000-0000-000000000000"}
    assert_problem(create(client, **unknown), 400, "api_key_secret")
    assert body["errors"][0]["message"] == "No usable secret with this id."  # no hint it exists

    owner = client_for(other_developer)
    owner.post(
        f"/api/v1/master-data/secrets/{theirs.pk}/share", {"users": [developer.username], "actions": ["view"]}
    )
    assert_problem(create(client, **payload), 400, "api_key_secret")  # view is not use
    owner.post(
        f"/api/v1/master-data/secrets/{theirs.pk}/share", {"users": [developer.username], "actions": ["use"]}
    )
    assert create(client, **payload).status_code == 201


def test_shared_editor_keeps_existing_secret_reference(client_for, developer, other_developer):
    model = make_model(developer, provider="anthropic", model_name="c", api_key_secret=make_secret(developer))
    client_for(developer).post(
        f"{URL}/{model.pk}/share", {"users": [other_developer.username], "actions": ["change"]}
    )
    response = client_for(other_developer).patch(f"{URL}/{model.pk}", {"description": "tuned"}, format="json")
    assert response.status_code == 200, response.json()
    mine = make_secret(other_developer, name="mine")
    response = client_for(other_developer).patch(
        f"{URL}/{model.pk}", {"api_key_secret": str(mine.pk)}, format="json"
    )
    assert response.status_code == 200  # their own secret: allowed


def test_default_parameters_prices_and_context_window(client_for, developer):
    client = client_for(developer)
    assert_problem(
        create(client, provider="echo", default_parameters={"temperature": 5}),
        400,
        "default_parameters.temperature",
    )
    assert_problem(
        create(client, provider="echo", default_parameters={"colour": "red"}),
        400,
        "default_parameters.colour",
    )
    assert_problem(
        create(client, provider="echo", input_price_per_million=-1), 400, "input_price_per_million"
    )
    assert_problem(create(client, provider="echo", context_window=0), 400, "context_window")
    assert_problem(
        create(client, provider="echo", context_window=1000, default_parameters={"max_tokens": 2000}),
        400,
        "default_parameters.max_tokens",
    )
    response = create(
        client,
        provider="echo",
        context_window=128000,
        default_parameters={"temperature": 0.3, "max_tokens": 1024, "stop": ["\n\n"]},
        input_price_per_million=2.5,
        output_price_per_million=10,
    )
    assert response.status_code == 201, response.json()
    assert response.json()["input_price_per_million"] == 2.5


def test_fallback_rules(client_for, developer, other_developer):
    client = client_for(developer)
    a = make_model(developer, name="a")
    b = make_model(developer, name="b", fallback=a)
    assert_problem(client.patch(f"{URL}/{a.pk}", {"fallback": str(b.pk)}, format="json"), 400, "fallback")
    assert_problem(client.patch(f"{URL}/{a.pk}", {"fallback": str(a.pk)}, format="json"), 400, "fallback")
    theirs = make_model(other_developer, name="theirs")
    assert_problem(create(client, provider="echo", fallback=str(theirs.pk)), 400, "fallback")
    assert create(client, provider="echo", fallback=str(b.pk)).status_code == 201


def test_referenced_delete_is_409_naming_the_referrer(client_for, developer):
    secret = make_secret(developer)
    primary = make_model(developer, name="p", provider="anthropic", model_name="c", api_key_secret=secret)
    make_model(developer, name="q", fallback=primary)
    client = client_for(developer)
    body = assert_problem(client.delete(f"/api/v1/master-data/secrets/{secret.pk}"), 409)
    assert "model config" in body["detail"]
    body = assert_problem(client.delete(f"{URL}/{primary.pk}"), 409)
    assert "model config" in body["detail"]


def test_providers_endpoint(client_for, plain_user):
    response = client_for(plain_user).get(f"{URL}/providers")
    assert response.status_code == 200
    by_id = {p["id"]: p for p in response.json()}
    assert set(by_id) == set(Provider.values)
    assert by_id["openai_compatible"]["required_fields"] == ["model_name", "base_url"]
    assert "api_key_secret" in by_id["anthropic"]["required_fields"]
    assert by_id["echo"]["required_fields"] == []


def test_filter_by_provider(client_for, developer):
    make_model(developer, name="e")
    make_model(
        developer, name="l", provider="openai_compatible", model_name="x", base_url="http://127.0.0.1:1/v1"
    )
    body = client_for(developer).get(f"{URL}?provider=openai_compatible").json()
    assert [m["name"] for m in body["results"]] == ["l"]
