"""Write an AgentMeshExport bundle (no secret values) to a file or stdout: backups, cron."""

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError

from agentmesh.core.management.base import AuditedCommand
from integration.services.bundle import EXPORT_KINDS, bundle_dump, bundle_export


class Command(AuditedCommand):
    help = "Export agents, tools, workflows and master data (of one owner, or everything) as JSON or YAML."

    def add_arguments(self, parser):
        parser.add_argument(
            "--include", help=f"Comma-separated kinds (default: all): {', '.join(EXPORT_KINDS)}."
        )
        parser.add_argument(
            "--owner", metavar="USERNAME", help="Export only this user's objects (default: all)."
        )
        parser.add_argument("--format", choices=["json", "yaml"], default="json")
        parser.add_argument("--output", "-o", help="File to write (default: stdout).")

    def handle(self, *args, **options):
        include = None
        if options["include"]:
            include = [k.strip() for k in options["include"].split(",") if k.strip()]
            unknown = sorted(set(include) - set(EXPORT_KINDS))
            if unknown:
                raise CommandError(f"Unknown kinds: {', '.join(unknown)}.")
        owner = None
        if options["owner"]:
            owner = get_user_model().objects.filter(username=options["owner"]).first()
            if owner is None:
                raise CommandError(f"No user {options['owner']!r} (--owner).")
        bundle = bundle_export(user=owner, include=include, whole_system=owner is None)
        text = bundle_dump(bundle, options["format"])
        if options["output"] and options["output"] != "-":
            with open(options["output"], "w", encoding="utf-8") as handle:
                handle.write(text)
            counts = ", ".join(f"{k}: {n}" for k, n in bundle["metadata"]["counts"].items())
            self.stderr.write(f"exported to {options['output']} ({counts})")
        else:
            self.stdout.write(text)
