from agentmesh.core.routers import ApiRouter

app_name = "observability-api"

router = ApiRouter()

urlpatterns = [*router.urls]
