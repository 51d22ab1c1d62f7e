from django.db import migrations

ROLES = ("admin", "developer", "user")


def create_role_groups(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    for name in ROLES:
        Group.objects.get_or_create(name=name)


def delete_role_groups(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    """Role groups. Their model permissions are applied after every migrate by
    agentmesh.accounts.roles.sync_role_groups, once each domain app's permissions exist."""

    dependencies = [("accounts", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_role_groups, delete_role_groups)]
