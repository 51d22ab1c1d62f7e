"""Reads of templates: what a user may see (their own, shared, and the published catalogue)."""

from django.db.models import Q, QuerySet

from agentmesh.core.permissions import has_object_action, is_admin, permitted_queryset

from .models import Template

# What the published catalogue lets everyone do with a template.
PUBLIC_ACTIONS = ("view", "use")


def templates_visible_to(user, queryset: QuerySet | None = None) -> QuerySet:
    queryset = Template.objects.all() if queryset is None else queryset
    if is_admin(user):
        return queryset
    own_or_shared = permitted_queryset(user, queryset).values("pk")
    return queryset.filter(Q(pk__in=own_or_shared) | Q(published=True, archived=False))


def template_allows(user, template: Template, action: str) -> bool:
    if template.published and not template.archived and action in PUBLIC_ACTIONS:
        return True
    return has_object_action(user, template, action)
