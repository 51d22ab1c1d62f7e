"""Create the demo accounts (and, as the apps grow, demo data). Safe to run repeatedly."""

import os

from agentmesh.accounts.models import Role
from agentmesh.accounts.services import user_ensure
from agentmesh.core.management.base import AuditedCommand
from integration.services import demo_seed
from templates_app.demo import demo_templates_seed


class Command(AuditedCommand):
    help = "Create the demo accounts and the developer's demo data if they do not exist."

    def handle(self, *args, **options):
        accounts = [
            (
                os.environ.get("DEMO_ADMIN_USERNAME", "admin"),
                os.environ.get("DEMO_ADMIN_EMAIL", "admin@agentmesh.local"),
                os.environ.get("DEMO_ADMIN_PASSWORD", "agentmesh-admin"),
                Role.ADMIN,
                True,
            ),
            (
                os.environ.get("DEMO_DEVELOPER_USERNAME", "developer"),
                os.environ.get("DEMO_DEVELOPER_EMAIL", "developer@agentmesh.local"),
                os.environ.get("DEMO_DEVELOPER_PASSWORD", "agentmesh-developer"),
                Role.DEVELOPER,
                False,
            ),
        ]
        developer = None
        for username, email, password, role, superuser in accounts:
            user, created = user_ensure(
                username=username, email=email, password=password, role=role, superuser=superuser
            )
            if created:
                self.stdout.write(f"created {role} '{username}' with password '{password}'")
            else:
                self.stdout.write(f"{role} '{username}' already exists (password unchanged)")
            if role == Role.DEVELOPER:
                developer = user
        counts = demo_seed(owner=developer)
        self.stdout.write(
            f"demo data for '{developer.username}': {counts['models']} model config(s) and "
            f"{counts['tools']} deployed built-in tool(s) and {counts['agents']} deployed agent(s) created"
        )
        templates = demo_templates_seed(owner=developer)
        self.stdout.write(f"{templates} published demo template(s) created")
