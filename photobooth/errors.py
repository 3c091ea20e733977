"""One error hierarchy for the whole product, mapped to one JSON shape.

Every error answer looks like {"error": {"code", "message", "details"}}.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse


class PhotoboothError(Exception):
    """An error a client should see, with its HTTP status and a snake_case code."""

    status = 500
    code = "internal_error"
    message = "Internal server error."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.message = message or self.message
        self.code = code or self.code
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(self.message)


class BadRequest(PhotoboothError):
    status, code, message = 400, "bad_request", "The request is malformed."


class Unauthorized(PhotoboothError):
    status, code, message = 401, "unauthorized", "Wrong or missing password."


class Forbidden(PhotoboothError):
    status, code, message = 403, "forbidden", "You do not have permission to do this."


class NotFound(PhotoboothError):
    status, code, message = 404, "not_found", "Not found."


class Gone(PhotoboothError):
    status, code, message = 410, "gone", "This link has expired."


class MethodNotAllowed(PhotoboothError):
    status, code, message = 405, "method_not_allowed", "This method is not allowed here."


class Conflict(PhotoboothError):
    status, code, message = 409, "conflict", "The resource changed or is still in use."


class PayloadTooLarge(PhotoboothError):
    status, code, message = 413, "payload_too_large", "The upload is too large."


class UnsupportedMediaType(PhotoboothError):
    status, code, message = 415, "unsupported_media_type", "This image type is not supported."


class Unprocessable(PhotoboothError):
    status, code, message = 422, "validation_failed", "Some fields are invalid."


class PreconditionRequired(PhotoboothError):
    status, code, message = 428, "precondition_required", "Send If-Match with the ETag you read."


class TooManyRequests(PhotoboothError):
    status, code, message = 429, "too_many_requests", "Too many requests, try again shortly."


class ProviderFailed(PhotoboothError):
    status, code, message = 502, "provider_error", "The AI provider could not process the photo."


class ServiceUnavailable(PhotoboothError):
    status, code, message = 503, "service_unavailable", "The service is unavailable, try again."


class DatabaseUnavailable(ServiceUnavailable):
    code, message = "database_unavailable", "The database is unavailable, try again shortly."

    def __init__(self, message: str | None = None, **kwargs: Any):
        from django.conf import settings

        kwargs.setdefault("headers", {"Retry-After": str(settings.INGEST_RETRY_AFTER_SECONDS)})
        super().__init__(message, **kwargs)


class DeadlineReached(PhotoboothError):
    status, code, message = 504, "timeout", "The photo was not processed in time."


def error_response(error: PhotoboothError) -> JsonResponse:
    """The JSON answer for an error; never cached."""
    response = JsonResponse(
        {"error": {"code": error.code, "message": error.message, "details": error.details}},
        status=error.status,
    )
    response["Cache-Control"] = "no-store"
    for name, value in error.headers.items():
        response[name] = value
    return response
