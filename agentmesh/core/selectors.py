"""Reads shared by the domain apps."""

from django.db.models import Q, QuerySet

from .permissions import is_admin


def child_records_visible_to(user, records: QuerySet, *, caller: str = "user", parent: str) -> QuerySet:
    """The rule for records a user made with an owned resource (runs, executions,
    conversations): visible to their caller, the resource's owner and admins. Sharing the
    resource does not share what others did with it. `caller` and `parent` name the record's
    foreign keys to the calling user and to the resource (which may be null once deleted)."""
    if is_admin(user):
        return records
    if not user or not user.is_authenticated:
        return records.none()
    return records.filter(Q(**{caller: user}) | Q(**{f"{parent}__owner": user}))
