"""Domain-free base models and the object-permission model factory."""

import ipaddress
import re
import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase


class TimeStampedModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["-created_at"]


class OwnedModel(TimeStampedModel):
    """A domain object a user owns and may share. Adds a `use_<model>` permission."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", db_index=True
    )

    class Meta(TimeStampedModel.Meta):
        abstract = True
        default_permissions = ("add", "change", "delete", "view", "use")


def object_permission_models(model: type[models.Model]) -> tuple[type, type]:
    """Create guardian's direct foreign-key permission models for `model`.

    Call at module level in the model's own models.py and bind both results to names there
    so migrations see them, e.g.
        WidgetUserPermission, WidgetGroupPermission = object_permission_models(Widget)
    """
    name = model.__name__
    common = {"__module__": model.__module__}
    user_model = type(
        f"{name}UserPermission",
        (UserObjectPermissionBase,),
        {
            **common,
            "content_object": models.ForeignKey(model, on_delete=models.CASCADE),
            "Meta": type("Meta", (UserObjectPermissionBase.Meta,), {"abstract": False}),
        },
    )
    group_model = type(
        f"{name}GroupPermission",
        (GroupObjectPermissionBase,),
        {
            **common,
            "content_object": models.ForeignKey(model, on_delete=models.CASCADE),
            "Meta": type("Meta", (GroupObjectPermissionBase.Meta,), {"abstract": False}),
        },
    )
    return user_model, group_model


_HOST_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
ALLOW_RULE_HELP = (
    "A host name (exact, or *.example.internal for its subdomains), an IP address or a CIDR block "
    "such as 10.20.0.0/16."
)


class OutboundAllowRule(TimeStampedModel):
    """An admin-approved outbound HTTP destination that the SSRF guard would otherwise refuse.

    `pattern` is a host name (exact, or `*.example.internal`) or an IP address / CIDR block.
    """

    pattern = models.CharField(max_length=255, unique=True)
    description = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta(TimeStampedModel.Meta):
        verbose_name = "outbound allow rule"

    def __str__(self) -> str:
        return self.pattern

    def clean(self) -> None:
        # The form the SSRF guard compares with (agentmesh.core.safe_http._parse_pattern).
        self.pattern = pattern = (self.pattern or "").strip().lower().rstrip(".")
        try:
            network = ipaddress.ip_network(pattern, strict=True)
        except ValueError as exc:
            name = pattern.removeprefix("*.")
            labels = name.split(".")
            looks_like_address = "/" in pattern or ":" in pattern or labels[-1].isdigit()
            if looks_like_address:
                raise ValidationError({"pattern": f"Not a valid IP address or CIDR block: {exc}."}) from None
            if len(name) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
                raise ValidationError({"pattern": f"Not a valid host name. {ALLOW_RULE_HELP}"}) from None
            return
        if network.prefixlen == 0:
            raise ValidationError({"pattern": "A rule for every address would switch the SSRF guard off."})
