from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "integration"
    verbose_name = "Integration"

    def ready(self) -> None:
        from tools.connections import register_connection_resolver

        from .services.connections import ConnectionResolver

        register_connection_resolver(ConnectionResolver())
