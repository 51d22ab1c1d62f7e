from agentmesh.core.routers import ApiRouter

from .views import TemplateViewSet

app_name = "templates-api"

router = ApiRouter()
router.register("templates", TemplateViewSet, basename="template")

urlpatterns = router.urls
