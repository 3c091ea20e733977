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


def add_common_errors(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the errors every endpoint of a kind can answer.

    Any endpoint taking a body can answer 400 (unparseable) and 415 (content type not accepted);
    any endpoint needing a token can answer 401 and 403. Declaring them here keeps each view's
    schema about what is particular to it.
    """
    error_ref = {"$ref": "#/components/schemas/Error"}
    for path_item in result.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            wanted = []
            if "requestBody" in operation:
                wanted += [400, 415]
            security = operation.get("security")
            if security and any(scheme for scheme in security):
                wanted += [401, 403]
            for status in wanted:
                operation["responses"].setdefault(
                    str(status),
                    {
                        "content": {"application/json": {"schema": error_ref}},
                        "description": _DESCRIPTIONS[status],
                    },
                )
    return result
