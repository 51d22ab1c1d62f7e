from django.apps import AppConfig


class IntegrationConfig(AppConfig):
    name = "integration"
    verbose_name = "Integration"

    def ready(self):
        from .selectors_flows import flows_status
        from .status import register_status_section

        register_status_section("flows", flows_status)
