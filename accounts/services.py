"""Admin accounts: permission scopes, the audit log and login throttling.

The API (JWT) and the dashboard (sessions) share these, so both see the same users, the same
permissions and the same brute-force limits. Failed logins are counted from the audit log itself,
in the database, so the limits hold across every web process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.models import Permission
from django.db import DatabaseError
from django.http import HttpRequest
from django.utils import timezone

from accounts.models import SCOPES, AuditEvent, codename

logger = logging.getLogger(__name__)


def scopes_of(user: Any) -> list[str]:
    """The permission scopes a user holds (all of them for superusers)."""
    if not user.is_authenticated or not user.is_active:
        return []
    return [scope for scope in SCOPES if user.has_perm(f"accounts.{codename(scope)}")]


def grant(user: Any, scopes: Iterable[str]) -> None:
    """Give a user these scopes (ValueError for an unknown one)."""
    wanted = list(scopes)
    unknown = sorted(set(wanted) - set(SCOPES))
    if unknown:
        raise ValueError(f"unknown permission(s): {', '.join(unknown)}")
    permissions = Permission.objects.filter(
        content_type__app_label="accounts", codename__in=[codename(s) for s in wanted]
    )
    user.user_permissions.add(*permissions)


def client_address(request: HttpRequest | None) -> str | None:
    """The client's address as the server saw it (behind a proxy: uvicorn --proxy-headers)."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit(
    kind: str,
    *,
    actor: str = "",
    request: HttpRequest | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record a security event (and log it). Never pass secrets in `details`."""
    address = client_address(request)
    AuditEvent.objects.create(
        created_at=timezone.now(),
        kind=kind,
        actor=actor[:150],
        client_address=address,
        details=dict(details or {}),
    )
    logger.info(
        "audit event", extra={"audit_kind": kind, "actor": actor, "client_address": address}
    )


@dataclass(frozen=True)
class Throttle:
    """Login attempts are refused for `retry_after` seconds."""

    retry_after: int
    reason: str


def login_throttle(username: str, address: str | None) -> Throttle | None:
    """Whether logins for this username or from this address are refused for now."""
    window = timedelta(seconds=settings.LOGIN_THROTTLE_WINDOW_SECONDS)
    since = timezone.now() - window
    failures = AuditEvent.objects.filter(kind=AuditEvent.Kind.LOGIN_FAILED, created_at__gte=since)
    checks = [
        (
            "username",
            failures.filter(actor=username[:150]),
            settings.LOGIN_MAX_FAILURES_PER_USERNAME,
        )
    ]
    if address:
        checks.append(
            (
                "address",
                failures.filter(client_address=address),
                settings.LOGIN_MAX_FAILURES_PER_ADDRESS,
            )
        )
    for reason, recent, limit in checks:
        times = list(recent.order_by("-created_at").values_list("created_at", flat=True)[:limit])
        if len(times) >= limit:
            # Open again once the oldest of the last `limit` failures leaves the window.
            reopen = times[-1] + window
            seconds = max(1, int((reopen - timezone.now()).total_seconds()) + 1)
            return Throttle(retry_after=seconds, reason=reason)
    return None


@dataclass(frozen=True)
class LoginOutcome:
    user: Any | None
    throttle: Throttle | None = None


def login(request: HttpRequest | None, username: str, password: str) -> LoginOutcome:
    """Check credentials with throttling and auditing. The same answer for an unknown user and
    a wrong password (Django's backend hashes a dummy password for unknown users, too)."""
    address = client_address(request)
    try:
        throttle = login_throttle(username, address)
    except DatabaseError:
        logger.exception("login throttle unavailable")
        raise
    if throttle is not None:
        audit(
            AuditEvent.Kind.LOGIN_THROTTLED,
            actor=username,
            request=request,
            details={"reason": throttle.reason},
        )
        return LoginOutcome(user=None, throttle=throttle)
    user = authenticate(request, username=username, password=password)
    if user is None or not user.is_active:
        audit(AuditEvent.Kind.LOGIN_FAILED, actor=username, request=request)
        return LoginOutcome(user=None)
    audit(AuditEvent.Kind.LOGIN_OK, actor=user.get_username(), request=request)
    return LoginOutcome(user=user)
