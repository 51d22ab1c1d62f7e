from rest_framework import serializers

from agentmesh.core.serializers import StrictSerializer


class RuntimeSettingSerializer(StrictSerializer):
    key = serializers.CharField(help_text="The key (also the environment variable of its default).")
    value = serializers.JSONField(help_text="The value in force.")
    default = serializers.JSONField(help_text="The value without an override (from the environment).")
    overridden = serializers.BooleanField(help_text="Whether an operator set this key.")
    type = serializers.ChoiceField(choices=["bool", "int", "float", "str", "rate"])
    min = serializers.FloatField(allow_null=True)
    max = serializers.FloatField(allow_null=True)
    max_length = serializers.IntegerField(allow_null=True)
    section = serializers.CharField()
    description = serializers.CharField()


class DatabasePoolSerializer(StrictSerializer):
    min_size = serializers.IntegerField(allow_null=True)
    max_size = serializers.IntegerField(allow_null=True)


class EffectiveSettingsSerializer(StrictSerializer):
    run_mode = serializers.ChoiceField(choices=["embedded", "production"])
    debug = serializers.BooleanField()
    broker = serializers.CharField(help_text="The broker's kind (scheme), never its URL.")
    tasks_eager = serializers.BooleanField()
    database_vendor = serializers.CharField()
    database_pool = DatabasePoolSerializer(allow_null=True)
    database_conn_max_age = serializers.IntegerField(allow_null=True)
    cache_backend = serializers.CharField()
    time_zone = serializers.CharField()
    log_level = serializers.CharField()
    log_format = serializers.CharField()
    allowed_hosts = serializers.ListField(child=serializers.CharField())
    max_request_body_bytes = serializers.IntegerField()
    api_page_size = serializers.IntegerField()
    api_max_page_size = serializers.IntegerField()
    jwt_access_minutes = serializers.IntegerField()
    jwt_refresh_days = serializers.IntegerField()
    login_lockout_enabled = serializers.BooleanField()
    otlp_export = serializers.BooleanField()
    runtime_config_cache_seconds = serializers.FloatField()


class RuntimeConfigSerializer(StrictSerializer):
    settings = RuntimeSettingSerializer(many=True, help_text="The settings that change without a restart.")
    effective = EffectiveSettingsSerializer(help_text="Read-only settings in force (set by the environment).")


class RuntimeConfigUpdateSerializer(StrictSerializer):
    values = serializers.DictField(
        child=serializers.JSONField(allow_null=True),
        allow_empty=False,
        help_text="{key: new value}; null resets a key to its default. All or nothing.",
    )
