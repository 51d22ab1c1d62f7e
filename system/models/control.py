import uuid

from django.conf import settings
from django.db import models


class ControlKind(models.TextChoices):
    RESTART = "restart", "Restart"
    CACHE_CLEAR = "cache_clear", "Cache clear"


class ControlRequest(models.Model):
    """What an operator asked for (POST /system/restart/{service}, POST /system/cache/clear) and
    what happened: the result in the process that took the request and every worker's reply."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=16, choices=ControlKind.choices)
    target = models.CharField(max_length=64, help_text="The service restarted, or the cache cleared.")
    parameters = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True, help_text="What this process did.")
    replies = models.JSONField(default=list, blank=True, help_text="Each worker's reply.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "control request"
        indexes = [models.Index(fields=["-created_at"], name="sys_control_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.target} @ {self.created_at:%Y-%m-%d %H:%M:%S}"
