"""Admin: runtime configuration (constance's page, saving through config_update) and feature
flags (saving through flag_set / flag_reset). Both validate like the API and are audited
through channel `admin`."""

from constance.admin import Config, ConstanceAdmin
from constance.forms import ConstanceForm
from django import forms
from django.contrib import admin

from agentmesh.core.admin import ServiceBackedAdmin
from agentmesh.core.exceptions import ServiceValidationError
from agentmesh.core.features import FEATURES, SETTINGS, runtime_setting

from ..models import FeatureFlag
from ..services import config as config_services
from ..services import flags as flag_services


class RuntimeConfigForm(ConstanceForm):
    """Constance's form, validated by the registry and saved through config_update (audited)."""

    def clean(self):
        cleaned = super().clean()
        for key in SETTINGS:
            if key not in cleaned or key in self.errors:
                continue
            try:
                cleaned[key] = config_services.config_validate_value(key=key, value=cleaned[key])
            except ServiceValidationError as exc:
                for messages in exc.detail.values():
                    for message in messages:
                        self.add_error(key, str(message))
        return cleaned

    def save(self):
        changed = {
            key: self.cleaned_data[key]
            for key in SETTINGS
            if key in self.cleaned_data and self.cleaned_data[key] != runtime_setting(key)
        }
        if changed:
            config_services.config_update(values=changed)
        return sorted(changed)


admin.site.unregister([Config])


@admin.register(Config)
class RuntimeConfigAdmin(ConstanceAdmin):
    change_list_form = RuntimeConfigForm


class FeatureFlagForm(forms.ModelForm):
    name = forms.ChoiceField(choices=())
    roles = forms.MultipleChoiceField(
        choices=[(r, r) for r in flag_services.ROLES], required=False, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = FeatureFlag
        fields = ["name", *flag_services.FLAG_FIELDS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "name" in self.fields:  # read-only once the flag exists
            self.fields["name"].choices = [(name, name) for name in sorted(FEATURES)]


@admin.register(FeatureFlag)
class FeatureFlagAdmin(ServiceBackedAdmin):
    form = FeatureFlagForm
    list_display = ["name", "everyone", "percent", "roles", "superusers", "authenticated", "modified"]
    list_filter = ["everyone", "superusers", "staff", "authenticated"]
    search_fields = ["name", "note"]
    filter_horizontal = ["users", "groups"]
    service_fields = flag_services.FLAG_FIELDS

    def get_readonly_fields(self, request, obj=None):
        return ["name"] if obj is not None else []

    def save_via_service(self, request, obj, form, change):
        name = obj.name if change else form.cleaned_data.get("name")
        if name not in FEATURES:
            raise ServiceValidationError("Not a feature flag.", field="name")
        values = self.changed_values(form)
        values["users"] = [u.pk for u in values.get("users") or []]
        values["groups"] = [g.name for g in values.get("groups") or []]
        flag_services.flag_set(name=name, **values)
        return FeatureFlag.objects.get(name=name)

    def save_related(self, request, form, formsets, change):
        pass  # users and groups were saved by flag_set (audited with the flag)

    def delete_model(self, request, obj):
        flag_services.flag_reset(name=obj.name)

    def delete_queryset(self, request, queryset):
        for flag in queryset:
            flag_services.flag_reset(name=flag.name)
