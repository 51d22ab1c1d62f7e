"""A trace crosses the process boundary into a real Celery worker on the real broker."""

import pytest

from observability import services
from observability.models import ObservabilityEvent, Span
from observability.tasks import trace_probe

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_span_tree_spans_a_real_celery_task(live_worker, developer):
    with services.span("http.request", kind="http", actor=developer) as root:
        live_worker.send(trace_probe, "remote")
    child = live_worker.wait_for(lambda: Span.objects.filter(name="probe.remote").first(), timeout=60)
    task_span = live_worker.wait_for(
        lambda: Span.objects.filter(name="observability.tasks.trace_probe", trace_id=root.trace_id).first()
    )
    assert child.trace_id == root.trace_id
    assert task_span.parent_span_id == root.span_id
    assert child.parent_span_id == task_span.span_id
    assert task_span.kind == "task" and task_span.status == "ok"
    assert task_span.user_id == developer.pk and child.user_id == developer.pk
    event = ObservabilityEvent.objects.get(type="observability.probe")
    assert (event.trace_id, event.span_id) == (root.trace_id, child.span_id)
