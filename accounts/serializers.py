from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.exceptions import AuthenticationFailed
from rest_framework_simplejwt import serializers as jwt_serializers
from rest_framework_simplejwt.exceptions import TokenError

User = get_user_model()


class UserSerializer(serializers.ModelSerializer):
    current_password = serializers.CharField(
        max_length=128,
        write_only=True,
        required=False,
        # Missing or empty: the service says it is needed (`password_required`), in one message.
        allow_blank=True,
        style={"input_type": "password"},
        help_text="Needed with a new `email`.",
    )

    class Meta:
        model = User
        fields = [
            "id",
            "username",
            "email",
            "current_password",
            "first_name",
            "last_name",
            "is_staff",
            "email_notifications",
            "date_joined",
        ]
        read_only_fields = ["id", "username", "is_staff", "date_joined"]

    def validate_email(self, value: str) -> str:
        taken = User.objects.filter(email__iexact=value).exclude(pk=getattr(self.instance, "pk", None))
        if taken.exists():
            raise serializers.ValidationError("An account with this e-mail address already exists.", code="email_taken")
        return value


def check_new_password(attrs: dict, field: str, *, user=None) -> None:
    """`field` and its `<field>_confirm` match and pass the password validators (for `user`, if known);
    drops the confirmation. Raises `password_mismatch` or `weak_password`, on their fields."""
    if attrs[field] != attrs.pop(f"{field}_confirm"):
        raise serializers.ValidationError(
            {f"{field}_confirm": ["The two passwords do not match."]}, code="password_mismatch"
        )
    try:
        validate_password(attrs[field], user=user)
    except DjangoValidationError as exc:
        raise serializers.ValidationError({field: list(exc.messages)}, code="weak_password") from exc


class RegisterSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]+\Z", max_length=150)
    email = serializers.EmailField(max_length=254)
    password = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})
    password_confirm = serializers.CharField(write_only=True, max_length=128, style={"input_type": "password"})
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True, default="")

    def validate(self, attrs: dict) -> dict:
        candidate = User(
            username=attrs["username"],
            email=attrs["email"],
            first_name=attrs["first_name"],
            last_name=attrs["last_name"],
        )
        check_new_password(attrs, "password", user=candidate)
        return attrs


class PasswordResetRequestSerializer(serializers.Serializer):
    email = serializers.EmailField()


class PasswordResetConfirmSerializer(serializers.Serializer):
    uid = serializers.CharField(max_length=64)
    token = serializers.CharField(max_length=128)
    new_password = serializers.CharField(max_length=128, write_only=True)
    new_password_confirm = serializers.CharField(max_length=128, write_only=True)

    def validate(self, attrs: dict) -> dict:
        check_new_password(attrs, "new_password")
        return attrs


class PasswordChangeSerializer(serializers.Serializer):
    current_password = serializers.CharField(max_length=128, write_only=True)
    new_password = serializers.CharField(max_length=128, write_only=True)
    new_password_confirm = serializers.CharField(max_length=128, write_only=True)

    def validate(self, attrs: dict) -> dict:
        check_new_password(attrs, "new_password", user=self.context["user"])
        return attrs


class PasswordChangedSerializer(serializers.Serializer):
    """The caller's new session: in the body for bearer clients, in the cookies (and not here) for the pages."""

    detail = serializers.CharField()
    access = serializers.CharField(required=False)
    refresh = serializers.CharField(required=False)


class LogoutSerializer(serializers.Serializer):
    refresh = serializers.CharField()


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class WsTicketSerializer(serializers.Serializer):
    ticket = serializers.CharField()
    expires_in = serializers.IntegerField()


class TokenRefreshSerializer(jwt_serializers.TokenRefreshSerializer):
    """simplejwt's, except that a token whose user was deleted is refused (401) instead of a 500."""

    def validate(self, attrs: dict) -> dict:
        try:
            return super().validate(attrs)
        except User.DoesNotExist as exc:
            raise AuthenticationFailed(self.error_messages["no_active_account"], "no_active_account") from exc


class TokenVerifySerializer(jwt_serializers.TokenVerifySerializer):
    """simplejwt's, except that a blacklisted token is `token_not_valid` (401) like an expired one, not a 400."""

    def validate(self, attrs: dict) -> dict:
        try:
            return super().validate(attrs)
        except serializers.ValidationError as exc:
            raise TokenError("Token is blacklisted") from exc
