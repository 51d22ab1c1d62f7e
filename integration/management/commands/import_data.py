"""Read an AgentMeshExport bundle (JSON or YAML) from a file or stdin, with the API's options."""

import json
import sys

from django.contrib.auth import get_user_model
from django.core.management.base import CommandError
from rest_framework.exceptions import ValidationError

from agentmesh.core.management.base import AuditedCommand
from integration.services.bundle import ON_CONFLICT, bundle_import, bundle_parse


class Command(AuditedCommand):
    help = (
        "Import a bundle (all or nothing). A system export keeps each item's owner unless --owner "
        "is given. Prints the report as JSON; exits with an error when an item fails."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="The bundle file, or - for stdin.")
        parser.add_argument("--dry-run", action="store_true", help="Validate and report; write nothing.")
        parser.add_argument("--on-conflict", choices=ON_CONFLICT, default="skip")
        parser.add_argument("--owner", metavar="USERNAME", help="Import everything for this user.")

    def _user(self, username, option):
        if not username:
            return None
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r} ({option}).")
        return user

    def handle(self, *args, **options):
        raw = sys.stdin.buffer.read() if options["path"] == "-" else _read(options["path"])
        try:
            bundle = bundle_parse(raw)
            report = bundle_import(
                bundle=bundle,
                actor=self._user(options.get("actor"), "--actor"),
                owner=self._user(options["owner"], "--owner"),
                dry_run=options["dry_run"],
                on_conflict=options["on_conflict"],
            )
        except ValidationError as exc:
            raise CommandError(f"Invalid bundle: {exc.detail}") from exc
        self.stdout.write(json.dumps(report, indent=2))
        if not report["ok"]:
            raise CommandError(f"Nothing imported: {report['counts'].get('error', 0)} item(s) failed.")


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc}") from exc
