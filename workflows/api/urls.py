from agentmesh.core.routers import ApiRouter

from .views import WorkflowExecutionViewSet, WorkflowViewSet

app_name = "workflows-api"

router = ApiRouter()
router.register("workflows/executions", WorkflowExecutionViewSet, basename="execution")
router.register("workflows", WorkflowViewSet, basename="workflow")

urlpatterns = router.urls
