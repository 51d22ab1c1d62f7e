"""The base for management commands that write: their writes are audited through `command`."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ..audit import audit_context


class AuditedCommand(BaseCommand):
    """Runs `handle` in the audit context of channel `command`. `--actor USERNAME` names who
    runs it; without it the audit events have no actor (the system)."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument(
            "--actor", metavar="USERNAME", help="The user recorded as the actor in the audit trail."
        )
        return parser

    def execute(self, *args, **options):
        username = options.get("actor")
        actor = None
        if username:
            actor = get_user_model().objects.filter(username=username).first()
            if actor is None:
                raise CommandError(f"No user {username!r} (--actor).")
        with audit_context(channel="command", actor=actor):
            return super().execute(*args, **options)
