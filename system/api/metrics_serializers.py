from datetime import timedelta
from math import ceil

from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from agentmesh.core.serializers import StrictSerializer

from ..selectors.metrics import HISTORY_METRICS

MAX_STEP_SECONDS = 7 * 24 * 3600


class MemorySerializer(StrictSerializer):
    total_bytes = serializers.IntegerField()
    available_bytes = serializers.IntegerField()
    used_bytes = serializers.IntegerField()
    percent = serializers.FloatField()


class DiskSerializer(StrictSerializer):
    path = serializers.CharField()
    total_bytes = serializers.IntegerField()
    used_bytes = serializers.IntegerField()
    free_bytes = serializers.IntegerField()
    percent = serializers.FloatField()


class HostSerializer(StrictSerializer):
    cpu_percent = serializers.FloatField()
    cpu_count = serializers.IntegerField()
    memory = MemorySerializer()
    disk = DiskSerializer()
    load_1m = serializers.FloatField(help_text="Load average over 1 minute.")
    load_5m = serializers.FloatField()
    load_15m = serializers.FloatField()


class PoolProcessSerializer(StrictSerializer):
    pid = serializers.IntegerField()
    rss_bytes = serializers.IntegerField(allow_null=True)


class ProcessSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=["api", "worker"])
    name = serializers.CharField(help_text="host:pid of an API process, or the worker's node name.")
    pid = serializers.IntegerField()
    rss_bytes = serializers.IntegerField(allow_null=True)
    pool = PoolProcessSerializer(many=True, help_text="A worker's pool processes (prefork children).")


class DatabaseConnectionsSerializer(StrictSerializer):
    vendor = serializers.CharField()
    in_use = serializers.IntegerField(
        allow_null=True, help_text="Connections to our database; null on SQLite."
    )
    active = serializers.IntegerField(allow_null=True)
    max = serializers.IntegerField(allow_null=True, help_text="The server's max_connections.")


class QueueDepthSerializer(StrictSerializer):
    name = serializers.CharField()
    depth = serializers.IntegerField(allow_null=True, help_text="Null when the broker could not be asked.")


class RequestRatesSerializer(StrictSerializer):
    window_seconds = serializers.IntegerField()
    count = serializers.IntegerField()
    rate_per_second = serializers.FloatField()
    errors = serializers.IntegerField(help_text="Answers 5xx.")
    error_rate = serializers.FloatField()
    p95_ms = serializers.FloatField(allow_null=True)


class RunsInFlightSerializer(StrictSerializer):
    agent_runs = serializers.IntegerField()
    workflow_executions = serializers.IntegerField()
    total = serializers.IntegerField()


class SystemMetricsSerializer(StrictSerializer):
    taken_at = serializers.DateTimeField()
    duration_ms = serializers.FloatField()
    host = HostSerializer()
    processes = ProcessSerializer(many=True)
    database = DatabaseConnectionsSerializer()
    queues = QueueDepthSerializer(many=True)
    requests = RequestRatesSerializer()
    runs_in_flight = RunsInFlightSerializer()


class MetricHistoryQuerySerializer(StrictSerializer):
    metric = serializers.ChoiceField(choices=sorted(HISTORY_METRICS), help_text="The sampled metric.")
    since = serializers.DateTimeField(required=False, help_text="Start (default: one hour before `until`).")
    until = serializers.DateTimeField(required=False, help_text="End, exclusive (default: now).")
    step = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_STEP_SECONDS,
        help_text="Bucket width in seconds (default: SYSTEM_METRICS_INTERVAL, widened to fit the bucket limit).",
    )

    def validate(self, attrs):
        until = attrs.get("until") or timezone.now()
        try:
            since = attrs.get("since") or until - timedelta(hours=1)
        except OverflowError:
            raise serializers.ValidationError({"until": ["Too early."]}) from None
        if since >= until:
            raise serializers.ValidationError({"since": ["Must be before `until`."]})
        span = (until - since).total_seconds()
        limit = settings.SYSTEM_METRICS_HISTORY_MAX_BUCKETS
        step = attrs.get("step")
        if step is None:
            step = max(settings.SYSTEM_METRICS_INTERVAL, ceil(span / limit))
            if step > MAX_STEP_SECONDS:
                raise serializers.ValidationError({"since": ["The range is too long; narrow it."]})
        elif ceil(span / step) > limit:
            raise serializers.ValidationError(
                {
                    "step": [
                        f"Too many buckets ({ceil(span / step)} > {limit}): widen `step` or narrow the range."
                    ]
                }
            )
        return {"metric": attrs["metric"], "since": since, "until": until, "step": step}


class MetricBucketSerializer(StrictSerializer):
    start = serializers.DateTimeField()
    avg = serializers.FloatField()
    min = serializers.FloatField()
    max = serializers.FloatField()
    count = serializers.IntegerField(help_text="Samples in the bucket.")


class MetricHistorySerializer(StrictSerializer):
    metric = serializers.CharField()
    description = serializers.CharField()
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    step = serializers.IntegerField()
    interval = serializers.IntegerField(help_text="SYSTEM_METRICS_INTERVAL: seconds between samples.")
    buckets = MetricBucketSerializer(many=True, help_text="Only buckets holding samples.")
