from django.contrib import admin

from agentmesh.core.admin import HistoryAdmin, ObjectAction, ObjectActionsMixin

from .. import services
from ..models import BeatTick, SystemCheck


@admin.register(BeatTick)
class BeatTickAdmin(HistoryAdmin):
    """Beat's last tick (published by beat, run by a worker): read-only."""

    list_display = ["key", "sent_at", "ran_at", "lag_ms", "ticks", "worker"]
    list_filter = ["ran_at"]
    search_fields = ["worker"]


def _evaluate(request, check, data) -> str:
    state = services.system_checks_evaluate(keys=[check.key])[check.key]
    return f"{check.key}: {state}"


@admin.register(SystemCheck)
class SystemCheckAdmin(ObjectActionsMixin, HistoryAdmin):
    """The built-in system checks' last results (beat evaluates them; GET /system/alerts too when
    beat has not lately). "Evaluate now" runs one check at once."""

    list_display = ["key", "state", "value", "threshold", "checked_at", "alert"]
    list_filter = ["state"]
    search_fields = ["key", "message"]
    object_actions = (
        ObjectAction(
            name="evaluate",
            label="Evaluate now",
            run=_evaluate,
            description="Evaluate this check now: fires or resolves its alert.",
        ),
    )
