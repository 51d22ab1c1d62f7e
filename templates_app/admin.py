"""Admin pages: template metadata saves through the services, publish/unpublish is an action;
versions and instances (provenance) are history: view only. New templates come through the API
(or import)."""

from django.contrib import admin

from agentmesh.core.admin import HistoryAdmin, ReadOnlyInline, ServiceBackedAdmin
from agentmesh.core.admin_display import IdSearchMixin, pretty_json, short_id

from . import services
from .models import Template, TemplateInstance, TemplateVersion

METADATA_FIELDS = ("name", "description", "category", "tags", "archived")


class TemplateVersionInline(ReadOnlyInline):
    model = TemplateVersion
    fields = ["number", "changelog", "checksum", "created_by", "created_at"]
    readonly_fields = fields


@admin.register(Template)
class TemplateAdmin(IdSearchMixin, ServiceBackedAdmin):
    list_display = ["name", "kind", "category", "published", "archived", "owner", "updated_at"]
    list_filter = ["kind", "published", "archived", "category", "updated_at"]
    search_fields = ["name", "description", "category", "=owner__username"]
    list_select_related = ["owner"]
    fields = ["owner", "kind", *METADATA_FIELDS, "published", "latest_version"]
    readonly_fields = ["owner", "kind", "published", "latest_version"]
    service_fields = METADATA_FIELDS
    inlines = [TemplateVersionInline]
    actions = ["publish", "unpublish"]

    def has_add_permission(self, request):
        return False

    def save_via_service(self, request, obj, form, change):
        return services.template_update(template=obj, actor=request.user, **self.changed_values(form))

    def delete_model(self, request, obj):
        services.template_delete(template=obj)

    def delete_queryset(self, request, queryset):
        for template in queryset:
            services.template_delete(template=template)

    @admin.action(description="Publish the selected templates (everyone may read and instantiate them)")
    def publish(self, request, queryset):
        for template in queryset:
            services.template_set_published(template=template, published=True, actor=request.user)
        self.message_user(request, f"{queryset.count()} template(s) published.")

    @admin.action(description="Unpublish the selected templates")
    def unpublish(self, request, queryset):
        for template in queryset:
            services.template_set_published(template=template, published=False, actor=request.user)
        self.message_user(request, f"{queryset.count()} template(s) unpublished.")


@admin.register(TemplateVersion)
class TemplateVersionAdmin(IdSearchMixin, HistoryAdmin):
    list_display = ["template", "number", "short_checksum", "created_by", "created_at"]
    list_filter = ["template__kind", "created_at"]
    list_select_related = ["template", "created_by"]
    search_fields = ["template__name", "changelog", "checksum"]
    id_search_fields = ("pk", "template__id")
    fields = [
        "id",
        "template",
        "number",
        "changelog",
        "checksum",
        "created_by",
        "created_at",
        "parameters_pretty",
        "body_pretty",
    ]
    readonly_fields = ["parameters_pretty", "body_pretty"]

    @admin.display(description="checksum", ordering="checksum")
    def short_checksum(self, obj):
        return short_id(obj.checksum)

    @admin.display(description="parameters")
    def parameters_pretty(self, obj):
        return pretty_json(obj.parameters)

    @admin.display(description="body")
    def body_pretty(self, obj):
        return pretty_json(obj.body)


@admin.register(TemplateInstance)
class TemplateInstanceAdmin(IdSearchMixin, HistoryAdmin):
    """Provenance: which resource came from which template version."""

    list_display = [
        "resource_kind",
        "resource_name",
        "resource",
        "template_name",
        "version_number",
        "created_by",
        "created_at",
    ]
    list_filter = ["resource_kind", "created_at"]
    search_fields = ["resource_name", "template_name", "local_key", "=created_by__username"]
    id_search_fields = ("pk", "resource_id", "version__template__id")
    list_select_related = ["created_by"]
    date_hierarchy = "created_at"

    @admin.display(description="resource id", ordering="resource_id")
    def resource(self, obj):
        return short_id(obj.resource_id)
