"""Admin pages; writes go through the services, secrets show only their mask."""

from django import forms
from django.contrib import admin

from agentmesh.core.admin import HistoryAdmin, ServiceBackedAdmin
from agentmesh.core.admin_display import IdSearchMixin

from . import services
from .models import Constraint, ModelConfig, Prompt, PromptVersion, Secret, Skill


@admin.register(Skill)
class SkillAdmin(IdSearchMixin, ServiceBackedAdmin):
    list_display = ["name", "category", "type", "is_active", "owner", "updated_at"]
    list_filter = ["type", "is_active", "category", "updated_at"]
    search_fields = ["name", "slug", "description", "category", "=owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    service_fields = (
        "name",
        "slug",
        "category",
        "type",
        "description",
        "tags",
        "input_schema",
        "output_schema",
        "is_active",
    )

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.skill_update(skill=obj, **values)
        return services.skill_create(owner=form.cleaned_data["owner"], **values)


@admin.register(Constraint)
class ConstraintAdmin(IdSearchMixin, ServiceBackedAdmin):
    list_display = ["name", "type", "is_active", "owner", "updated_at"]
    list_filter = ["type", "is_active", "updated_at"]
    search_fields = ["name", "description", "=owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    service_fields = ("name", "description", "type", "rules", "is_active")

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.constraint_update(constraint=obj, **values)
        return services.constraint_create(owner=form.cleaned_data["owner"], **values)


class PromptVersionInline(admin.TabularInline):
    model = PromptVersion
    fields = ["version", "template", "variables", "created_by", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Prompt)
class PromptAdmin(IdSearchMixin, ServiceBackedAdmin):
    list_display = ["name", "category", "version", "is_active", "owner", "updated_at"]
    list_filter = ["is_active", "category", "updated_at"]
    search_fields = ["name", "description", "template", "=owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["version"]
    inlines = [PromptVersionInline]
    service_fields = ("name", "description", "category", "tags", "template", "variables", "is_active")

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.prompt_update(prompt=obj, actor=request.user, **values)
        return services.prompt_create(owner=form.cleaned_data["owner"], actor=request.user, **values)


@admin.register(PromptVersion)
class PromptVersionAdmin(IdSearchMixin, HistoryAdmin):
    """Versions are immutable history: view only."""

    list_display = ["prompt", "version", "created_by", "created_at"]
    list_filter = ["created_at"]
    search_fields = ["prompt__name", "template"]
    id_search_fields = ("pk", "prompt__id")
    list_select_related = ["prompt", "created_by"]


class SecretAdminForm(forms.ModelForm):
    value = forms.CharField(
        widget=forms.PasswordInput(render_value=False),
        required=False,
        max_length=services.MAX_SECRET_CHARS,
        help_text="Leave empty to keep the current value. The value is never shown.",
    )

    class Meta:
        model = Secret
        fields = ["owner", "name", "description"]

    def clean(self):
        cleaned = super().clean()
        if self.instance._state.adding and not cleaned.get("value"):
            self.add_error("value", "Required for a new secret.")
        return cleaned


@admin.register(Secret)
class SecretAdmin(IdSearchMixin, ServiceBackedAdmin):
    form = SecretAdminForm
    list_display = ["name", "mask", "fingerprint", "owner", "last_used_at", "updated_at"]
    list_filter = ["last_used_at", "updated_at"]
    search_fields = ["name", "description", "=fingerprint", "=owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["mask", "fingerprint", "last_used_at", "last_used_for"]
    fields = ["owner", "name", "description", "value", *readonly_fields]

    def save_via_service(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            return services.secret_update(
                secret=obj,
                name=data["name"],
                description=data["description"],
                value=data.get("value") or None,
            )
        return services.secret_create(
            owner=data["owner"], name=data["name"], description=data["description"], value=data["value"]
        )


@admin.register(ModelConfig)
class ModelConfigAdmin(IdSearchMixin, ServiceBackedAdmin):
    list_display = ["name", "provider", "model_name", "is_active", "owner", "updated_at"]
    list_filter = ["provider", "is_active", "updated_at"]
    search_fields = ["name", "model_name", "base_url", "description", "=owner__username"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner", "api_key_secret", "fallback"]
    service_fields = tuple(sorted(services.MODEL_CONFIG_FIELDS))

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "base_url":  # an address typed without a scheme means https
            kwargs["assume_scheme"] = "https"
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.model_config_update(model_config=obj, actor=request.user, **values)
        return services.model_config_create(owner=form.cleaned_data["owner"], actor=request.user, **values)
