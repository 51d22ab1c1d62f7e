from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from ..selectors import config as config_selectors
from ..services import flags as flag_services
from .config import IsPlatformAdmin
from .flags_serializers import FeatureFlagSerializer, FeatureFlagUpdateSerializer


class FeatureFlagListView(APIView):
    """Feature flags (admin only)."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]

    @extend_schema(operation_id="system_flags_list", responses={200: FeatureFlagSerializer(many=True)})
    def get(self, request):
        """Every feature flag with its rules: on/off for everyone, or a sticky percentage
        rollout and targeted users, groups and roles. A flag never changed is on. Admin only."""
        return Response(FeatureFlagSerializer(config_selectors.flags_list(), many=True).data)


class FeatureFlagDetailView(APIView):
    """One feature flag (admin only)."""

    permission_classes = [IsAuthenticated, IsPlatformAdmin]
    may_not_exist = True

    def _flag(self, name: str) -> dict:
        try:
            return config_selectors.flag_get(name)
        except flag_services.FlagNotFound as exc:
            raise NotFound(f"No feature flag {name!r}.") from exc

    @extend_schema(operation_id="system_flags_retrieve", responses={200: FeatureFlagSerializer})
    def get(self, request, name: str):
        """One feature flag and its rules (404 for a name that is no feature). Admin only."""
        return Response(FeatureFlagSerializer(self._flag(name)).data)

    @extend_schema(
        operation_id="system_flags_update",
        request=FeatureFlagUpdateSerializer,
        responses={200: FeatureFlagSerializer},
    )
    def put(self, request, name: str):
        """Change a feature flag: the fields given change, the others stay.

        `everyone`: true on, false off for everyone (the feature answers 503), null decided per
        user by `percent` (sticky per user), `users` (ids), `groups` (names), `roles`,
        `superusers`, `staff`, `authenticated` (a user no rule admits gets 403). A first change
        that sets rules without `everyone` makes the flag decided by them. Audited; in
        force everywhere within RUNTIME_CONFIG_CACHE_SECONDS. Admin only."""
        self._flag(name)
        data = FeatureFlagUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        return Response(FeatureFlagSerializer(flag_services.flag_set(name=name, **data.validated_data)).data)

    @extend_schema(operation_id="system_flags_reset", request=None, responses={200: FeatureFlagSerializer})
    def delete(self, request, name: str):
        """Reset a feature flag: its rules are deleted and the feature is on for everyone again.
        Audited. Admin only."""
        self._flag(name)
        return Response(FeatureFlagSerializer(flag_services.flag_reset(name=name)).data)
