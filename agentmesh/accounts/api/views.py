from django.contrib.auth.signals import user_logged_in
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.views import TokenRefreshView

from agentmesh.core.features import require_feature, runtime_setting
from agentmesh.core.throttling import ClientAddressThrottle

from .. import services
from .serializers import (
    LoginSerializer,
    LogoutSerializer,
    RefreshSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    TokenRefreshResponseSerializer,
    UserSerializer,
)


def _token_response(user, status_code=status.HTTP_200_OK) -> Response:
    tokens = services.user_issue_tokens(user=user)
    return Response(TokenPairSerializer({**tokens, "user": user}).data, status=status_code)


class PublicAuthView(APIView):
    """Endpoints that take credentials in the body: no header authentication, and a 401
    (not 403) with a Bearer challenge when the credentials are refused."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [ClientAddressThrottle]

    def get_authenticate_header(self, request):
        return 'Bearer realm="api"'


class LoginView(PublicAuthView):
    @extend_schema(operation_id="auth_login", request=LoginSerializer, responses={200: TokenPairSerializer})
    def post(self, request):
        """Log in with username or email and password; returns access and refresh tokens."""
        serializer = LoginSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        # Django's own receiver updates last_login; observability records the login event.
        user_logged_in.send(sender=user.__class__, request=request, user=user)
        return _token_response(user)


class RegisterView(PublicAuthView):
    @extend_schema(
        operation_id="auth_register", request=RegisterSerializer, responses={201: TokenPairSerializer}
    )
    def post(self, request):
        """Create an account with the `user` role (when registration is open)."""
        require_feature("registration")  # feature flag: 503 while switched off
        if not runtime_setting("REGISTRATION_OPEN"):  # runtime setting (GET/PUT /system/config)
            raise NotFound("Registration is closed.")
        serializer = RegisterSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = services.user_register(**serializer.validated_data)
        return _token_response(user, status.HTTP_201_CREATED)


class RefreshView(TokenRefreshView):
    serializer_class = RefreshSerializer
    throttle_classes = [ClientAddressThrottle]

    @extend_schema(operation_id="auth_refresh", responses={200: TokenRefreshResponseSerializer})
    def post(self, request, *args, **kwargs):
        """Exchange a refresh token for a new access and refresh token; the old one is revoked."""
        return super().post(request, *args, **kwargs)


class LogoutView(PublicAuthView):
    throttle_classes = []

    @extend_schema(operation_id="auth_logout", request=LogoutSerializer, responses={204: None})
    def post(self, request):
        """Revoke a refresh token."""
        serializer = LogoutSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.token_blacklist(refresh=serializer.validated_data["refresh"])
        except TokenError as exc:
            raise InvalidToken(str(exc)) from exc
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_me", responses={200: UserSerializer})
    def get(self, request):
        """The authenticated user."""
        return Response(UserSerializer(request.user).data)
