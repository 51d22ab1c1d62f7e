from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "agentmesh.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import m2m_changed, post_migrate

        from .roles import on_groups_changed, sync_role_groups, sync_role_memberships

        post_migrate.connect(sync_role_groups, dispatch_uid="accounts.sync_role_groups")
        post_migrate.connect(
            sync_role_memberships, sender=self, dispatch_uid="accounts.sync_role_memberships"
        )
        m2m_changed.connect(
            on_groups_changed, sender=get_user_model().groups.through, dispatch_uid="accounts.role_group"
        )
