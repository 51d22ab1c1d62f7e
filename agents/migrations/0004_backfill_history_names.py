from django.db import migrations
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    """Existing runs get the agent's name and version number they ran with."""
    AgentRun = apps.get_model("agents", "AgentRun")
    Agent = apps.get_model("agents", "Agent")
    AgentVersion = apps.get_model("agents", "AgentVersion")
    AgentRun.objects.filter(agent_name="", agent__isnull=False).update(
        agent_name=Subquery(Agent.objects.filter(pk=OuterRef("agent_id")).values("name")[:1])
    )
    AgentRun.objects.filter(agent_version_number__isnull=True, version__isnull=False).update(
        agent_version_number=Subquery(
            AgentVersion.objects.filter(pk=OuterRef("version_id")).values("version")[:1]
        )
    )


class Migration(migrations.Migration):
    dependencies = [("agents", "0003_run_history_survives_agent")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
