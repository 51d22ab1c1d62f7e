from django.db import migrations
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    """Existing executions get the workflow's name and version number they ran with."""
    WorkflowExecution = apps.get_model("workflows", "WorkflowExecution")
    Workflow = apps.get_model("workflows", "Workflow")
    WorkflowVersion = apps.get_model("workflows", "WorkflowVersion")
    WorkflowExecution.objects.filter(workflow_name="", workflow__isnull=False).update(
        workflow_name=Subquery(Workflow.objects.filter(pk=OuterRef("workflow_id")).values("name")[:1])
    )
    WorkflowExecution.objects.filter(workflow_version_number__isnull=True, version__isnull=False).update(
        workflow_version_number=Subquery(
            WorkflowVersion.objects.filter(pk=OuterRef("version_id")).values("version")[:1]
        )
    )


class Migration(migrations.Migration):
    dependencies = [("workflows", "0003_execution_history_survives_workflow")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
