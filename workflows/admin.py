"""Admin pages: workflows save (and execute) through the services; versions, executions and
steps are append-only history. An execution's page tells its story: the steps in order with
their input, output and error, the executions it started (map, loop, sub-workflow), its trace;
an operator cancels, retries, approves or rejects it there, each through the service (audited,
channel `admin`)."""

import json
from dataclasses import replace

from django import forms
from django.contrib import admin
from django.db.models import Prefetch
from django.utils.html import format_html, format_html_join

from agentmesh.core.admin import (
    DeleteKeepingHistoryMixin,
    HistoryAdmin,
    ObjectAction,
    ObjectActionsMixin,
    ReadOnlyInline,
    ServiceBackedAdmin,
)
from agentmesh.core.admin_display import (
    EMPTY,
    IdSearchMixin,
    RecordDisplay,
    admin_link,
    admin_url,
    changelist_link,
    cost,
    created,
    duration,
    finished,
    model_admin_url,
    pretty_json,
    short_id,
    started,
    status,
    tokens,
    truncated,
)

from . import selectors, services
from .engine.scheduler import RETRYABLE_EXECUTION_STATUSES
from .models import (
    TERMINAL_EXECUTION_STATUSES,
    StepExecution,
    StepStatus,
    Workflow,
    WorkflowExecution,
    WorkflowStatus,
    WorkflowVersion,
)

#: child executions listed per step; the rest are one click away (a map may start thousands)
CHILDREN_SHOWN = 20
#: steps shown inline on an execution's page; the rest are in the step list, filtered to it
STEPS_SHOWN = 200


def _child_links(executions, *, more: dict | None = None) -> str:
    if not executions:
        return EMPTY
    links = format_html_join(
        ", ",
        "{} {}",
        ((short_id(child.pk, url=admin_url(child)), child.status) for child in executions[:CHILDREN_SHOWN]),
    )
    if len(executions) <= CHILDREN_SHOWN or more is None:
        return links
    rest = changelist_link(WorkflowExecution, f"all {len(executions)}", **more)
    return format_html("{} … {}", links, rest)


# --- workflows --------------------------------------------------------------------------------
class ExecuteForm(forms.Form):
    inputs = forms.JSONField(
        initial=dict,
        required=False,
        widget=forms.Textarea(attrs={"rows": 10, "cols": 80, "class": "vLargeTextField"}),
        help_text="A JSON object, checked against the workflow's input schema.",
    )

    def clean_inputs(self):
        value = self.cleaned_data["inputs"]
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise forms.ValidationError('A JSON object, e.g. {"city": "Oslo"}.')
        return value


def _execute(request, workflow, data):
    execution, _ = services.workflow_execute(workflow=workflow, user=request.user, inputs=data["inputs"])
    return f"Started execution {execution.pk} ({execution.status}).", admin_url(execution)


EXECUTE = ObjectAction(
    name="execute",
    label="Execute",
    run=_execute,
    available=lambda workflow: workflow.status != WorkflowStatus.ARCHIVED,
    form_class=ExecuteForm,
    description="Start an execution of the current version.",
)


@admin.register(Workflow)
class WorkflowAdmin(ObjectActionsMixin, DeleteKeepingHistoryMixin, ServiceBackedAdmin):
    list_display = ["name", "status", "version", "owner", "updated_at"]
    list_filter = ["status"]
    search_fields = ["name", "description"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["version", "executions"]
    service_fields = services.WORKFLOW_FIELDS
    object_actions = (EXECUTE,)

    def get_object_actions(self, request, obj):
        actions = super().get_object_actions(request, obj)
        schema = (obj.definition or {}).get("inputs") if obj is not None else None
        if not schema:
            return actions
        described = f"{EXECUTE.description} Input schema: {json.dumps(schema, indent=None)[:2000]}"
        return [replace(a, description=described) if a.name == "execute" else a for a in actions]

    @admin.display(description="Executions")
    def executions(self, obj):
        if obj is None or obj.pk is None:
            return EMPTY
        return changelist_link(
            WorkflowExecution, "all executions of this workflow", workflow__id__exact=obj.pk
        )

    def save_via_service(self, request, obj, form, change):
        values = self.changed_values(form)
        if change:
            return services.workflow_update(workflow=obj, actor=request.user, **values)
        return services.workflow_create(owner=form.cleaned_data["owner"], actor=request.user, **values)

    def get_deleted_objects(self, objs, request):
        # Versions are append-only in their own admin, but go with their workflow (the delete
        # service's rule); the unfinished runs are what may block it.
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, perms_needed - {WorkflowVersion._meta.verbose_name}, protected

    unfinished_label = "execution"

    def unfinished(self, objs):
        return selectors.unfinished_executions(objs)

    def delete_object(self, obj) -> None:
        services.workflow_delete(workflow=obj)


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(HistoryAdmin):
    """Frozen definitions: executions pin them, so they are never edited or deleted here."""

    list_display = ["workflow", "version", "created_by", "created_at"]
    search_fields = ["workflow__name"]
    list_select_related = ["workflow", "created_by"]
    fields = ["workflow", "version", "definition_pretty", "created_by", "created_at"]
    readonly_fields = ["definition_pretty", "created_at"]

    @admin.display(description="Definition")
    def definition_pretty(self, obj):
        return pretty_json(obj.definition, open_=True)


# --- executions ---------------------------------------------------------------------------
def _waiting_approvals(execution) -> list[StepExecution]:
    return list(
        execution.steps.filter(status=StepStatus.WAITING, wait_kind="approval").order_by("created_at")
    )


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, max_length=500, widget=forms.Textarea(attrs={"rows": 3}))


def _cancel(request, execution, data):
    execution = services.execution_cancel(execution=execution, actor=request.user)
    return f"Execution {execution.pk} is {execution.status}."


def _retry(request, execution, data):
    retry = services.execution_retry(execution=execution, actor=request.user)
    return f"Retrying as execution {retry.pk} ({retry.status}).", admin_url(retry)


def _decide(approve: bool):
    def run(request, execution, data):
        execution = services.execution_decide(
            execution=execution, actor=request.user, approve=approve, comment=data.get("comment", "")
        )
        verb = "Approved" if approve else "Rejected"
        return f"{verb}; the execution is {execution.status}."

    return run


def _retryable(execution) -> bool:
    return (
        execution.status in RETRYABLE_EXECUTION_STATUSES
        and execution.workflow_id is not None
        and execution.version_id is not None
    )


EXECUTION_ACTIONS = (
    ObjectAction(
        name="cancel",
        label="Cancel",
        run=_cancel,
        available=lambda execution: not execution.finished,
        description="Cancel this execution? Its running steps are stopped and it ends `cancelled`.",
    ),
    ObjectAction(
        name="retry",
        label="Retry",
        run=_retry,
        available=_retryable,
        description="Start a new execution with the same version and inputs, reusing the outputs of "
        "the steps that succeeded?",
    ),
    ObjectAction(
        name="approve",
        label="Approve",
        run=_decide(True),
        available=lambda execution: not execution.finished and bool(_waiting_approvals(execution)),
        form_class=DecisionForm,
        description="Approve the step waiting for approval?",
    ),
    ObjectAction(
        name="reject",
        label="Reject",
        run=_decide(False),
        available=lambda execution: not execution.finished and bool(_waiting_approvals(execution)),
        form_class=DecisionForm,
        description="Reject the step waiting for approval? The step fails (no retry).",
    ),
)


class StepInline(ReadOnlyInline):
    """The execution's steps in the order they were created, read-only."""

    model = StepExecution
    fk_name = "execution"
    ordering = ["created_at", "attempt"]
    fields = [
        "node_id",
        "node_type",
        "attempt",
        status,
        started,
        finished,
        duration,
        "input_pretty",
        "output_pretty",
        "error_pretty",
        "worker",
        "children",
    ]
    readonly_fields = fields

    def rows_shown(self) -> int:
        """At most STEPS_SHOWN steps inline: a long loop must not make a huge page."""
        return STEPS_SHOWN

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .prefetch_related(
                Prefetch(
                    "child_executions",
                    queryset=WorkflowExecution.objects.only("id", "status", "parent_step_id").order_by(
                        "created_at"
                    ),
                )
            )
        )

    @admin.display(description="Input")
    def input_pretty(self, obj):
        return pretty_json(obj.input)

    @admin.display(description="Output")
    def output_pretty(self, obj):
        return pretty_json(obj.output)

    @admin.display(description="Error")
    def error_pretty(self, obj):
        if not obj.error:
            return EMPTY
        kind = f"{obj.error_kind}: " if obj.error_kind else ""
        return pretty_json(f"{kind}{obj.error}", summary=(obj.error_kind or "error"), open_=True)

    @admin.display(description="Started executions")
    def children(self, obj):
        return _child_links(list(obj.child_executions.all()), more={"parent_step__id__exact": obj.pk})


@admin.register(WorkflowExecution)
class WorkflowExecutionAdmin(IdSearchMixin, RecordDisplay, ObjectActionsMixin, HistoryAdmin):
    id_search_fields = ("pk", "retry_of_id", "parent_step__execution_id")
    list_display = ["short_pk", "workflow_version", status, "user", created, duration, cost]
    list_display_links = ["short_pk"]
    list_filter = ["status", ("workflow", admin.RelatedOnlyFieldListFilter), "created_at", "depth"]
    search_fields = ["id", "workflow_name", "trace_id", "user__username"]
    list_select_related = ["user"]
    inlines = [StepInline]
    object_actions = EXECUTION_ACTIONS
    actions = ["cancel_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "full_id",
                    "workflow_link",
                    "workflow_version_number",
                    status,
                    "user",
                    "created_at",
                    started,
                    finished,
                    duration,
                    "deadline",
                    tokens,
                    cost,
                ]
            },
        ),
        ("Inputs, outputs and error", {"fields": ["inputs_pretty", "outputs_pretty", "error_text"]}),
        ("Relations", {"fields": ["steps_link", "parent_link", "retry_of_link", "retries_links", "depth"]}),
        ("Trace", {"fields": ["trace", "metadata_pretty", "idempotency_key"]}),
    ]
    readonly_fields = [
        "full_id",
        "workflow_link",
        status,
        started,
        finished,
        duration,
        tokens,
        cost,
        "inputs_pretty",
        "outputs_pretty",
        "error_text",
        "parent_link",
        "retry_of_link",
        "retries_links",
        "steps_link",
        "trace",
        "metadata_pretty",
        "created_at",
    ]

    def get_object_actions(self, request, obj):
        actions = super().get_object_actions(request, obj)
        if not any(a.name in ("approve", "reject") for a in actions):
            return actions
        step = _waiting_approvals(obj)[0]
        message = (step.state or {}).get("message") or ""
        what = f"the step {step.node_id} (attempt {step.attempt})" + (
            f": “{message[:300]}”" if message else ""
        )
        return [
            replace(
                a, description=f"{a.label} {what}?" + (" It fails (no retry)." if a.name == "reject" else "")
            )
            if a.name in ("approve", "reject")
            else a
            for a in actions
        ]

    @admin.display(description="Workflow", ordering="workflow_name")
    def workflow_version(self, obj):
        return format_html("{} v{}", truncated(obj.workflow_name, 28), obj.workflow_version_number or "?")

    @admin.display(description="Workflow")
    def workflow_link(self, obj):
        if obj.workflow_id is None:
            return f"{obj.workflow_name} (deleted)"
        return admin_link(obj.workflow, obj.workflow_name or str(obj.workflow))

    @admin.display(description="Inputs")
    def inputs_pretty(self, obj):
        return pretty_json(obj.inputs, open_=True)

    @admin.display(description="Outputs")
    def outputs_pretty(self, obj):
        return pretty_json(obj.outputs, open_=True)

    @admin.display(description="Started by step")
    def parent_link(self, obj):
        step = obj.parent_step
        if step is None:
            return EMPTY
        return format_html(
            "{} of execution {}",
            admin_link(step, f"{step.node_id} #{step.attempt}"),
            short_id(step.execution_id, url=model_admin_url(WorkflowExecution, step.execution_id)),
        )

    @admin.display(description="Retry of")
    def retry_of_link(self, obj):
        return (
            short_id(obj.retry_of_id, url=model_admin_url(WorkflowExecution, obj.retry_of_id))
            if obj.retry_of_id
            else EMPTY
        )

    @admin.display(description="Steps")
    def steps_link(self, obj):
        count = obj.steps.count()
        shown = f" (the first {STEPS_SHOWN} below)" if count > STEPS_SHOWN else ""
        return format_html(
            "{}{}",
            changelist_link(StepExecution, f"{count} step(s) in the step list", execution__id__exact=obj.pk),
            shown,
        )

    @admin.display(description="Retried as")
    def retries_links(self, obj):
        return _child_links(list(obj.retries.only("id", "status").order_by("created_at")))

    @admin.action(description="Cancel the selected unfinished executions", permissions=["object_action"])
    def cancel_selected(self, request, queryset):
        cancelled = 0
        for execution in queryset.exclude(status__in=TERMINAL_EXECUTION_STATUSES):
            services.execution_cancel(execution=execution, actor=request.user)
            cancelled += 1
        self.message_user(request, f"{cancelled} execution(s) cancelled.")


@admin.register(StepExecution)
class StepExecutionAdmin(IdSearchMixin, RecordDisplay, HistoryAdmin):
    id_search_fields = ("pk", "execution_id")
    ordering = ["-created_at"]  # newest first (the model orders by parent, for inlines)
    list_display = [
        "short_pk",
        "execution_link",
        "node_id",
        "node_type",
        "attempt",
        status,
        duration,
        "worker_short",
        created,
    ]
    list_display_links = ["short_pk"]
    list_filter = ["status", "node_type", "wait_kind", "created_at"]
    search_fields = ["id", "execution__id", "node_id", "node_type", "worker"]
    list_select_related = ["execution"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "execution_link",
                    "node_id",
                    "node_type",
                    "attempt",
                    status,
                    "wait_kind",
                    "created_at",
                    started,
                    finished,
                    duration,
                    "worker",
                    "dispatches",
                    tokens,
                    cost,
                ]
            },
        ),
        (
            "Input, output and error",
            {"fields": ["input_pretty", "output_pretty", "error_text", "state_pretty"]},
        ),
        ("Started executions", {"fields": ["children"]}),
    ]
    readonly_fields = [
        "execution_link",
        status,
        started,
        finished,
        "created_at",
        duration,
        tokens,
        cost,
        "input_pretty",
        "output_pretty",
        "error_text",
        "state_pretty",
        "children",
    ]

    @admin.display(description="Worker", ordering="worker")
    def worker_short(self, obj):
        return truncated(obj.worker)

    @admin.display(description="Execution", ordering="execution")
    def execution_link(self, obj):
        return short_id(obj.execution_id, url=model_admin_url(WorkflowExecution, obj.execution_id))

    @admin.display(description="Input")
    def input_pretty(self, obj):
        return pretty_json(obj.input, open_=True)

    @admin.display(description="Output")
    def output_pretty(self, obj):
        return pretty_json(obj.output, open_=True)

    @admin.display(description="Error")
    def error_text(self, obj):
        if not obj.error:
            return EMPTY
        return format_html(
            "<strong>{}</strong><pre style='white-space: pre-wrap'>{}</pre>", obj.error_kind, obj.error
        )

    @admin.display(description="Handler state")
    def state_pretty(self, obj):
        return pretty_json(obj.state)

    @admin.display(description="Executions it started (map, loop, sub-workflow)")
    def children(self, obj):
        children = list(obj.child_executions.only("id", "status").order_by("created_at"))
        return _child_links(children, more={"parent_step__id__exact": obj.pk})
