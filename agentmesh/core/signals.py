"""Signals the domain-free core sends; observability records them as audit events."""

from django.dispatch import Signal

# Sent after a create/update/delete through the API.
# kwargs: actor (User), action ("create" | "update" | "delete"), instance, changes
# ({field: new value}, sensitive values already masked), request (the HttpRequest or None).
api_write = Signal()

SENSITIVE_MARKERS = ("secret", "password", "token", "encrypted", "api_key", "apikey", "credential")
MASK = "***"


def is_sensitive(model, field_name: str) -> bool:
    explicit = getattr(model, "SENSITIVE_FIELDS", ())
    return field_name in explicit or any(marker in field_name.lower() for marker in SENSITIVE_MARKERS)


def snapshot(instance) -> dict:
    """Concrete field values of `instance` (foreign keys as ids)."""
    return {f.attname: getattr(instance, f.attname) for f in instance._meta.concrete_fields}


def audit_changes(model, before: dict, after: dict) -> dict:
    """Fields whose value changed, with the new value; sensitive values masked."""
    ignored = {"updated_at", "created_at"}
    changes = {}
    for name, value in after.items():
        if name in ignored or before.get(name, object()) == value:
            continue
        changes[name] = MASK if is_sensitive(model, name) else value
    return changes
