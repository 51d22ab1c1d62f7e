import pytest
from cryptography.fernet import Fernet

from agentmesh.core import crypto, sandbox

from .factories import make_constraint, make_model, make_prompt, make_secret, make_skill


def test_stats_count_only_what_the_user_may_see(client_for, developer, other_developer):
    make_skill(developer, name="a", category="language", type="knowledge")
    make_skill(developer, name="b", category="language", is_active=False)
    make_skill(other_developer, name="c", category="hidden")
    make_constraint(developer)
    make_prompt(developer, category="support")
    make_model(developer)
    make_secret(developer)
    response = client_for(developer).get("/api/v1/master-data/stats")
    assert response.status_code == 200
    assert response.json() == {
        "skills": {
            "total": 2,
            "active": 1,
            "by_category": {"language": 2},
            "by_type": {"capability": 1, "knowledge": 1},
        },
        "constraints": {"total": 1, "active": 1, "by_type": {"resource_limit": 1}},
        "prompts": {"total": 1, "active": 1, "by_category": {"support": 1}},
        "models": {"total": 1, "active": 1, "by_provider": {"echo": 1}},
        "secrets": {"total": 1},
    }


def test_stats_needs_authentication(api_client, db):
    assert api_client.get("/api/v1/master-data/stats").status_code == 401


def test_list_routes_are_not_taken_for_ids(client_for, developer):
    client = client_for(developer)
    for path in (
        "skills/categories",
        "skills/search?q=x",
        "constraints/types",
        "prompts/categories",
        "models/providers",
    ):
        assert client.get(f"/api/v1/master-data/{path}").status_code == 200, path


# --- crypto -----------------------------------------------------------------------------------
def test_crypto_round_trip_mask_and_fingerprint(settings):
    token = crypto.encrypt("hello-world-secret")
    assert "hello" not in token
    assert crypto.decrypt(token) == "hello-world-secret"
    assert crypto.encrypt("same") != crypto.encrypt("same")  # random IV
    assert crypto.fingerprint("same") == crypto.fingerprint("same") != crypto.fingerprint("other")
    assert crypto.mask("sk-1234567890abcd") == "sk-…abcd"
    assert crypto.mask("short") == "…****"
    settings.FERNET_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt(token)
    with pytest.raises(crypto.DecryptionError):
        crypto.decrypt("not-a-token")


# --- sandbox ----------------------------------------------------------------------------------
def test_sandbox_renders_and_lists_variables():
    source = "{% for item in items %}{{ item.name }}{% endfor %} {{ title | upper }}"
    assert sandbox.undeclared_variables(source) == {"items", "title"}
    assert sandbox.render(source, {"items": [{"name": "a"}, {"name": "b"}], "title": "x"}) == "ab X"


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("{{ missing }}", sandbox.MissingVariable),
        ("{{ ''.__class__ }}", sandbox.SandboxViolation),
        ("{{ ().__class__.__base__.__subclasses__() }}", sandbox.SandboxViolation),
        ("{{ 'ab' * 10000000 }}", sandbox.SandboxViolation),
        ("{% for i in range(10000000) %}{% endfor %}", sandbox.SandboxViolation),
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}",
            sandbox.SandboxViolation,
        ),
        ("{% for i in range(100000) %}{{ 'xxxxxxxxxx' }}{% endfor %}", sandbox.OutputTooLarge),
        ("{{ 1 / 0 }}", sandbox.TemplateProblem),
        ("{% endfor %}", sandbox.TemplateSyntaxInvalid),
        ("x" * (sandbox.MAX_TEMPLATE_CHARS + 1), sandbox.TemplateSyntaxInvalid),
    ],
)
def test_sandbox_refuses(source, error):
    with pytest.raises(error):
        sandbox.render(source, {})
