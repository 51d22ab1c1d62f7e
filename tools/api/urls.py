from agentmesh.core.routers import ApiRouter

from .views import ToolExecutionViewSet, ToolViewSet

app_name = "tools-api"

router = ApiRouter()
router.register("tools/executions", ToolExecutionViewSet, basename="execution")
router.register("tools", ToolViewSet, basename="tool")

urlpatterns = router.urls
