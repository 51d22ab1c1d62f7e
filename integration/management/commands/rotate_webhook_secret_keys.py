from django.core.management.base import CommandError

from agentmesh.core.crypto import DecryptionError
from agentmesh.core.management.base import AuditedCommand
from integration.services.webhooks import webhook_secret_keys_rotate


class Command(AuditedCommand):
    help = (
        "Re-encrypt every webhook and inbound-trigger signing secret under the first key of "
        "FERNET_KEYS (run it together with rotate_secret_keys, before removing the old key)."
    )

    def handle(self, *args, **options):
        try:
            count = webhook_secret_keys_rotate()
        except DecryptionError as exc:
            raise CommandError(f"{exc} Nothing was changed.") from exc
        self.stdout.write(
            self.style.SUCCESS(f"Re-encrypted {count} webhook/trigger secret(s) under the first key.")
        )
