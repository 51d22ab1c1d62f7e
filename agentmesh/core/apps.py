from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "agentmesh.core"
    label = "core"
    verbose_name = "Core"
