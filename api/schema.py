"""OpenAPI pieces shared by every endpoint: the error shape and the bearer security scheme."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_BODY = inline_serializer(
    name="Error",
    fields={
        "error": inline_serializer(
            name="ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
            },
        )
    },
)

_DESCRIPTIONS = {
    400: "Malformed request",
    401: "Missing, invalid or expired token (or bad credentials on login)",
    403: "The token lacks the permission this endpoint needs",
    404: "Not found",
    409: "Conflict: stale version or still in use",
    410: "Expired",
    413: "Upload too large",
    415: "Unsupported media type",
    422: "Validation failed: details maps each field to its messages",
    428: "If-Match (or updated_at) required",
    429: "Too many requests (Retry-After says when to try again)",
}

ERROR_RESPONSES: dict[int, OpenApiResponse] = {
    status: OpenApiResponse(response=ERROR_BODY, description=text)
    for status, text in _DESCRIPTIONS.items()
}


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses=...)`; 401/403 are added to every
    authenticated endpoint by default (see AUTHENTICATED_ERRORS)."""
    return {status: ERROR_RESPONSES[status] for status in statuses}


AUTHENTICATED_ERRORS = errors(401, 403)


class BearerJWTScheme(OpenApiAuthenticationExtension):
    target_class = "rest_framework_simplejwt.authentication.JWTAuthentication"
    name = "bearerAuth"
    priority = 1

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}


def valid_query(serializer: Any) -> dict[str, Any]:
    """A query-parameter serializer's values, or 400 `invalid_parameter` naming each bad one.

    Query strings are part of the address: a wrong one is a bad request (400), unlike a
    well-formed body whose fields fail validation (422).
    """
    from photobooth.errors import BadRequest

    if not serializer.is_valid():
        raise BadRequest(
            "Some query parameters are invalid.",
            code="invalid_parameter",
            details={
                field: [str(message) for message in messages]
                for field, messages in serializer.errors.items()
            },
        )
    return dict(serializer.validated_data)
