"""Permission scopes per endpoint, checked against the JWT's `permissions` claim."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rest_framework.permissions import BasePermission

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


def scopes_in_token(request: Request) -> set[str]:
    token = request.auth
    if token is None:
        return set()
    claim = token.get("permissions", []) if hasattr(token, "get") else []
    return {str(scope) for scope in claim} if isinstance(claim, list) else set()


class HasScope(BasePermission):
    """A view declares `required_scopes = {"GET": "slots:read", "PUT": "slots:write", ...}`.

    An authenticated request without the scope for its method gets 403; a method the view does
    not list needs no scope beyond being authenticated (e.g. OPTIONS/HEAD follow GET).
    """

    message = "You do not have permission to do this."

    def has_permission(self, request: Request, view: APIView) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        required: dict[str, str] = getattr(view, "required_scopes", {})
        method = "GET" if request.method in ("HEAD", "OPTIONS") else str(request.method)
        scope = required.get(method)
        return scope is None or scope in scopes_in_token(request)


def required_scope(view: Any, method: str) -> str | None:
    """The scope a view needs for a method (used by the OpenAPI schema extension)."""
    return getattr(view, "required_scopes", {}).get(method.upper())
