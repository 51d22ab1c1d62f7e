from django.apps import AppConfig


class SystemConfig(AppConfig):
    name = "system"
    verbose_name = "System"

    def ready(self) -> None:
        from django.conf import settings

        from .services import config, flags
        from .signals import runtime_config_reload

        # Plug the stored runtime settings and flags into agentmesh.core.features (importing
        # the service modules installs their readers), and drop the per-process copies on
        # POST /system/restart/config.
        runtime_config_reload.connect(config.runtime_config_cache_clear, dispatch_uid="system.config.reload")
        runtime_config_reload.connect(flags.flags_cache_clear, dispatch_uid="system.flags.reload")
        # The registry, as constance's admin form shows it (system.admin.config saves through
        # config_update, so admin changes are validated and audited like the API's).
        settings.CONSTANCE_CONFIG.update(config.constance_config())
