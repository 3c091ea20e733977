"""Every API error in the product's one JSON shape: {"error": {"code", "message", "details"}}.

DRF's own errors (validation, authentication, permission, throttling, parsing) are converted
here, and so are the product's PhotoboothErrors raised by services.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import DatabaseError
from django.http import Http404, HttpRequest, HttpResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from photobooth.errors import DatabaseUnavailable, PhotoboothError, error_response

logger = logging.getLogger(__name__)

# DRF exception class -> (code, message) where DRF's own wording is not what we want.
_CODES: dict[type[exceptions.APIException], tuple[str, str]] = {
    exceptions.NotAuthenticated: ("not_authenticated", "Log in and send the access token."),
    exceptions.AuthenticationFailed: ("invalid_token", "The access token is invalid or expired."),
    exceptions.PermissionDenied: ("forbidden", "You do not have permission to do this."),
    exceptions.NotFound: ("not_found", "Not found."),
    exceptions.MethodNotAllowed: ("method_not_allowed", "This method is not allowed here."),
    exceptions.NotAcceptable: ("not_acceptable", "Only JSON answers are offered."),
    exceptions.UnsupportedMediaType: (
        "unsupported_media_type",
        "This content type is not accepted.",
    ),
    exceptions.Throttled: ("too_many_requests", "Too many requests, try again shortly."),
    exceptions.ParseError: ("malformed_request", "The request body could not be parsed."),
}


def _details(detail: Any) -> Any:
    """DRF's error detail (nested dicts/lists of ErrorDetail) as plain JSON values."""
    if isinstance(detail, dict):
        return {str(key): _details(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_details(value) for value in detail]
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """DRF EXCEPTION_HANDLER: the one JSON error shape for every API error."""
    if isinstance(exc, PhotoboothError):
        return error_response(exc)
    if isinstance(exc, DatabaseError):
        logger.exception("API request failed: database unavailable")
        return error_response(DatabaseUnavailable())
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a real bug: Django's 500 handler answers (also in JSON) and logs it
    headers: dict[str, str] = {}
    if isinstance(exc, exceptions.ValidationError):
        # Well-formed requests whose fields are wrong: 422 with per-field messages.
        code, message, status_code = "validation_failed", "Some fields are invalid.", 422
        details: Any = _details(exc.detail)
        if not isinstance(details, dict):
            details = {"non_field_errors": details}
    else:
        code, message = next(
            (known for kind, known in _CODES.items() if isinstance(exc, kind)),
            (str(exc.default_code), str(exc.detail)),
        )
        status_code = exc.status_code
        details = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            headers["Retry-After"] = str(int(exc.wait) + 1)
            details = {"retry_after_seconds": int(exc.wait) + 1}
        if isinstance(exc, exceptions.MethodNotAllowed):
            view = context.get("view")
            if view is not None:
                headers["Allow"] = ", ".join(view.allowed_methods)
    if status_code == status.HTTP_401_UNAUTHORIZED:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    response = Response(
        {"error": {"code": code, "message": message, "details": details}},
        status=status_code,
        headers=headers,
    )
    response["Cache-Control"] = "no-store"
    return response


# Pages people open in a browser get an HTML 404; everything else (API, ingest) gets JSON.
HTML_PREFIXES = ("/dashboard", "/r/", "/g/")


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 handler: the JSON shape for paths no view answers (HTML for pages)."""
    from django.shortcuts import render

    from photobooth.errors import NotFound

    if request.path.startswith("/r/"):
        return render(request, "adminui/guest_not_found.html", status=404)
    if request.path.startswith("/g/"):
        return render(request, "adminui/gallery_not_found.html", status=404)
    if request.path.startswith(HTML_PREFIXES):
        return render(request, "adminui/not_found.html", status=404)
    return error_response(NotFound("Nothing is served at this address.", code="not_found"))


def json_server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 handler: the JSON shape, no traceback (it is in the log)."""
    return error_response(PhotoboothError())
