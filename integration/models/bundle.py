"""Background integration jobs (master-data sync; imports could run here too)."""

from django.conf import settings
from django.db import models

from agentmesh.core.models import TimeStampedModel

__all__ = ["IntegrationJob", "JobKind", "JobStatus"]


class JobKind(models.TextChoices):
    SYNC_MASTER_DATA = "sync_master_data", "Master-data sync"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class IntegrationJob(TimeStampedModel):
    """One run of a long integration operation: its parameters (never a secret), its report."""

    kind = models.CharField(max_length=30, choices=JobKind.choices, db_index=True)
    status = models.CharField(
        max_length=20, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    params = models.JSONField(default=dict, blank=True)
    report = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.kind} {self.pk} ({self.status})"
