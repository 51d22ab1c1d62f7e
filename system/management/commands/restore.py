"""Restore a backup archive into this database (see README "Backups and restore")."""

from django.core.management.base import CommandError

from agentmesh.core.management.base import AuditedCommand
from system.backup_formats import BackupError
from system.services.backups import backup_restore


class Command(AuditedCommand):
    help = (
        "Restore a backup archive (portable or pg_dump) into the configured database. Checks the "
        "checksums and the schema version first; refuses a database holding data unless --force. "
        "Portable archives need a migrated database (`manage.py migrate`); secrets decrypt only "
        "with the FERNET_KEYS of the installation that made the backup."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="The archive (a .zip made by `backup` or POST /system/backup).")
        parser.add_argument(
            "--force", action="store_true", help="Replace the data of a database that is not empty."
        )
        parser.add_argument(
            "--sha256",
            metavar="HEX",
            help="The archive's expected SHA-256 (default: FILE.sha256 beside it, when present).",
        )

    def handle(self, *args, **options):
        try:
            result = backup_restore(
                path=options["file"], force=options["force"], expected_sha256=options["sha256"]
            )
        except BackupError as exc:
            raise CommandError(f"Restore refused: {exc}") from exc
        checksum = {
            "given": "whole file matches --sha256",
            "sidecar": "whole file matches its .sha256",
            "none": "no .sha256 beside the file: member checksums only",
        }[result["whole_file_checksum"]]
        lines = [
            f"Restored {options['file']}",
            f"  format:   {result['format']} (made on {result['source_vendor']} at {result['created_at']})",
            f"  checksum: {checksum}; every member matched the manifest",
        ]
        if result["tables"]:
            lines.append(f"  tables:   {len(result['tables'])} ({result['rows']} rows)")
        if result["replaced_data"]:
            lines.append("  --force:  the database's previous data was replaced")
        lines.append(f"  duration: {result['duration_seconds']:.2f} s")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
