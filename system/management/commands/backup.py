"""Back up the database: into the backup storage (a Backup record, like POST /system/backup,
but run here and now), or with --output to a file of your choice."""

from django.core.management.base import CommandError

from agentmesh.core.exceptions import ServiceValidationError, flatten_errors
from agentmesh.core.management.base import AuditedCommand
from system.backup_formats import BackupError
from system.models import BackupStatus
from system.services.backups import REQUESTED_FORMATS, backup_run, backup_start, backup_write_file


class Command(AuditedCommand):
    help = (
        "Back up the database (portable: restores into SQLite or PostgreSQL; pg_dump: PostgreSQL "
        "custom format). Restoring needs the same FERNET_KEYS (secrets stay encrypted)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--format", choices=REQUESTED_FORMATS, default="auto")
        parser.add_argument(
            "--output",
            metavar="PATH",
            help="Write the archive to PATH (and PATH.sha256) instead of the backup storage; no record is kept.",
        )
        parser.add_argument("--note", default="", help="A note kept on the backup record.")

    def handle(self, *args, **options):
        try:
            if options["output"]:
                result = backup_write_file(path=options["output"], requested_format=options["format"])
                self._summary(
                    path=options["output"],
                    fmt=result["format"],
                    size=result["size_bytes"],
                    sha256=result["sha256"],
                    seconds=result["duration_seconds"],
                    tables=len(result.get("tables", [])),
                    rows=sum(t["rows"] for t in result.get("tables", [])),
                )
                return
            backup = backup_start(requested_format=options["format"], note=options["note"], enqueue=False)
            backup = backup_run(backup_id=backup.pk)
        except BackupError as exc:
            raise CommandError(str(exc)) from exc
        except ServiceValidationError as exc:  # e.g. pg_dump cannot be used here
            raise CommandError(
                "; ".join(f"--{e['field']}: {e['message']}" for e in flatten_errors(exc.detail))
            ) from exc
        if backup.status != BackupStatus.SUCCEEDED:
            raise CommandError(f"Backup {backup.pk} failed: {backup.error}")
        self._summary(
            path=f"{backup.file_name} (storage: {backup.storage or 'BACKUP_DIR'})",
            fmt=backup.format,
            size=backup.size_bytes,
            sha256=backup.sha256,
            seconds=backup.duration_seconds,
            tables=len(backup.table_rows),
            rows=sum(backup.table_rows.values()),
            backup_id=str(backup.pk),
        )

    def _summary(self, *, path, fmt, size, sha256, seconds, tables, rows, backup_id=None):
        lines = [f"Backup written: {path}"]
        if backup_id:
            lines.append(f"  id:       {backup_id}")
        lines += [
            f"  format:   {fmt}",
            f"  size:     {size} bytes",
            f"  sha256:   {sha256}",
            f"  duration: {seconds:.2f} s",
        ]
        if tables:
            lines.append(f"  tables:   {tables} ({rows} rows)")
        self.stdout.write(self.style.SUCCESS("\n".join(lines)))
