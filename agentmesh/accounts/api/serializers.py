from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.password_validation import validate_password
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt.serializers import TokenRefreshSerializer

from agentmesh.core.serializers import StrictFieldsMixin, StrictModelSerializer, StrictSerializer

from ..lockout import LoginLockedOut

User = get_user_model()


class UserSerializer(StrictModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "first_name", "last_name", "role", "is_active", "date_joined"]
        read_only_fields = fields


class LoginSerializer(StrictSerializer):
    username = serializers.CharField(help_text="Username or email address.")
    password = serializers.CharField(write_only=True, style={"input_type": "password"})

    def validate(self, attrs):
        request = self.context["request"]  # django-axes counts failures per account and address
        user = authenticate(request, username=attrs["username"], password=attrs["password"])
        if user is None and getattr(request, "axes_locked_out", False):
            raise LoginLockedOut(request)
        if user is None:
            raise AuthenticationFailed("Invalid credentials or inactive account.", code="invalid_credentials")
        attrs["user"] = user
        return attrs


class TokenPairSerializer(StrictSerializer):
    access = serializers.CharField()
    refresh = serializers.CharField()
    user = UserSerializer()


class RegisterSerializer(StrictSerializer):
    username = serializers.RegexField(r"^[\w.@+-]{3,150}$", max_length=150)
    email = serializers.EmailField()
    password = serializers.CharField(write_only=True, min_length=1, max_length=128)
    first_name = serializers.CharField(required=False, allow_blank=True, max_length=150, default="")
    last_name = serializers.CharField(required=False, allow_blank=True, max_length=150, default="")

    def validate_username(self, value):
        if User.objects.filter(username__iexact=value).exists():
            raise serializers.ValidationError("A user with that username already exists.", code="unique")
        return value

    def validate_email(self, value):
        if User.objects.filter(email__iexact=value).exists():
            raise serializers.ValidationError("A user with that email already exists.", code="unique")
        return value.lower()

    def validate(self, attrs):
        candidate = User(username=attrs["username"], email=attrs["email"])
        try:
            validate_password(attrs["password"], candidate)
        except Exception as exc:  # django ValidationError -> field error
            raise serializers.ValidationError(
                {"password": list(getattr(exc, "messages", [str(exc)]))}
            ) from exc
        return attrs


class RefreshSerializer(StrictFieldsMixin, TokenRefreshSerializer):
    """Rotating refresh: the used token is blacklisted; inactive or deleted users are refused."""

    def validate(self, attrs):
        try:
            return super().validate(attrs)
        except User.DoesNotExist as exc:
            raise AuthenticationFailed(
                "No active account found for the given token.", "no_active_account"
            ) from exc


class TokenRefreshResponseSerializer(StrictSerializer):
    access = serializers.CharField()
    refresh = serializers.CharField()


class LogoutSerializer(StrictSerializer):
    refresh = serializers.CharField()
