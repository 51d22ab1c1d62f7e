"""The standard CRUD / permission / sharing cases for every master-data resource."""

from masterdata.models import Constraint, ModelConfig, Prompt, Secret, Skill
from tests.api_base import OwnedResourceAPITests

from .factories import SECRET_VALUE, make_constraint, make_model, make_prompt, make_secret, make_skill


class TestSkillAPI(OwnedResourceAPITests):
    basename = "masterdata-api:skill"
    model = Skill
    create_payload = {"name": "Translate", "category": "language", "tags": ["i18n"], "type": "capability"}
    update_payload = {"name": "Translate text", "category": "language", "tags": ["i18n", "text"]}
    invalid_payload = ({"name": "Broken", "input_schema": {"type": "no-such-type"}}, "input_schema")

    def make_object(self, owner):
        return make_skill(owner, name=f"skill-{Skill.objects.count()}")


class TestConstraintAPI(OwnedResourceAPITests):
    basename = "masterdata-api:constraint"
    model = Constraint
    create_payload = {"name": "Limits", "type": "resource_limit", "rules": {"max_turns": 10}}
    update_payload = {"name": "Limits 2", "type": "budget", "rules": {"max_cost_usd_per_run": 0.5}}
    invalid_payload = (
        {"name": "Bad", "type": "resource_limit", "rules": {"max_turns": -1}},
        "rules.max_turns",
    )

    def make_object(self, owner):
        return make_constraint(owner, name=f"constraint-{Constraint.objects.count()}")


class TestPromptAPI(OwnedResourceAPITests):
    basename = "masterdata-api:prompt"
    model = Prompt
    create_payload = {"name": "Welcome", "template": "Welcome, {{ user }}.", "category": "greetings"}
    update_payload = {"name": "Welcome 2", "template": "Hi {{ user }}!", "category": "greetings"}
    invalid_payload = ({"name": "Broken", "template": "{% if %}"}, "template")

    def make_object(self, owner):
        return make_prompt(owner, name=f"prompt-{Prompt.objects.count()}")


class TestModelConfigAPI(OwnedResourceAPITests):
    basename = "masterdata-api:model"
    model = ModelConfig
    create_payload = {"name": "Local echo", "provider": "echo"}
    update_payload = {
        "name": "Local llama",
        "provider": "openai_compatible",
        "model_name": "llama3",
        "base_url": "http://127.0.0.1:11434/v1",
        "default_parameters": {"temperature": 0.2},
        "input_price_per_million": 0.5,
    }
    invalid_payload = (
        {"name": "No URL", "provider": "openai_compatible", "model_name": "llama3"},
        "base_url",
    )

    def make_object(self, owner):
        secret = make_secret(owner, name=f"key-{Secret.objects.count()}")
        return make_model(
            owner,
            name=f"model-{ModelConfig.objects.count()}",
            provider="anthropic",
            model_name="claude",
            api_key_secret=secret,
        )


class TestSecretAPI(OwnedResourceAPITests):
    basename = "masterdata-api:secret"
    model = Secret
    create_payload = {"name": "github-token", "value": SECRET_VALUE, "description": "CI"}
    update_payload = {"name": "github-token-2", "description": "renamed"}
    invalid_payload = ({"name": "no-value"}, "value")

    def make_object(self, owner):
        return make_secret(owner, name=f"secret-{Secret.objects.count()}")
