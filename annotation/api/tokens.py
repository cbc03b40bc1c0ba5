"""API tokens over the API: obtain one with a password, list, create and revoke your own."""

from django.contrib.auth import authenticate
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from annotation import selectors, services
from annotation.services.tokens import DEFAULT_TOKEN_DAYS, MAX_TOKEN_DAYS
from annotation.tokens import TokenScope
from config.errors import ValidationFailed

# What /api/auth/token/ issues when the client names nothing: clients written for DRF's
# token keep working (the scope never exceeds the user's role), but the token now expires.
OBTAINED_TOKEN_SCOPE = TokenScope.ADMIN
OBTAINED_TOKEN_DAYS = 30


class TokenSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=TokenScope.choices)
    prefix = serializers.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True)
    last_used_at = serializers.DateTimeField(read_only=True, allow_null=True)
    revoked_at = serializers.DateTimeField(read_only=True, allow_null=True)
    state = serializers.CharField(read_only=True)


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    scope = serializers.ChoiceField(choices=TokenScope.choices)
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=MAX_TOKEN_DAYS, default=DEFAULT_TOKEN_DAYS
    )


class IssuedTokenSerializer(TokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The secret: shown this once.")


class ObtainTokenSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(trim_whitespace=False)
    name = serializers.CharField(max_length=100, required=False)
    scope = serializers.ChoiceField(choices=TokenScope.choices, default=OBTAINED_TOKEN_SCOPE)
    expires_in_days = serializers.IntegerField(
        min_value=1, max_value=MAX_TOKEN_DAYS, default=OBTAINED_TOKEN_DAYS
    )


def _issued(issued) -> dict:
    return {**selectors.api_token_view(issued.token), "token": issued.secret}


class ObtainTokenView(APIView):
    """Username and password in, a new token out (returned once). Throttled like the login."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=ObtainTokenSerializer, responses=IssuedTokenSerializer)
    def post(self, request):
        data = ObtainTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        user = authenticate(
            request=request._request, username=values["username"], password=values["password"]
        )
        if user is None:
            raise ValidationFailed(
                "Unable to log in with provided credentials.", code="invalid_credentials"
            )
        issued = services.api_token_create(
            user=user,
            name=values.get("name") or "obtained with a password",
            scope=values["scope"],
            expires_in_days=values["expires_in_days"],
        )
        return Response(_issued(issued))


class TokenListView(APIView):
    @extend_schema(responses=TokenSerializer(many=True))
    def get(self, request):
        tokens = selectors.api_token_list_for_user(request.user)
        return Response([selectors.api_token_view(t) for t in tokens])

    @extend_schema(request=TokenCreateSerializer, responses={201: IssuedTokenSerializer})
    def post(self, request):
        data = TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = services.api_token_create(user=request.user, **data.validated_data)
        return Response(_issued(issued), status=status.HTTP_201_CREATED)


class TokenDetailView(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, token_id: int):
        token = selectors.api_token_list_for_user(request.user).filter(pk=token_id).first()
        if token is None:
            raise Http404("No such token.")
        services.api_token_revoke(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)
