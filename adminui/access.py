"""Who may see which dashboard page: Django sessions, the same users and scopes as the API."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts.services import scopes_of

View = Callable[..., HttpResponse]


def requires_scope(scope: str) -> Callable[[View], View]:
    """Log in first (redirect), then the scope is needed (a friendly 403 page otherwise)."""

    def decorate(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if scope not in scopes_of(request.user):
                return render(
                    request,
                    "adminui/forbidden.html",
                    {"scope": scope},
                    status=403,
                )
            return view(request, *args, **kwargs)

        return wrapped

    return decorate


def user_scopes(request: HttpRequest) -> dict[str, Any]:
    """Template context processor: `scopes` of the logged-in user (for showing menu items)."""
    user = getattr(request, "user", None)  # DRF-rendered pages may carry no user
    return {"scopes": set(scopes_of(user)) if user is not None else set()}
