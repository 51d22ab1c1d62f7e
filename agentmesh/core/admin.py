"""Admin base classes shared by the domain apps."""

from django.contrib import admin
from django.db import transaction

from .exceptions import ServiceValidationError
from .models import ALLOW_RULE_HELP, OutboundAllowRule
from .services import object_delete, object_save


class _DryRunDone(Exception):
    pass


class AuditedAdminMixin:
    """Every admin save and delete records the same audit event as the API, through channel
    `admin` (the request middleware sets who and through what). Service-backed admins save
    through their service, which records it; the rest save through the generic one."""

    def save_model(self, request, obj, form, change):
        object_save(instance=obj)

    def delete_model(self, request, obj):
        object_delete(instance=obj)

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            for obj in queryset:  # one audit event per row, as deleting them one by one
                object_delete(instance=obj)


class AuditedAdmin(AuditedAdminMixin, admin.ModelAdmin):
    pass


class DeleteKeepingHistoryMixin:
    """Admin deletes of agents, workflows and tools go through their delete service (runs are
    kept; refused while one is unfinished). The confirmation page lists the unfinished runs as
    what prevents the delete. Subclasses set `unfinished` (a selector over objects) and
    `delete_object`."""

    unfinished_label = "run"

    def unfinished(self, objs):
        raise NotImplementedError

    def delete_object(self, obj) -> None:
        raise NotImplementedError

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        blocking = [
            f"Unfinished {self.unfinished_label} {each.pk} ({each.status})"
            for each in self.unfinished(objs)[:20]
        ]
        return deleted, counts, perms_needed, [*protected, *blocking]

    def delete_model(self, request, obj):
        self.delete_object(obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_object(obj)


class ServiceBackedAdmin(AuditedAdmin):
    """Saves through a service so the admin obeys the same rules as the API.

    The form runs the service once in a rolled-back transaction while cleaning, so a rule the
    service enforces shows up as a form error instead of a server error.
    """

    service_fields: tuple[str, ...] = ()

    def changed_values(self, form) -> dict:
        return {name: form.cleaned_data[name] for name in self.service_fields if name in form.cleaned_data}

    def save_via_service(self, request, obj, form, change):
        raise NotImplementedError

    def get_form(self, request, obj=None, **kwargs):
        form_class = super().get_form(request, obj, **kwargs)
        admin_site_model = self

        class ServiceCheckedForm(form_class):
            def clean(self):
                cleaned = super().clean()
                if self.errors:
                    return cleaned
                change = obj is not None
                # A fresh copy: the dry run must not leave its changes on the real instance.
                target = type(obj).objects.get(pk=obj.pk) if change else self.instance
                try:
                    with transaction.atomic():
                        admin_site_model.save_via_service(request, target, self, change)
                        raise _DryRunDone
                except _DryRunDone:
                    pass
                except ServiceValidationError as exc:
                    for field, messages in exc.detail.items():
                        name = field.split(".")[0].split("[")[0]
                        for message in messages:
                            self.add_error(name if name in self.fields else None, f"{field}: {message}")
                return cleaned

        return ServiceCheckedForm

    def save_model(self, request, obj, form, change):
        # The form has already put its values on `obj`: the service gets the stored row, so
        # it sees (and audits) what changed.
        target = type(obj).objects.get(pk=obj.pk) if change else obj
        saved = self.save_via_service(request, target, form, change)
        obj.pk = saved.pk
        obj._state.adding = False


@admin.register(OutboundAllowRule)
class OutboundAllowRuleAdmin(AuditedAdmin):
    """Destinations the SSRF guard lets through. Saving or deleting a rule clears the guard's rule
    cache in this process (post_save/post_delete); other processes pick it up within
    safe_http.RULE_CACHE_SECONDS."""

    list_display = ["pattern", "description", "enabled", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["pattern", "description"]
    fields = ["pattern", "description", "enabled"]

    def get_form(self, request, obj=None, **kwargs):
        kwargs.setdefault("help_texts", {"pattern": ALLOW_RULE_HELP})
        return super().get_form(request, obj, **kwargs)
