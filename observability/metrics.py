"""Prometheus metrics, correct across processes.

Every process (API, workers, beat) adds counter increments to its in-process buffer
(`buffer.BUFFER`), which is flushed to `MetricSeries` rows (one upsert per series). The
exposition endpoint reads the summed rows, so any number of processes on any number of
machines report one consistent set of counters. Histograms are stored as their cumulative
`_bucket{le=…}`, `_sum` and `_count` series.

Labels are low-cardinality by construction: route templates (never raw paths), HTTP method,
status code, run kind/status, model name.
"""

import json
import re
from collections import defaultdict
from decimal import Decimal

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest

from . import buffer

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

# name -> (type, help, bucket-defining label names for histograms)
METRICS = {
    "agentmesh_http_requests_total": ("counter", "HTTP requests by method, route template and status."),
    "agentmesh_http_request_duration_seconds": ("histogram", "HTTP request latency by method and route."),
    "agentmesh_runs_total": ("counter", "Finished runs/spans by kind and status."),
    "agentmesh_run_duration_seconds": ("histogram", "Run/span duration by kind."),
    "agentmesh_llm_tokens_total": ("counter", "LLM tokens by model and direction (input/output)."),
    "agentmesh_llm_cost_usd_total": ("counter", "LLM cost in US dollars by model."),
    "agentmesh_events_total": ("counter", "Recorded observability events by level."),
}

_route_param = re.compile(r"\(\?P<(\w+)>[^)]*\)")
_converter = re.compile(r"<(?:\w+:)?(\w+)>")


def route_template(request) -> str:
    """`api/v1/test/widgets/{pk}` for /api/v1/test/widgets/<uuid>; never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is None or not getattr(match, "route", None):
        return "<unmatched>"
    route = match.route.replace("^", "").replace("$", "").replace("\\", "")
    route = _route_param.sub(r"{\1}", route)
    route = _converter.sub(r"{\1}", route)
    return "/" + route.lstrip("/")


def _labels(**labels) -> str:
    return json.dumps({k: str(v) for k, v in labels.items()}, sort_keys=True, separators=(",", ":"))


def inc(name: str, amount: float = 1.0, **labels) -> None:
    buffer.BUFFER.inc(name, _labels(**labels), amount)


def observe(name: str, seconds: float, **labels) -> None:
    """Record one histogram observation (cumulative buckets, sum, count)."""
    for bound in LATENCY_BUCKETS:
        if seconds <= bound:
            buffer.BUFFER.inc(f"{name}_bucket", _labels(le=repr(bound), **labels), 1.0)
    buffer.BUFFER.inc(f"{name}_bucket", _labels(le="+Inf", **labels), 1.0)
    buffer.BUFFER.inc(f"{name}_sum", _labels(**labels), seconds)
    buffer.BUFFER.inc(f"{name}_count", _labels(**labels), 1.0)


def record_http_request(*, method: str, route: str, status: int, seconds: float) -> None:
    inc("agentmesh_http_requests_total", method=method, route=route, status=status)
    observe("agentmesh_http_request_duration_seconds", seconds, method=method, route=route)


def record_run(
    *,
    kind: str,
    status: str,
    seconds: float | None,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cost: Decimal | float,
) -> None:
    inc("agentmesh_runs_total", kind=kind, status=status)
    if seconds is not None:
        observe("agentmesh_run_duration_seconds", seconds, kind=kind)
    if input_tokens:
        inc("agentmesh_llm_tokens_total", input_tokens, model=model or "unknown", direction="input")
    if output_tokens:
        inc("agentmesh_llm_tokens_total", output_tokens, model=model or "unknown", direction="output")
    if cost:
        inc("agentmesh_llm_cost_usd_total", float(cost), model=model or "unknown")


class DatabaseCollector:
    """Builds the metric families from the summed `MetricSeries` rows."""

    def collect(self):
        from .models import MetricSeries

        rows = list(MetricSeries.objects.values_list("name", "labels", "value"))
        counters: dict[str, list] = defaultdict(list)
        hist: dict[str, dict] = defaultdict(lambda: defaultdict(lambda: {"buckets": {}, "sum": 0.0}))
        for name, labels_json, value in rows:
            labels = json.loads(labels_json)
            for suffix in ("_bucket", "_sum", "_count"):
                base = name[: -len(suffix)]
                if name.endswith(suffix) and METRICS.get(base, ("",))[0] == "histogram":
                    le = labels.pop("le", None)
                    key = tuple(sorted(labels.items()))
                    if suffix == "_bucket":
                        hist[base][key]["buckets"][le] = value
                    elif suffix == "_sum":
                        hist[base][key]["sum"] = value
                    break
            else:
                if name in METRICS:
                    counters[name].append((labels, value))
        for name, (kind, help_text) in METRICS.items():
            if kind == "counter":
                family_name = name.removesuffix("_total")
                label_names = sorted({k for labels, _ in counters[name] for k in labels})
                family = CounterMetricFamily(family_name, help_text, labels=label_names)
                for labels, value in counters[name]:
                    family.add_metric([labels.get(k, "") for k in label_names], value)
                yield family
            else:
                label_names = sorted({k for key in hist[name] for k, _ in key})
                family = HistogramMetricFamily(name, help_text, labels=label_names)
                for key, data in hist[name].items():
                    labels = dict(key)

                    def order(le: str) -> float:
                        return float("inf") if le == "+Inf" else float(le)

                    buckets = [(le, data["buckets"][le]) for le in sorted(data["buckets"], key=order)]
                    if not buckets or buckets[-1][0] != "+Inf":
                        continue
                    family.add_metric([labels.get(k, "") for k in label_names], buckets, data["sum"])
                yield family


def exposition() -> bytes:
    """The Prometheus text format of every process's counters (flushes this process first)."""
    buffer.flush(force=True)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector())
    return generate_latest(registry)
