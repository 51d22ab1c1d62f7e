from django.urls import path

from agentmesh.core.routers import ApiRouter

from .views import (
    ConstraintViewSet,
    MasterDataStatsView,
    ModelConfigViewSet,
    PromptViewSet,
    SecretViewSet,
    SkillViewSet,
)

app_name = "masterdata-api"

router = ApiRouter()
router.register("skills", SkillViewSet, basename="skill")
router.register("constraints", ConstraintViewSet, basename="constraint")
router.register("prompts", PromptViewSet, basename="prompt")
router.register("models", ModelConfigViewSet, basename="model")
router.register("secrets", SecretViewSet, basename="secret")

urlpatterns = [
    path("stats", MasterDataStatsView.as_view(), name="stats"),
    *router.urls,
]
