"""Create an account with a role: the way to make the first admin and further accounts."""

import getpass
import sys

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.core.validators import validate_email

from agentmesh.accounts.models import Role
from agentmesh.accounts.services import user_ensure
from agentmesh.core.management.base import AuditedCommand


class Command(AuditedCommand):
    help = (
        "Create an account with a role (admin: also staff and superuser, for the Django admin). "
        "The password is read from standard input (--password-stdin) or prompted for; it is "
        "never printed. An existing username is an error unless --exists-ok (then it is left "
        "unchanged)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", required=True)
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="Read the password from the first line of standard input (for scripts).",
        )
        parser.add_argument(
            "--exists-ok",
            action="store_true",
            help="Succeed without changing anything when the username exists already.",
        )

    def handle(self, *args, username, email, role, password_stdin, exists_ok, **options):
        User = get_user_model()
        existing = User.objects.filter(username=username).first()
        if existing is not None:
            if not exists_ok:
                raise CommandError(f"User {username!r} already exists (nothing changed).")
            self.stdout.write(f"{existing.role} {username!r} already exists (unchanged)")
            return
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"--email: {exc.messages[0]}") from exc
        if User.objects.filter(email__iexact=email).exists():
            raise CommandError(f"Another account already uses the email {email!r}.")
        password = self._read_password(password_stdin)
        try:
            validate_password(password, User(username=username, email=email))
        except ValidationError as exc:
            raise CommandError("Password refused: " + " ".join(exc.messages)) from exc
        admin = role == Role.ADMIN
        _, created = user_ensure(
            username=username, email=email, password=password, role=role, superuser=admin
        )
        if not created:  # created by someone else in the meantime
            raise CommandError(f"User {username!r} already exists (nothing changed).")
        self.stdout.write(self.style.SUCCESS(f"created {role} {username!r}"))

    def _read_password(self, from_stdin: bool) -> str:
        if from_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
        elif sys.stdin.isatty():
            password = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != password:
                raise CommandError("The passwords do not match.")
        else:
            raise CommandError("No terminal to prompt for the password: use --password-stdin.")
        if not password:
            raise CommandError("The password is empty.")
        return password
