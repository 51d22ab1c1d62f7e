"""Interacting with a deployed agent: start a run (idempotent with a key), execute it (in the
request, streamed, or on a worker), cancel it. Runs on one conversation are serialized."""

import time
import uuid
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from agentmesh.core.audit import audited
from agentmesh.core.exceptions import ConflictError, ServiceValidationError
from agentmesh.core.signals import snapshot
from agentmesh.core.tasks import enqueue_on_commit

from .models import FINISHED_RUN_STATUSES, Agent, AgentRun, AgentStatus, Conversation, RunStatus, StopReason
from .runtime.loop import Emit, RunLoop

CALLER_ROLES = {"user", "assistant", "system"}
MAX_MESSAGES = 100
MAX_INPUT_CHARS = 200_000


class AgentNotDeployed(ConflictError):
    pass


def _normalize_messages(input_text: Any, messages: Any) -> list[dict]:
    if (input_text is None) == (messages is None):
        raise ServiceValidationError("Give either input or messages.", field="input")
    if input_text is not None:
        if not isinstance(input_text, str) or not input_text.strip():
            raise ServiceValidationError("A non-empty text.", field="input")
        messages = [{"role": "user", "content": input_text}]
    if not isinstance(messages, list) or not messages or len(messages) > MAX_MESSAGES:
        raise ServiceValidationError(f"A list of 1 to {MAX_MESSAGES} messages.", field="messages")
    out = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ServiceValidationError("Each message is an object.", field=f"messages[{index}]")
        role, content = message.get("role"), message.get("content")
        if role not in CALLER_ROLES:
            raise ServiceValidationError(
                f"role must be one of {sorted(CALLER_ROLES)}.", field=f"messages[{index}].role"
            )
        if not isinstance(content, str):
            raise ServiceValidationError("content must be a text.", field=f"messages[{index}].content")
        out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise ServiceValidationError("The last message must be from the user.", field="messages")
    if sum(len(m["content"]) for m in out) > MAX_INPUT_CHARS:
        raise ServiceValidationError(f"At most {MAX_INPUT_CHARS} characters in all.", field="messages")
    return out


def run_start(
    *,
    agent: Agent,
    user,
    input: str | None = None,  # noqa: A002
    messages: list[dict] | None = None,
    conversation_id=None,
    variables: dict | None = None,
    metadata: dict | None = None,
    idempotency_key: str = "",
    background: bool = False,
    parent_run: AgentRun | None = None,
    claim: bool = False,
) -> tuple[AgentRun, bool]:
    """Create a queued run of the agent's deployed version: (run, created). The same
    Idempotency-Key from the same user returns the first run instead of a new one. A new
    conversation is created held by its first run. With `claim` the caller executes the new
    run itself right away: it is created `running` and passed to `run_execute(claimed=True)`."""
    key = (idempotency_key or "").strip()[:200]
    if key:
        existing = AgentRun.objects.filter(agent=agent, user=user, idempotency_key=key).first()
        if existing is not None:
            return existing, False
    if agent.status != AgentStatus.DEPLOYED or agent.deployed_version_id is None:
        raise AgentNotDeployed(f"The agent {agent.name} is not deployed.")
    new_messages = _normalize_messages(input, messages)
    if variables is not None and not isinstance(variables, dict):
        raise ServiceValidationError("An object of prompt variables.", field="variables")
    try:
        with transaction.atomic():
            if conversation_id:
                conversation = Conversation.objects.filter(pk=conversation_id, agent=agent, user=user).first()
                if conversation is None:
                    raise ServiceValidationError(
                        "No such conversation of yours with this agent.", field="conversation_id"
                    )
            run_id = uuid.uuid4()
            if not conversation_id:
                conversation = Conversation.objects.create(
                    agent=agent, user=user, title=new_messages[-1]["content"][:80], active_run_id=run_id
                )
            run = AgentRun.objects.create(
                pk=run_id,
                agent=agent,
                version=agent.deployed_version,
                conversation=conversation,
                user=user,
                parent_run=parent_run,
                depth=(parent_run.depth + 1) if parent_run else 0,
                input={"messages": new_messages, "variables": variables or {}},
                metadata=metadata or {},
                idempotency_key=key,
                background=background,
                **({"status": RunStatus.RUNNING, "started_at": timezone.now()} if claim else {}),
            )
            if background:
                from .tasks import run_agent

                enqueue_on_commit(run_agent, str(run.pk))
    except IntegrityError:
        # The same key raced us: the other request's run wins.
        return AgentRun.objects.get(agent=agent, user=user, idempotency_key=key), False
    return run, True


def _acquire_conversation(run: AgentRun) -> bool:
    """Take the conversation for `run`, waiting while another unfinished run holds it."""
    deadline = time.monotonic() + settings.AGENTS_CONVERSATION_WAIT_SECONDS
    while True:
        holder_finished = Q(active_run_id__isnull=True) | Q(active_run_id=run.pk)
        holder = (
            Conversation.objects.filter(pk=run.conversation_id)
            .values_list("active_run_id", flat=True)
            .first()
        )
        if (
            holder
            and not AgentRun.objects.filter(pk=holder).exclude(status__in=FINISHED_RUN_STATUSES).exists()
        ):
            holder_finished |= Q(active_run_id=holder)  # a crashed holder does not block forever
        if Conversation.objects.filter(holder_finished, pk=run.conversation_id).update(active_run_id=run.pk):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _release_conversation(run: AgentRun) -> None:
    Conversation.objects.filter(pk=run.conversation_id, active_run_id=run.pk).update(active_run_id=None)


def run_execute(
    *, run: AgentRun, emit: Emit | None = None, stream: bool = False, claimed: bool = False
) -> AgentRun:
    """Run a queued run to its end. Does nothing to a run that is no longer queued, unless
    `claimed`: the caller created it running with `run_start(claim=True)`."""
    if not claimed:
        started_at = timezone.now()
        if not AgentRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.RUNNING, started_at=started_at
        ):
            run.refresh_from_db()
            return run
        run.status, run.started_at = RunStatus.RUNNING, started_at
    # Only a conversation created for this run can be held by it before it acquired one, and
    # then it has no earlier messages.
    new_conversation = run.conversation.active_run_id == run.pk
    if emit:
        emit("run.created", {"run_id": str(run.pk), "conversation_id": str(run.conversation_id)})
    if not new_conversation and not _acquire_conversation(run):
        run.status, run.stop_reason = RunStatus.FAILED, StopReason.ERROR
        run.error = "Another run on this conversation did not finish in time."
        run.finished_at = timezone.now()
        run.save()
    else:
        try:
            run = RunLoop(run, emit=emit, stream=stream, new_conversation=new_conversation).execute()
        finally:
            _release_conversation(run)
    if emit:
        done = "run.failed" if run.status == RunStatus.FAILED else "run.completed"
        emit(done, {"run_id": str(run.pk), "status": run.status, "stop_reason": run.stop_reason})
    return run


@transaction.atomic
def run_cancel(*, run: AgentRun, actor=None) -> AgentRun:
    """A queued run is cancelled now; a running one stops at its next limit check. Audited
    (`cancel`) when it changed anything."""
    before = snapshot(run)
    if AgentRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, stop_reason=StopReason.CANCELLED, finished_at=timezone.now()
    ):
        run.refresh_from_db()
        audited("cancel", run, before=before, actor=actor)
        return run
    requested = False
    if not run.finished:
        requested = bool(
            AgentRun.objects.filter(pk=run.pk, cancel_requested=False).update(cancel_requested=True)
        )
    run.refresh_from_db()
    if requested:
        audited("cancel", run, before=before, actor=actor)
    return run
