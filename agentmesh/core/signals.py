"""Signals the domain-free core sends; observability records them as audit events."""

from django.dispatch import Signal

# Sent by `agentmesh.core.audit.audited()` for every audited write, whatever the path.
# kwargs: actor (User, user id or None), channel ("api" | "admin" | "command" | "task" |
# "system"), action ("create" | "update" | "delete" | "share" | "deploy" | …), instance (the
# model instance, or the model class for a bulk write), changes ({field: new value}, sensitive
# values already masked), details (extra context, masked likewise).
write_audited = Signal()

SENSITIVE_MARKERS = (
    "secret",
    "password",
    "token",
    "encrypted",
    "api_key",
    "apikey",
    "credential",
    "authorization",
    "private_key",
)
MASK = "***"


def is_sensitive(model, field_name: str) -> bool:
    explicit = getattr(model, "SENSITIVE_FIELDS", ())
    name = str(field_name).lower()
    return field_name in explicit or any(marker in name for marker in SENSITIVE_MARKERS)


def _masked(model, name, value):
    if is_sensitive(model, name):
        return MASK
    if isinstance(value, dict):
        return {key: _masked(None, key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(None, "", item) for item in value]
    return value


def mask_sensitive(model, values: dict) -> dict:
    """`values` with every sensitive entry masked, nested ones (a config's `api_key`) too."""
    return {name: _masked(model, name, value) for name, value in values.items()}


def snapshot(instance) -> dict:
    """Concrete field values of `instance` (foreign keys as ids)."""
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def audit_changes(model, before: dict, after: dict) -> dict:
    """Fields whose value changed, with the new value; sensitive values masked."""
    ignored = {"updated_at", "created_at"}
    changes = {
        name: value
        for name, value in after.items()
        if name not in ignored and before.get(name, object()) != value
    }
    return mask_sensitive(model, changes)
