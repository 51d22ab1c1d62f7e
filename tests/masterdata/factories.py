"""Small builders for master-data rows (through the services, like real callers)."""

from masterdata import services

SECRET_VALUE = "sk-test-Zq8vN3kLmP0wXy7RtUe4-abcd"


def make_skill(owner, name="Summarize text", **fields):
    return services.skill_create(owner=owner, name=name, **fields)


def make_constraint(owner, name="Short runs", type="resource_limit", rules=None, **fields):  # noqa: A002
    return services.constraint_create(
        owner=owner, name=name, type=type, rules=rules or {"max_turns": 5}, **fields
    )


def make_prompt(owner, name="Greeting", template="Hello {{ name }}!", **fields):
    return services.prompt_create(owner=owner, name=name, template=template, **fields)


def make_secret(owner, name="openai-key", value=SECRET_VALUE, **fields):
    return services.secret_create(owner=owner, name=name, value=value, **fields)


def make_model(owner, name="Echo", provider="echo", **fields):
    return services.model_config_create(owner=owner, name=name, provider=provider, **fields)
