from django.urls import path

from agentmesh.core.routers import ApiRouter

from .views import AgentTemplateView, TemplateViewSet, WorkflowTemplateView

app_name = "templates-api"

router = ApiRouter()
router.register("templates", TemplateViewSet, basename="template")

urlpatterns = [
    # Under the workflows and agents URL space, but templates_app's: they do not import it.
    path("workflows/<uuid:pk>/template", WorkflowTemplateView.as_view(), name="workflow-template"),
    path("agents/<uuid:pk>/template", AgentTemplateView.as_view(), name="agent-template"),
    *router.urls,
]
