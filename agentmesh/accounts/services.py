from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from rest_framework_simplejwt.tokens import RefreshToken

from agentmesh.core.audit import audited

from .models import Role


@transaction.atomic
def user_register(*, username: str, email: str, password: str, first_name: str = "", last_name: str = ""):
    """Create a self-registered account. Self-registration always gives the `user` role."""
    User = get_user_model()
    user = User(username=username, email=email, first_name=first_name, last_name=last_name, role=Role.USER)
    validate_password(password, user)
    user.set_password(password)
    user.save()
    audited("create", user, actor=user)
    return user


def user_issue_tokens(*, user) -> dict:
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def token_blacklist(*, refresh: str) -> None:
    RefreshToken(refresh).blacklist()


def user_ensure(*, username: str, email: str, password: str, role: str, superuser: bool = False):
    """Create the user if it does not exist yet; never touches an existing account.

    Returns (user, created)."""
    User = get_user_model()
    existing = User.objects.filter(username=username).first()
    if existing:
        return existing, False
    user = User(username=username, email=email, role=role, is_staff=superuser, is_superuser=superuser)
    user.set_password(password)
    user.save()
    audited("create", user)
    return user, True


def user_login_unlock(*, user) -> int:
    """Forget the failed logins counted against the account (django-axes), which ends its
    lockout. Returns how many attempt records were removed."""
    from axes.utils import reset

    return reset(username=user.username)


@transaction.atomic
def login_attempts_unlock(*, attempts) -> int:
    """Forget the given failed-login records (django-axes AccessAttempt rows: one per address and
    account), which ends the lockouts they caused. Returns how many were removed."""
    from axes.models import AccessAttempt

    rows = list(attempts.values("pk", "ip_address", "username"))
    if not rows:
        return 0
    AccessAttempt.objects.filter(pk__in=[row["pk"] for row in rows]).delete()
    audited(
        "unlock",
        AccessAttempt,
        details={
            "count": len(rows),
            "ip_addresses": sorted({row["ip_address"] or "" for row in rows}),
            "usernames": sorted({row["username"] or "" for row in rows}),
        },
    )
    return len(rows)


@transaction.atomic
def refresh_token_revoke(*, token) -> bool:
    """Blacklist an outstanding refresh token (simplejwt), as logout does: it can no longer be
    refreshed. Returns False when it already was."""
    from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken

    _, created = BlacklistedToken.objects.get_or_create(token=token)
    if created:
        audited("revoke", token, details={"jti": token.jti, "user_id": token.user_id})
    return created
