"""Status area: the beat scheduler's last tick, and the built-in system checks' last results."""

from django.db import models


class BeatTick(models.Model):
    """One row (key "beat"): when the beat scheduler last published its tick task, and when a
    worker last ran it. The publish time is written by the publishing process (beat) itself, so
    a silent beat and missing workers can be told apart."""

    key = models.CharField(max_length=20, primary_key=True, default="beat")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="The tick task was last published.")
    ran_at = models.DateTimeField(null=True, blank=True, help_text="A worker last ran the tick task.")
    lag_ms = models.FloatField(null=True, blank=True, help_text="Published → run, of the last run tick.")
    ticks = models.PositiveBigIntegerField(default=0, help_text="Ticks run by workers.")
    worker = models.CharField(max_length=255, blank=True, help_text="The worker that ran the last tick.")

    class Meta:
        verbose_name = "beat tick"

    def __str__(self) -> str:
        return f"beat tick {self.sent_at or self.ran_at or 'never'}"


class CheckState(models.TextChoices):
    OK = "ok", "OK"
    FIRING = "firing", "Firing"
    UNKNOWN = "unknown", "Unknown"


class SystemCheck(models.Model):
    """The last result of one built-in system check (no live worker, queue backlog, beat silent,
    database slow, disk low, error rate high). A firing check holds an open observability Alert."""

    key = models.CharField(max_length=40, primary_key=True)
    state = models.CharField(max_length=10, choices=CheckState.choices, default=CheckState.UNKNOWN)
    value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    message = models.CharField(max_length=500, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    alert = models.ForeignKey(
        "observability.Alert", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["key"]
        verbose_name = "system check"

    def __str__(self) -> str:
        return f"{self.key}: {self.state}"
