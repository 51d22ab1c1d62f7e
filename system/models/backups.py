"""Backups of the database: one row per backup job, holding its state and what it produced."""

from django.db import models

from agentmesh.core.models import TimeStampedModel

__all__ = ["Backup", "BackupFormat", "BackupStatus"]


class BackupStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class BackupFormat(models.TextChoices):
    PORTABLE = "portable", "Portable (JSON lines per table; restores into SQLite or PostgreSQL)"
    PG_DUMP = "pg_dump", "pg_dump custom format (PostgreSQL only)"


class Backup(TimeStampedModel):
    """A backup archive in the backup storage and how it was made.

    The catalogue describes the storage, not the data: backup rows are left out of every
    backup and survive a restore. `requested_by` is a name, not a foreign key, for the same
    reason (a restore replaces the users)."""

    status = models.CharField(
        max_length=20, choices=BackupStatus.choices, default=BackupStatus.PENDING, db_index=True
    )
    requested_format = models.CharField(max_length=20, default="auto")
    format = models.CharField(max_length=20, choices=BackupFormat.choices, blank=True)
    note = models.CharField(max_length=500, blank=True)
    requested_by = models.CharField(max_length=150, blank=True)
    storage = models.CharField(max_length=100, blank=True, help_text="BACKUP_STORAGE when it was written.")
    file_name = models.CharField(max_length=500, blank=True)
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    # {app_label: latest applied migration} when the snapshot was taken.
    schema_version = models.JSONField(default=dict, blank=True)
    database_vendor = models.CharField(max_length=20, blank=True)
    # {table: rows} in the archive (portable format; pg_dump archives leave it empty).
    table_rows = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TimeStampedModel.Meta):
        verbose_name = "backup"

    def __str__(self) -> str:
        return self.file_name or f"backup {self.pk} ({self.status})"
