from agentmesh.core.routers import ApiRouter

app_name = "masterdata-api"

router = ApiRouter()

urlpatterns = [*router.urls]
