from agentmesh.core.routers import ApiRouter

from .views import AgentViewSet, ConversationViewSet, RunViewSet

app_name = "agents-api"

router = ApiRouter()
router.register("agents/runs", RunViewSet, basename="run")
router.register("agents/conversations", ConversationViewSet, basename="conversation")
router.register("agents", AgentViewSet, basename="agent")

urlpatterns = router.urls
