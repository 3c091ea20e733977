"""POST /api/login: username + password -> a short-lived JWT carrying the user's permissions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.tokens import AccessToken

from accounts.services import login, scopes_of
from api.schema import ERROR_RESPONSES
from photobooth.errors import TooManyRequests, Unauthorized


class LoginRequest(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)


class LoginAnswer(serializers.Serializer[Any]):
    access_token = serializers.CharField()
    token_type = serializers.ChoiceField(choices=["bearer"])
    expires_in_sec = serializers.IntegerField()
    permissions = serializers.ListField(child=serializers.CharField())


def access_token_lifetime() -> timedelta:
    lifetime = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    assert isinstance(lifetime, timedelta)
    return lifetime


def issue_token(user: Any) -> dict[str, Any]:
    """An access token for `user` with its current permission scopes."""
    token = AccessToken.for_user(user)
    scopes = scopes_of(user)
    token["permissions"] = scopes
    token["username"] = user.get_username()
    lifetime = access_token_lifetime()
    return {
        "access_token": str(token),
        "token_type": "bearer",
        "expires_in_sec": int(lifetime.total_seconds()),
        "permissions": scopes,
    }


class LoginView(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="login",
        request=LoginRequest,
        responses={
            200: LoginAnswer,
            401: ERROR_RESPONSES[401],
            422: ERROR_RESPONSES[422],
            429: ERROR_RESPONSES[429],
        },
        auth=[],
        tags=["auth"],
        description="Exchange a username and password for a bearer token. The same 401 answers "
        "an unknown user and a wrong password; repeated failures for one username or from one "
        "address are refused with 429 and Retry-After.",
    )
    def post(self, request: Request) -> Response:
        body = LoginRequest(data=request.data)
        body.is_valid(raise_exception=True)
        outcome = login(
            request._request, body.validated_data["username"], body.validated_data["password"]
        )
        if outcome.throttle is not None:
            raise TooManyRequests(
                "Too many failed logins; try again later.",
                code="login_throttled",
                details={"retry_after_seconds": outcome.throttle.retry_after},
                headers={"Retry-After": str(outcome.throttle.retry_after)},
            )
        if outcome.user is None:
            raise Unauthorized(
                "Wrong username or password.",
                code="invalid_credentials",
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        response = Response(issue_token(outcome.user))
        response["Cache-Control"] = "no-store"
        return response
