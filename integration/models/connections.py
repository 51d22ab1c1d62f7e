"""API connections: a named external API (base URL, auth, default headers, timeouts) that HTTP
tools use instead of repeating URL and credentials. Credentials are master-data secrets."""

from django.db import models

from agentmesh.core.models import OwnedModel, object_permission_models

__all__ = ["ApiConnection", "ApiConnectionGroupPermission", "ApiConnectionUserPermission", "AuthType"]


class AuthType(models.TextChoices):
    NONE = "none", "None"
    BEARER = "bearer", "Bearer token"
    API_KEY_HEADER = "api_key_header", "API key in a header"
    API_KEY_QUERY = "api_key_query", "API key in the query string"
    BASIC = "basic", "Basic (username + secret password)"
    OAUTH2_CLIENT_CREDENTIALS = "oauth2_client_credentials", "OAuth2 client credentials"


class ApiConnection(OwnedModel):
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True)
    base_url = models.CharField(max_length=2000)
    auth_type = models.CharField(max_length=40, choices=AuthType.choices, default=AuthType.NONE)
    # The credential: token, API key, basic password or OAuth2 client secret.
    secret = models.ForeignKey(
        "masterdata.Secret", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    key_name = models.CharField(
        max_length=200, blank=True, help_text="Header or query parameter of an API key."
    )
    username = models.CharField(max_length=200, blank=True, help_text="Basic auth user name.")
    token_url = models.CharField(max_length=2000, blank=True, help_text="OAuth2 token endpoint.")
    client_id = models.CharField(max_length=500, blank=True)
    scopes = models.JSONField(default=list, blank=True)
    audience = models.CharField(max_length=500, blank=True)
    default_headers = models.JSONField(default=dict, blank=True)
    connect_timeout = models.FloatField(default=5.0)
    read_timeout = models.FloatField(default=30.0)
    health_path = models.CharField(max_length=2000, blank=True, default="")
    last_check_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_check_ok = models.BooleanField(null=True, blank=True, editable=False)
    last_check_status = models.PositiveIntegerField(null=True, blank=True, editable=False)
    last_check_error = models.TextField(blank=True, editable=False)

    class Meta(OwnedModel.Meta):
        verbose_name = "API connection"
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="integration_apiconnection_unique_name_per_owner"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.base_url})"


ApiConnectionUserPermission, ApiConnectionGroupPermission = object_permission_models(ApiConnection)
