"""`{% agentmesh_dashboard %}`: the operator's summary on the admin index (admins only)."""

from django import template

from agentmesh.core.permissions import is_admin

from ..selectors.status import admin_dashboard

register = template.Library()


@register.inclusion_tag("system/admin_dashboard.html", takes_context=True)
def agentmesh_dashboard(context) -> dict:
    request = context.get("request")
    if request is None or not is_admin(request.user):
        return {"dashboard": None}
    return {"dashboard": admin_dashboard()}
