from django.apps import AppConfig


class SystemConfig(AppConfig):
    name = "system"
    verbose_name = "System"

    def ready(self) -> None:
        # Celery remote-control commands of the workers (restart of connections, caches, config;
        # process stats for GET /system/metrics).
        from . import worker_control  # noqa: F401
