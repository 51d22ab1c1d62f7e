from django.db import migrations
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    """Existing executions get the tool's name (their version is already recorded)."""
    ToolExecution = apps.get_model("tools", "ToolExecution")
    Tool = apps.get_model("tools", "Tool")
    ToolExecution.objects.filter(tool_name="", tool__isnull=False).update(
        tool_name=Subquery(Tool.objects.filter(pk=OuterRef("tool_id")).values("name")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [("tools", "0002_execution_history_survives_tool")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
