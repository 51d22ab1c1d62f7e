"""Response shapes of /system/status, /info, /stats and /alerts (output only: these endpoints
take no body). In /status the fields beyond `status` are the admins' details: absent from the
summary everyone else gets."""

from rest_framework import serializers

from agentmesh.core.serializers import StrictSerializer

COMPONENT_STATES = ["up", "down", "unknown", "backlog"]
OVERALL_STATES = ["ok", "degraded", "down"]


def _opt(field_class, **kwargs):
    return field_class(required=False, **kwargs)


class ComponentSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=COMPONENT_STATES)
    latency_ms = _opt(serializers.FloatField)
    error = _opt(serializers.CharField)


class DatabaseComponentSerializer(ComponentSerializer):
    vendor = _opt(serializers.CharField)


class CacheComponentSerializer(ComponentSerializer):
    backend = _opt(serializers.CharField)


class BrokerComponentSerializer(ComponentSerializer):
    transport = _opt(serializers.CharField)


class WorkerSerializer(StrictSerializer):
    name = serializers.CharField()
    host = serializers.CharField()
    pid = serializers.IntegerField(allow_null=True)
    concurrency = serializers.IntegerField(allow_null=True)
    active_tasks = serializers.IntegerField(allow_null=True)
    queues = serializers.ListField(child=serializers.CharField())
    source = serializers.ChoiceField(choices=["ping", "heartbeat"])


class HeartbeatSerializer(StrictSerializer):
    hostname = serializers.CharField()
    seen_at = serializers.DateTimeField()


class WorkersComponentSerializer(ComponentSerializer):
    count = _opt(serializers.IntegerField)
    workers = _opt(serializers.ListField, child=WorkerSerializer())
    heartbeats = _opt(
        serializers.ListField,
        child=HeartbeatSerializer(),
        help_text="Worker heartbeat rows younger than SYSTEM_WORKER_HEARTBEAT_STALE_SECONDS.",
    )


class BeatComponentSerializer(ComponentSerializer):
    last_tick_at = _opt(serializers.DateTimeField, allow_null=True)
    age_seconds = _opt(serializers.FloatField, allow_null=True)
    last_run_at = _opt(serializers.DateTimeField, allow_null=True)
    lag_ms = _opt(serializers.FloatField, allow_null=True)
    ticks = _opt(serializers.IntegerField)


class QueueSerializer(StrictSerializer):
    name = serializers.CharField()
    depth = serializers.IntegerField()


class QueuesComponentSerializer(ComponentSerializer):
    queues = _opt(serializers.ListField, child=QueueSerializer())
    backlog_threshold = _opt(serializers.IntegerField)


class RunsComponentSerializer(ComponentSerializer):
    agent_runs = _opt(serializers.DictField, child=serializers.IntegerField())
    workflow_executions = _opt(serializers.DictField, child=serializers.IntegerField())


class ComponentsSerializer(StrictSerializer):
    database = DatabaseComponentSerializer()
    cache = CacheComponentSerializer()
    broker = BrokerComponentSerializer()
    workers = WorkersComponentSerializer()
    beat = BeatComponentSerializer()
    queues = QueuesComponentSerializer()
    runs = RunsComponentSerializer()


class ComponentStateSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=COMPONENT_STATES)


class ComponentsSummarySerializer(StrictSerializer):
    database = ComponentStateSerializer()
    cache = ComponentStateSerializer()
    broker = ComponentStateSerializer()
    workers = ComponentStateSerializer()
    beat = ComponentStateSerializer()
    queues = ComponentStateSerializer()
    runs = ComponentStateSerializer()


class SystemStatusSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=OVERALL_STATES)
    checked_at = serializers.DateTimeField()
    cached = serializers.BooleanField(help_text="Served from this process's status cache.")
    components = ComponentsSerializer()


class SystemStatusSummarySerializer(SystemStatusSerializer):
    """What non-admins get (the schema documents SystemStatusSerializer: this is its subset)."""

    components = ComponentsSummarySerializer()


# --- info ------------------------------------------------------------------------------------
class FeatureSerializer(StrictSerializer):
    name = serializers.CharField()
    enabled = serializers.BooleanField()
    source = serializers.CharField()
    description = serializers.CharField(allow_blank=True)


class DatabaseInfoSerializer(StrictSerializer):
    vendor = serializers.CharField()
    version = serializers.CharField()


class SystemInfoSerializer(StrictSerializer):
    version = serializers.CharField()
    commit = serializers.CharField(allow_null=True)
    python = serializers.CharField()
    django = serializers.CharField()
    celery = serializers.CharField()
    kombu = serializers.CharField()
    database = DatabaseInfoSerializer()
    broker = serializers.CharField(help_text="The broker's transport (redis, amqp, filesystem, …).")
    cache = serializers.CharField(help_text="The cache backend's class name.")
    run_mode = serializers.ChoiceField(choices=["embedded", "production"])
    settings_module = serializers.CharField(allow_blank=True)
    debug = serializers.BooleanField()
    time_zone = serializers.CharField()
    use_tz = serializers.BooleanField()
    features = FeatureSerializer(many=True)
    started_at = serializers.DateTimeField()
    uptime_seconds = serializers.FloatField()
    pid = serializers.IntegerField()
    platform = serializers.CharField()


# --- stats -----------------------------------------------------------------------------------
class CountsByStatusSerializer(StrictSerializer):
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())


class CountsByTypeSerializer(StrictSerializer):
    total = serializers.IntegerField()
    by_type = serializers.DictField(child=serializers.IntegerField())


class UserCountsSerializer(StrictSerializer):
    total = serializers.IntegerField()
    active = serializers.IntegerField()
    superusers = serializers.IntegerField()
    by_role = serializers.DictField(child=serializers.IntegerField())


class DaySerializer(StrictSerializer):
    day = serializers.DateField()
    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())


class RunCountsSerializer(CountsByStatusSerializer):
    last_7_days = DaySerializer(many=True)
    last_30_days = DaySerializer(many=True)


class UsageSerializer(StrictSerializer):
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    cost_usd = serializers.DecimalField(max_digits=20, decimal_places=8, coerce_to_string=True)


class UsageTotalsSerializer(StrictSerializer):
    agent_runs = UsageSerializer()
    workflow_executions = UsageSerializer()


class TableSizeSerializer(StrictSerializer):
    table = serializers.CharField()
    bytes = serializers.IntegerField(allow_null=True)
    rows = serializers.IntegerField(allow_null=True, help_text="PostgreSQL: the planner's estimate.")


class DatabaseStatsSerializer(StrictSerializer):
    vendor = serializers.CharField()
    method = serializers.ChoiceField(choices=["pg_total_relation_size", "dbstat", "row_count"])
    tables = TableSizeSerializer(many=True)


class SystemStatsSerializer(StrictSerializer):
    generated_at = serializers.DateTimeField()
    users = UserCountsSerializer()
    agents = CountsByStatusSerializer()
    tools = CountsByTypeSerializer()
    workflows = CountsByStatusSerializer()
    agent_runs = RunCountsSerializer()
    workflow_executions = RunCountsSerializer()
    usage = UsageTotalsSerializer()
    database = DatabaseStatsSerializer()


# --- alerts ----------------------------------------------------------------------------------
class SystemCheckSerializer(StrictSerializer):
    key = serializers.CharField()
    title = serializers.CharField()
    severity = serializers.CharField()
    state = serializers.ChoiceField(choices=["ok", "firing", "unknown"])
    value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    message = serializers.CharField(allow_blank=True)
    checked_at = serializers.DateTimeField(allow_null=True)
    alert_id = serializers.UUIDField(allow_null=True)


class OpenAlertSerializer(StrictSerializer):
    id = serializers.UUIDField()
    title = serializers.CharField()
    message = serializers.CharField(allow_blank=True)
    severity = serializers.CharField()
    state = serializers.ChoiceField(choices=["firing", "acknowledged"])
    source = serializers.ChoiceField(choices=["system", "rule", "manual"])
    rule_id = serializers.UUIDField(allow_null=True)
    rule_name = serializers.CharField(allow_null=True)
    dedup_key = serializers.CharField(allow_blank=True)
    value = serializers.FloatField(allow_null=True)
    fired_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)


class SystemAlertsSerializer(StrictSerializer):
    evaluated_at = serializers.DateTimeField(allow_null=True, help_text="The checks' last evaluation.")
    firing = serializers.IntegerField(help_text="Open alerts in state firing.")
    checks = SystemCheckSerializer(many=True)
    alerts = OpenAlertSerializer(many=True)
