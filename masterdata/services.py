"""Every write to master data, and the only way to read a secret's plaintext.

Services validate the whole resulting object (the API, the admin and other apps call them),
raising ServiceValidationError naming the offending field.
"""

import logging
import re
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Model
from django.utils import timezone
from django.utils.text import slugify
from jsonschema.exceptions import SchemaError
from jsonschema.validators import validator_for

from agentmesh.core import crypto, sandbox
from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.permissions import has_object_action
from agentmesh.core.signals import snapshot

from .constraints import InvalidRules, first_schema_error, validate_rules
from .models import Constraint, ModelConfig, Prompt, PromptVersion, Provider, Secret, Skill
from .providers import DEFAULT_PARAMETERS_SCHEMA, PROVIDERS

logger = logging.getLogger(__name__)

TAG_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.+-]{0,49}$")
MAX_TAGS = 30
MAX_SECRET_CHARS = 10_000
MAX_FALLBACK_CHAIN = 3  # fallbacks after the primary; the LLM client tries this many


class SecretAccessDenied(PermissionError):
    """The actor may not use this secret."""


# --- shared helpers ---------------------------------------------------------------------
def _assign(instance: Model, fields: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(fields) - allowed
    if unknown:
        raise TypeError(f"Unexpected fields for {type(instance).__name__}: {sorted(unknown)}")
    for name, value in fields.items():
        setattr(instance, name, value)


def ensure_unique_per_owner(instance: Model, field: str) -> None:
    value = getattr(instance, field)
    clash = type(instance).objects.filter(owner_id=instance.owner_id, **{field: value})
    if instance.pk and not instance._state.adding:
        clash = clash.exclude(pk=instance.pk)
    if clash.exists():
        label = type(instance)._meta.verbose_name
        raise ServiceValidationError(
            f"You already have a {label} with this {field}.", field=field, code="unique"
        )


def normalize_tags(tags: Any) -> list[str]:
    """Lower-case, de-duplicated, order kept; each tag `[a-z0-9][a-z0-9_.+-]*`, at most 50 chars."""
    if tags in (None, ""):
        return []
    if not isinstance(tags, list | tuple):
        raise ServiceValidationError("Tags must be a list of strings.", field="tags")
    normalized: list[str] = []
    for tag in tags:
        tag = str(tag).strip().lower()
        if not TAG_PATTERN.match(tag):
            raise ServiceValidationError(
                f"Invalid tag {tag[:50]!r}: use lower-case letters, digits and _.+- (at most 50 characters).",
                field="tags",
            )
        if tag not in normalized:
            normalized.append(tag)
    if len(normalized) > MAX_TAGS:
        raise ServiceValidationError(f"At most {MAX_TAGS} tags.", field="tags")
    return normalized


def check_json_schema(schema: Any, field: str) -> None:
    if schema is None:
        return
    if not isinstance(schema, dict):
        raise ServiceValidationError("A JSON Schema must be an object.", field=field)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise ServiceValidationError(f"Not a valid JSON Schema: {exc.message}", field=field) from exc


def _raise_invalid(error: InvalidRules) -> None:
    raise ServiceValidationError(str(error), field=error.field)


# --- skills -----------------------------------------------------------------------------
SKILL_FIELDS = {
    "name",
    "slug",
    "category",
    "type",
    "description",
    "tags",
    "input_schema",
    "output_schema",
    "is_active",
}


def _unique_slug(skill: Skill) -> str:
    base = slugify(skill.name)[:100] or "skill"
    slug, n = base, 2
    others = Skill.objects.filter(owner_id=skill.owner_id).exclude(pk=skill.pk)
    while others.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _validate_and_save_skill(skill: Skill, *, slug_given: bool) -> Skill:
    skill.name = skill.name.strip()
    skill.category = (skill.category or "").strip()
    skill.tags = normalize_tags(skill.tags)
    check_json_schema(skill.input_schema, "input_schema")
    check_json_schema(skill.output_schema, "output_schema")
    ensure_unique_per_owner(skill, "name")
    if slug_given and skill.slug:
        ensure_unique_per_owner(skill, "slug")
    elif not skill.slug:
        skill.slug = _unique_slug(skill)
    skill.save()
    return skill


@transaction.atomic
def skill_create(*, owner, name: str, **fields: Any) -> Skill:
    skill = Skill(owner=owner, name=name)
    _assign(skill, fields, SKILL_FIELDS)
    _validate_and_save_skill(skill, slug_given=bool(fields.get("slug")))
    audited("create", skill)
    return skill


@transaction.atomic
def skill_update(*, skill: Skill, **fields: Any) -> Skill:
    before = snapshot(skill)
    _assign(skill, fields, SKILL_FIELDS)
    _validate_and_save_skill(skill, slug_given="slug" in fields)
    audited("update", skill, before=before)
    return skill


# --- constraints ------------------------------------------------------------------------
CONSTRAINT_FIELDS = {"name", "description", "type", "rules", "is_active"}


def _validate_and_save_constraint(constraint: Constraint) -> Constraint:
    constraint.name = constraint.name.strip()
    try:
        validate_rules(constraint.type, constraint.rules)
    except InvalidRules as exc:
        _raise_invalid(exc)
    ensure_unique_per_owner(constraint, "name")
    constraint.save()
    return constraint


@transaction.atomic
def constraint_create(*, owner, name: str, type: str, rules: dict, **fields: Any) -> Constraint:  # noqa: A002
    constraint = Constraint(owner=owner, name=name, type=type, rules=rules)
    _assign(constraint, fields, CONSTRAINT_FIELDS)
    _validate_and_save_constraint(constraint)
    audited("create", constraint)
    return constraint


@transaction.atomic
def constraint_update(*, constraint: Constraint, **fields: Any) -> Constraint:
    before = snapshot(constraint)
    _assign(constraint, fields, CONSTRAINT_FIELDS)
    _validate_and_save_constraint(constraint)
    audited("update", constraint, before=before)
    return constraint


# --- prompts ----------------------------------------------------------------------------
PROMPT_FIELDS = {"name", "description", "category", "tags", "template", "variables", "is_active"}
VARIABLE_TYPES: dict[str, tuple[type, ...] | None] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "any": None,
}
VARIABLES_SCHEMA = {
    "type": "array",
    "maxItems": 100,
    "items": {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string", "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$", "maxLength": 100},
            "type": {"enum": list(VARIABLE_TYPES)},
            "description": {"type": "string", "maxLength": 1000},
            "required": {"type": "boolean"},
            "default": {},
        },
    },
}


def _matches_type(value: Any, type_name: str) -> bool:
    expected = VARIABLE_TYPES[type_name]
    if expected is None:
        return True
    if isinstance(value, bool) and bool not in expected:
        return False
    return isinstance(value, expected)


def _normalize_variables(variables: Any) -> list[dict]:
    error = first_schema_error(VARIABLES_SCHEMA, variables, root="variables")
    if error:
        _raise_invalid(error)
    normalized, seen = [], set()
    for index, spec in enumerate(variables):
        name = spec["name"]
        if name in seen:
            raise ServiceValidationError(
                f"Variable {name!r} is declared twice.", field=f"variables[{index}].name"
            )
        seen.add(name)
        item = {
            "name": name,
            "type": spec.get("type", "string"),
            "description": spec.get("description", ""),
            "required": spec.get("required", "default" not in spec),
        }
        if "default" in spec:
            if not _matches_type(spec["default"], item["type"]):
                raise ServiceValidationError(
                    f"The default of {name!r} is not of type {item['type']}.",
                    field=f"variables[{index}].default",
                )
            item["default"] = spec["default"]
        normalized.append(item)
    return normalized


def _template_variables(template: str) -> set[str]:
    try:
        return sandbox.undeclared_variables(template)
    except sandbox.TemplateProblem as exc:
        raise ServiceValidationError(str(exc), field="template") from exc


def _validate_prompt(prompt: Prompt, *, variables_given: bool) -> None:
    prompt.name = prompt.name.strip()
    prompt.category = (prompt.category or "").strip()
    prompt.tags = normalize_tags(prompt.tags)
    if not prompt.template or not prompt.template.strip():
        raise ServiceValidationError("The template may not be empty.", field="template")
    used = _template_variables(prompt.template)
    declared = _normalize_variables(prompt.variables or [])
    undeclared = sorted(used - {v["name"] for v in declared})
    if undeclared and variables_given:
        raise ServiceValidationError(
            f"The template uses undeclared variables: {', '.join(undeclared)}.", field="template"
        )
    # Without an explicit declaration, variables the template reads are declared as required strings.
    declared += [{"name": n, "type": "string", "description": "", "required": True} for n in undeclared]
    prompt.variables = declared
    ensure_unique_per_owner(prompt, "name")


def _add_version(prompt: Prompt, actor) -> PromptVersion:
    return PromptVersion.objects.create(
        prompt=prompt,
        version=prompt.version,
        template=prompt.template,
        variables=prompt.variables,
        created_by=actor if getattr(actor, "pk", None) else None,
    )


@transaction.atomic
def prompt_create(*, owner, name: str, template: str, actor=None, **fields: Any) -> Prompt:
    prompt = Prompt(owner=owner, name=name, template=template, version=1)
    _assign(prompt, fields, PROMPT_FIELDS)
    _validate_prompt(prompt, variables_given=fields.get("variables") is not None)
    prompt.save()
    _add_version(prompt, actor or owner)
    audited("create", prompt, actor=actor)
    return prompt


@transaction.atomic
def prompt_update(*, prompt: Prompt, actor=None, **fields: Any) -> Prompt:
    """Update; a change of the template or the declared variables adds a new immutable version."""
    before = snapshot(prompt)
    previous = (prompt.template, prompt.variables)
    _assign(prompt, fields, PROMPT_FIELDS)
    _validate_prompt(prompt, variables_given=fields.get("variables") is not None)
    changed = (prompt.template, prompt.variables) != previous
    if changed:
        # Lock the row so two concurrent edits cannot claim the same version number.
        current = Prompt.objects.select_for_update().values_list("version", flat=True).get(pk=prompt.pk)
        prompt.version = current + 1
    prompt.save()
    if changed:
        _add_version(prompt, actor)
    audited("update", prompt, before=before, actor=actor)
    return prompt


def prompt_render(
    *, prompt: Prompt, variables: dict[str, Any], version: int | None = None
) -> tuple[str, int]:
    """Render the prompt (or one of its versions) in the sandbox. Returns (text, version)."""
    if version is None or version == prompt.version:
        template, declared, version = prompt.template, prompt.variables, prompt.version
    else:
        snapshot = prompt.versions.filter(version=version).first()
        if snapshot is None:
            raise ServiceValidationError(f"Version {version} does not exist.", field="version")
        template, declared = snapshot.template, snapshot.variables
    context = dict(variables)
    for spec in declared:
        name = spec["name"]
        if name not in context:
            if "default" in spec:
                context[name] = spec["default"]
            elif spec.get("required", True):
                raise ServiceValidationError(
                    f"Missing variable: {name}.", field=f"variables.{name}", code="required"
                )
        elif not _matches_type(context[name], spec.get("type", "string")):
            raise ServiceValidationError(
                f"Variable {name} must be of type {spec.get('type', 'string')}.", field=f"variables.{name}"
            )
    try:
        return sandbox.render(template, context), version
    except sandbox.MissingVariable as exc:
        field = f"variables.{exc.variable}" if exc.variable else "variables"
        raise ServiceValidationError(str(exc), field=field, code="required") from exc
    except sandbox.TemplateProblem as exc:
        raise ServiceValidationError(str(exc), field="template") from exc


# --- secrets ----------------------------------------------------------------------------
SECRET_FIELDS = {"name", "description"}


def _set_secret_value(secret: Secret, value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ServiceValidationError("The value may not be empty.", field="value")
    if len(value) > MAX_SECRET_CHARS:
        raise ServiceValidationError(
            f"The value is longer than {MAX_SECRET_CHARS} characters.", field="value"
        )
    secret.encrypted_value = crypto.encrypt(value)
    secret.fingerprint = crypto.fingerprint(value)
    secret.mask = crypto.mask(value)


@transaction.atomic
def secret_create(*, owner, name: str, value: str, description: str = "") -> Secret:
    secret = Secret(owner=owner, name=name.strip(), description=description)
    _set_secret_value(secret, value)
    ensure_unique_per_owner(secret, "name")
    secret.save()
    audited("create", secret)
    return secret


@transaction.atomic
def secret_update(*, secret: Secret, value: str | None = None, **fields: Any) -> Secret:
    """Update name/description, and re-encrypt when a new `value` is given."""
    before = snapshot(secret)
    _assign(secret, fields, SECRET_FIELDS)
    secret.name = secret.name.strip()
    if value is not None:
        _set_secret_value(secret, value)
    ensure_unique_per_owner(secret, "name")
    secret.save()
    audited("update", secret, before=before)
    return secret


def secret_reveal(*, secret: Secret, actor, purpose: str) -> str:
    """The plaintext of `secret` — the only way code gets it. Records when and for what.

    `actor` must be allowed to use the secret (owner, admin, or shared for use); pass None
    only for system work acting on behalf of an object whose reference to the secret was
    authorised when it was saved (e.g. a model config used by an agent run).
    """
    if actor is not None and not has_object_action(actor, secret, "use"):
        raise SecretAccessDenied(f"{actor} may not use secret {secret.pk}.")
    plaintext = crypto.decrypt(secret.encrypted_value)
    now = timezone.now()
    Secret.objects.filter(pk=secret.pk).update(last_used_at=now, last_used_for=purpose[:200])
    secret.last_used_at, secret.last_used_for = now, purpose[:200]
    logger.info("secret %s revealed for %r by %s", secret.pk, purpose[:200], getattr(actor, "pk", "system"))
    return plaintext


@transaction.atomic
def secret_keys_rotate(*, batch_size: int = 500) -> int:
    """Re-encrypt every secret under the first key of FERNET_KEYS; returns how many.

    All or nothing: if any value no longer decrypts, nothing is changed and DecryptionError
    is raised, naming the secret.
    """
    count = 0
    batch: list[Secret] = []
    for secret in (
        Secret.objects.select_for_update()
        .exclude(encrypted_value="")  # imported without a value (integration import): nothing to rotate
        .only("pk", "encrypted_value")
        .iterator(chunk_size=batch_size)
    ):
        try:
            secret.encrypted_value = crypto.rotate(secret.encrypted_value)
        except crypto.DecryptionError as exc:
            raise crypto.DecryptionError(
                f"Secret {secret.pk} does not decrypt with any configured key."
            ) from exc
        batch.append(secret)
        if len(batch) >= batch_size:
            Secret.objects.bulk_update(batch, ["encrypted_value"])
            count += len(batch)
            batch = []
    Secret.objects.bulk_update(batch, ["encrypted_value"])
    count += len(batch)
    audited("rotate_keys", Secret, details={"count": count})
    return count


# --- model configs ----------------------------------------------------------------------
MODEL_CONFIG_FIELDS = {
    "name",
    "description",
    "provider",
    "model_name",
    "base_url",
    "api_version",
    "api_key_secret",
    "context_window",
    "default_parameters",
    "input_price_per_million",
    "output_price_per_million",
    "fallback",
    "is_active",
}


def _check_base_url(url: str) -> None:
    from agentmesh.core.safe_http import UnsafeURLError, check_url

    try:
        check_url(url, resolve=True)
    except UnsafeURLError as exc:
        raise ServiceValidationError(str(exc), field="base_url") from exc


def _check_fallback(config: ModelConfig, actor) -> None:
    fallback = config.fallback
    if config.pk and fallback.pk == config.pk:
        raise ServiceValidationError("A model cannot be its own fallback.", field="fallback")
    if actor is not None and not has_object_action(actor, fallback, "use"):
        raise ServiceValidationError("No usable model with this id.", field="fallback")
    seen, node = set(), fallback
    while node is not None and len(seen) <= MAX_FALLBACK_CHAIN:
        if node.pk == config.pk or node.pk in seen:
            raise ServiceValidationError("The fallback chain would form a cycle.", field="fallback")
        seen.add(node.pk)
        node = node.fallback
    if len(seen) > MAX_FALLBACK_CHAIN:
        raise ServiceValidationError(
            f"The fallback chain is longer than {MAX_FALLBACK_CHAIN}.", field="fallback"
        )


def _validate_model_config(config: ModelConfig, *, actor, changed: set[str], adding: bool) -> None:
    config.name = config.name.strip()
    config.model_name = (config.model_name or "").strip()
    config.base_url = (config.base_url or "").strip()
    spec = PROVIDERS.get(config.provider)
    if spec is None:
        raise ServiceValidationError(f"Unknown provider {config.provider!r}.", field="provider")
    if config.provider == Provider.ECHO and not config.model_name:
        config.model_name = "echo"
    for field in spec.required_fields:
        if getattr(config, field) in (None, ""):
            raise ServiceValidationError(
                f"The {spec.label} provider requires {field}.", field=field, code="required"
            )
    if config.base_url and (adding or "base_url" in changed):
        _check_base_url(config.base_url)
    secret = config.api_key_secret
    secret_to_check = secret is not None and (adding or "api_key_secret" in changed) and actor is not None
    if secret_to_check and not has_object_action(actor, secret, "use"):
        raise ServiceValidationError("No usable secret with this id.", field="api_key_secret")
    if config.fallback is not None and (adding or "fallback" in changed):
        _check_fallback(config, actor)
    if config.context_window is not None and config.context_window < 1:
        raise ServiceValidationError("Must be at least 1.", field="context_window")
    for field in ("input_price_per_million", "output_price_per_million"):
        if Decimal(getattr(config, field) or 0) < 0:
            raise ServiceValidationError("A price cannot be negative.", field=field)
    error = first_schema_error(
        DEFAULT_PARAMETERS_SCHEMA, config.default_parameters or {}, root="default_parameters"
    )
    if error:
        _raise_invalid(error)
    max_tokens = (config.default_parameters or {}).get("max_tokens")
    if max_tokens and config.context_window and max_tokens > config.context_window:
        raise ServiceValidationError(
            "max_tokens cannot exceed the context window.", field="default_parameters.max_tokens"
        )
    ensure_unique_per_owner(config, "name")


@transaction.atomic
def model_config_create(*, owner, name: str, provider: str, actor=None, **fields: Any) -> ModelConfig:
    """Create a model config; `actor` (default: the owner) must be allowed to use the
    referenced secret and fallback model."""
    config = ModelConfig(owner=owner, name=name, provider=provider)
    _assign(config, fields, MODEL_CONFIG_FIELDS)
    _validate_model_config(config, actor=actor or owner, changed=set(fields), adding=True)
    config.save()
    audited("create", config, actor=actor)
    return config


@transaction.atomic
def model_config_update(*, model_config: ModelConfig, actor, **fields: Any) -> ModelConfig:
    """Update; references that change are checked against what `actor` may use."""
    before = snapshot(model_config)
    changed = {
        name
        for name, value in fields.items()
        if name not in ("api_key_secret", "fallback") and getattr(model_config, name) != value
    }
    for name in ("api_key_secret", "fallback"):
        if name in fields and getattr(fields[name], "pk", None) != getattr(model_config, f"{name}_id"):
            changed.add(name)
    _assign(model_config, fields, MODEL_CONFIG_FIELDS)
    _validate_model_config(model_config, actor=actor, changed=changed, adding=False)
    model_config.save()
    audited("update", model_config, before=before, actor=actor)
    return model_config
