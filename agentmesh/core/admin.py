"""Admin base classes shared by the domain apps."""

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from rest_framework.exceptions import APIException

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
                    add_service_errors(self, exc)
                return cleaned

        return ServiceCheckedForm

    def save_model(self, request, obj, form, change):
        # The form has already put its values on `obj`: the service gets the stored row, so
        # it sees (and audits) what changed.
        target = type(obj).objects.get(pk=obj.pk) if change else obj
        saved = self.save_via_service(request, target, form, change)
        obj.pk = saved.pk
        obj._state.adding = False


def add_service_errors(form, exc: ServiceValidationError) -> None:
    """A service's 400 as errors of the form field it names (`inputs.city` → `inputs`), else of
    the whole form."""
    for field, texts in exc.detail.items():
        name = field.split(".")[0].split("[")[0]
        for message in texts if isinstance(texts, list) else [texts]:
            form.add_error(name if name in form.fields else None, f"{field}: {message}")


class HistoryAdminMixin:
    """Append-only history (runs, executions, steps, messages, events, audit, logs): viewable,
    never added, changed or deleted in the admin; retention prunes it."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class HistoryAdmin(HistoryAdminMixin, admin.ModelAdmin):
    pass


class ReadOnlyInline(HistoryAdminMixin, admin.TabularInline):
    """Recorded rows on their parent's page (steps, messages, deliveries, versions): shown,
    never added, changed or deleted there, each linking to its own page.

    `rows_shown()` caps how many are shown (None: all), so a long history does not make a
    huge page; the parent's page links the rest."""

    extra = 0
    can_delete = False
    show_change_link = True

    def rows_shown(self) -> int | None:
        return None

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        limit = self.rows_shown()
        if limit is None:
            return formset

        class FirstRows(formset):
            def get_queryset(self):
                if not hasattr(self, "_first_rows"):  # evaluated once: each form reads it
                    self._first_rows = super().get_queryset()[:limit]
                return self._first_rows

        return FirstRows


@dataclass(frozen=True)
class ObjectAction:
    """A button on an object's admin page that calls a service.

    `run(request, obj, data)` calls the service and returns the success message, or
    (message, url) to go to another page than the object's (a new execution); `data` is the
    cleaned form (or {}); a 400 of the service shows on the form's fields. A state-changing action shows a confirmation page first; `form_class`
    adds inputs to it. `available(obj)` hides the button when the action does not apply.
    Service errors (validation, conflict) come back as an error message, never a 500.
    """

    name: str
    label: str
    run: Callable
    available: Callable = lambda obj: True
    confirm: bool = True
    form_class: type[forms.Form] | None = None
    description: str = ""


class ObjectActionsMixin:
    """Adds `object_actions` to a ModelAdmin: buttons on the change page at
    `<pk>/do/<name>/`, a confirmation page (with the action's form) on GET, the service on
    POST. Only platform admins may act; everyone else gets 403."""

    object_actions: tuple[ObjectAction, ...] = ()
    change_form_template = "admin/agentmesh/change_form_object_actions.html"

    def get_object_actions(self, request, obj) -> list[ObjectAction]:
        if obj is None or not self.has_object_action_permission(request):
            return []
        return [action for action in self.object_actions if action.available(obj)]

    def has_object_action_permission(self, request) -> bool:
        return bool(getattr(request.user, "is_platform_admin", False))

    def get_urls(self):
        opts = self.model._meta
        own = [
            path(
                "<path:object_id>/do/<slug:action_name>/",
                self.admin_site.admin_view(self.object_action_view),
                name=f"{opts.app_label}_{opts.model_name}_object_action",
            )
        ]
        return own + super().get_urls()

    def object_action_url(self, obj, action: ObjectAction) -> str:
        opts = self.model._meta
        return reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_object_action",
            args=[obj.pk, action.name],
        )

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        context["object_action_buttons"] = [
            {"label": action.label, "url": self.object_action_url(obj, action), "name": action.name}
            for action in self.get_object_actions(request, obj)
        ]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def object_action_view(self, request, object_id, action_name):
        obj = self.get_object(request, object_id)
        if obj is None:
            raise Http404("No such object.")
        if not self.has_object_action_permission(request):
            raise PermissionDenied
        action = next((a for a in self.get_object_actions(request, obj) if a.name == action_name), None)
        if action is None:
            raise Http404("This action does not apply to this object.")
        opts = self.model._meta
        change_url = reverse(
            f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]
        )
        form = action.form_class(request.POST or None) if action.form_class else None
        submitted = request.method == "POST" or not action.confirm
        if submitted and (form is None or form.is_valid()):
            try:
                message = action.run(request, obj, form.cleaned_data if form else {})
            except ServiceValidationError as exc:
                if form is None:
                    self.message_user(
                        request, f"{action.label} failed: {_api_error_text(exc)}", messages.ERROR
                    )
                    return HttpResponseRedirect(change_url)
                add_service_errors(form, exc)
            except APIException as exc:
                self.message_user(request, f"{action.label} failed: {_api_error_text(exc)}", messages.ERROR)
                if form is None:
                    return HttpResponseRedirect(change_url)
            else:
                message, redirect_to = message if isinstance(message, tuple) else (message, change_url)
                self.message_user(request, message or f"{action.label}: done.", messages.SUCCESS)
                return HttpResponseRedirect(redirect_to)
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "object": obj,
            "action": action,
            "form": form,
            "change_url": change_url,
            "title": f"{action.label}: {obj}",
        }
        return TemplateResponse(request, "admin/agentmesh/object_action_confirm.html", context)


def _api_error_text(exc: APIException) -> str:
    detail = exc.detail
    if isinstance(detail, dict):
        return "; ".join(
            f"{field}: {' '.join(map(str, msgs if isinstance(msgs, list) else [msgs]))}"
            for field, msgs in detail.items()
        )
    if isinstance(detail, list):
        return " ".join(map(str, detail))
    return str(detail)


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
