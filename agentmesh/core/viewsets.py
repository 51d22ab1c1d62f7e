"""The one base viewset every domain API builds on."""

from django.db import transaction
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import get_object_or_404
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from .audit import audited
from .permissions import RoleObjectPermission, has_object_action, permitted_queryset
from .serializers import ShareRequestSerializer, SharesSerializer
from .services import object_delete
from .sharing import object_share, object_shares
from .signals import snapshot


class OwnedModelViewSet(viewsets.ModelViewSet):
    """CRUD over an owned model, scoped to what the requesting user may see.

    Subclasses set `queryset`, `serializer_class`, `filterset_class` (or `filterset_fields`),
    `search_fields`, `ordering_fields`, and optionally `object_actions` to map custom actions
    to object permissions ({"deploy": "change", "interact": "use"}). Writes go through
    `perform_create`/`perform_update`, which subclasses point at their services.

    A service-backed `perform_create` sets `serializer.instance = <service>(...)`. The
    services record the audit events (agentmesh.core.audit); the plain saves here record
    them through the same helper.

    Another user's object is a 404 (it is not in the queryset); an object the user may view
    but not change answers 403 on a write. ProtectedError becomes 409 in the exception handler.
    """

    permission_classes = [RoleObjectPermission]
    lookup_value_converter = "uuid"
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]
    ordering = ["-created_at"]
    object_actions: dict[str, str] = {}

    def get_queryset(self):
        queryset = super().get_queryset()
        if getattr(self, "_single_object", False):
            return queryset  # get_object checks the one object instead of filtering the table
        return permitted_queryset(self.request.user, queryset)

    def get_object(self):
        """The object by primary key, then its own view permission: cheaper than filtering
        with the permission subqueries. Not viewable (or missing) is a 404 either way."""
        self._single_object = True
        try:
            queryset = self.get_queryset()
        finally:
            self._single_object = False
        lookup_url_kwarg = self.lookup_url_kwarg or self.lookup_field
        obj = get_object_or_404(queryset, **{self.lookup_field: self.kwargs[lookup_url_kwarg]})
        if not has_object_action(self.request.user, obj, "view"):
            raise Http404
        self.check_object_permissions(self.request, obj)
        return obj

    def perform_create(self, serializer):
        with transaction.atomic():
            serializer.save(owner=self.request.user)
            audited("create", serializer.instance)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        self.perform_create(serializer)  # must leave the new object in serializer.instance
        return Response(serializer.data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        before = snapshot(serializer.instance)
        with transaction.atomic():
            serializer.save()
            audited("update", serializer.instance, before=before)

    def perform_destroy(self, instance):
        object_delete(instance=instance)

    @extend_schema(request=ShareRequestSerializer, responses={200: SharesSerializer})
    @action(detail=True, methods=["post"], url_path="share")
    def share(self, request, *args, **kwargs):
        """Grant or revoke view/use/change on this object to users or groups."""
        obj = self.get_object()
        data = ShareRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        shares = object_share(
            obj=obj,
            users=data.validated_data.get("users"),
            groups=data.validated_data.get("groups"),
            actions=data.validated_data["actions"],
            revoke=data.validated_data["revoke"],
        )
        return Response(SharesSerializer(shares).data, status=status.HTTP_200_OK)

    @extend_schema(responses={200: SharesSerializer})
    @share.mapping.get
    def shares(self, request, *args, **kwargs):
        """Who this object is shared with."""
        return Response(SharesSerializer(object_shares(obj=self.get_object())).data)


class ServiceBackedViewSet(OwnedModelViewSet):
    """Routes creates and updates through the app's services (which audit them)."""

    def create_object(self, validated_data: dict):
        raise NotImplementedError

    def update_object(self, instance, validated_data: dict):
        raise NotImplementedError

    def perform_create(self, serializer):
        serializer.instance = self.create_object(dict(serializer.validated_data))

    def perform_update(self, serializer):
        serializer.instance = self.update_object(serializer.instance, dict(serializer.validated_data))


class ChildRecordViewSet(mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Read-only records a user made with an owned resource: agent runs, workflow executions,
    tool executions, conversations (add `mixins.ListModelMixin` for a list).

    What a user sees comes from one selector, `visible_to(user, queryset)` (built on
    `agentmesh.core.selectors.child_records_visible_to`: the caller, the resource's owner and
    admins). Every action — retrieve, list, custom detail actions such as cancel or events —
    reads through `get_queryset`, so anything else is a 404.
    """

    permission_classes = [IsAuthenticated]
    lookup_value_converter = "uuid"
    ordering = ["-created_at"]

    def visible_to(self, user, queryset):
        raise NotImplementedError

    def get_queryset(self):
        return self.visible_to(self.request.user, super().get_queryset())
