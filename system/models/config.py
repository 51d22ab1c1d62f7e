"""Feature flags: django-waffle's user flag, swapped for one with sticky rollout and roles.

`WAFFLE_FLAG_MODEL = "system.FeatureFlag"`. A flag with no row is on (WAFFLE_FLAG_DEFAULT).
How a flag is decided (system.services.flags.decide, also waffle's own `is_active`):
- `everyone` yes: on; no: off for everyone (the feature answers 503);
- unset: on for the listed users, members of the listed groups, the listed roles, superusers
  (if `superusers`), staff (if `staff`), any signed-in user (if `authenticated`), and a sticky
  `percent` of users: the bucket of sha256("<flag>:<user id>") — the same user always gets the
  same answer, and raising the percentage keeps everyone who had it. Anyone else is refused
  with a 403.
The runtime configuration itself is stored by django-constance (its `Constance` table).
"""

from django.db import models
from waffle.models import AbstractUserFlag


class FeatureFlag(AbstractUserFlag):
    # 0-100 (waffle's own field stops at 99.9); null: no percentage rollout
    percent = models.DecimalField(
        max_digits=4,
        decimal_places=1,
        null=True,
        blank=True,
        help_text="0.0-100.0: the share of users (sticky per user) for whom the flag is on.",
    )
    roles = models.JSONField(
        default=list, blank=True, help_text="Roles (admin, developer, user) for whom the flag is on."
    )

    class Meta(AbstractUserFlag.Meta):
        verbose_name = "feature flag"
        verbose_name_plural = "feature flags"
        ordering = ["name"]

    def is_active_for_user(self, user) -> bool | None:
        from ..services.flags import decide_row

        return decide_row(self, user).active

    def is_active(self, request, read_only: bool = False) -> bool | None:
        from ..services.flags import decide_row

        user = getattr(request, "user", None)
        return decide_row(self, user if getattr(user, "is_authenticated", False) else None).active
