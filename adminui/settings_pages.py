"""The global settings page: ingest password, booth timeout, provider keys, workers and media.

Reading needs `settings:read`; each change form needs `settings:write` (purging media needs
`media:write`). Every change goes through ingest.settings_service, the same code as
PUT /api/settings: its checks, its messages, its audit log. A form with an error is shown again
(422) with the message next to its field and nothing changed; a saved change redirects back to
the page with a notice. Passwords and keys are never shown, not even the value just typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.utils import timezone
from django.views.decorators.http import require_safe

from adminui.access import requires_scope
from ingest import settings_service
from ingest.settings_service import SettingsChange
from jobqueue.models import Job, WorkerHeartbeat
from jobqueue.selectors import any_live_worker
from photobooth.errors import Unprocessable
from providers.registry import all_providers
from providers.secrets import key_status

FieldErrors = dict[str, list[str]]


# --- what the page shows -------------------------------------------------------------------------
@dataclass(frozen=True)
class WorkerRow:
    worker_id: str
    hostname: str
    pid: int
    seen_seconds_ago: float
    jobs_held: int
    concurrency: int
    state: str  # "alive", "stopping" or "gone"


@dataclass(frozen=True)
class QueueDepth:
    pending: int
    processing: int

    @property
    def total(self) -> int:
        return self.pending + self.processing


@dataclass(frozen=True)
class ProviderKeyRow:
    provider_id: str
    label: str
    is_configured: bool
    source: str  # "settings", "environment" or ""
    updated_at: datetime | None
    updated_by: str
    errors: list[str] = field(default_factory=list)


def worker_rows(*, now: datetime, stale_after: timedelta) -> list[WorkerRow]:
    """Every worker process that sent a heartbeat lately (the cleanup forgets old ones)."""
    rows = []
    for worker in WorkerHeartbeat.objects.order_by("worker_id"):
        age = now - worker.last_seen_at
        state = "stopping" if worker.is_stopping else "alive"
        if age > stale_after:
            state = "gone"
        rows.append(
            WorkerRow(
                worker_id=worker.worker_id,
                hostname=worker.hostname,
                pid=worker.pid,
                seen_seconds_ago=max(0.0, age.total_seconds()),
                jobs_held=len(worker.current_job_ids or []),
                concurrency=worker.concurrency,
                state=state,
            )
        )
    return rows


def queue_depth() -> QueueDepth:
    """Unfinished jobs, waiting and being processed, in one query."""
    counts = Job.objects.filter(is_finalized=False).aggregate(
        pending=Count("id", filter=Q(status="pending")),
        processing=Count("id", filter=Q(status="processing")),
    )
    return QueueDepth(pending=counts["pending"], processing=counts["processing"])


def _render_page(
    request: HttpRequest,
    *,
    errors: Mapping[str, Any] | None = None,
    timeout_value: str | None = None,
    status: int = 200,
) -> HttpResponse:
    errors = errors or {}
    view = settings_service.settings_view()
    providers = all_providers()
    key_errors: Mapping[str, list[str]] = errors.get("provider_keys", {})
    keys = [
        ProviderKeyRow(
            provider_id=provider_id,
            label=providers[provider_id].label if provider_id in providers else provider_id,
            is_configured=status_row["is_configured"],
            source=status_row["source"],
            updated_at=status_row["updated_at"],
            updated_by=status_row["updated_by"],
            errors=list(key_errors.get(provider_id, [])),
        )
        for provider_id, status_row in sorted(view["provider_keys"].items())
    ]
    stale_after = timedelta(seconds=django_settings.WORKER_STALE_SECONDS)
    ingest = view["ingest"]
    context = {
        "nav": "settings",
        "view": view,
        "keys": keys,
        "password_min_length": settings_service.INGEST_PASSWORD_MIN_LENGTH,
        "password_errors": errors.get("password", []),
        "confirmation_errors": errors.get("confirmation", []),
        "timeout_errors": errors.get("timeout", []),
        "timeout_value": (
            timeout_value if timeout_value is not None else ingest["sync_response_timeout_sec"]
        ),
        "retention_hours": round(ingest["result_retention_sec"] / 3600, 1),
        "workers": worker_rows(now=timezone.now(), stale_after=stale_after),
        "worker_alive": any_live_worker(stale_after=stale_after),
        "worker_stale_seconds": stale_after.total_seconds(),
        "queue": queue_depth(),
    }
    response = render(request, "adminui/settings.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


@requires_scope("settings:read")
@require_safe
def settings_page(request: HttpRequest) -> HttpResponse:
    return _render_page(request)


# --- changing ------------------------------------------------------------------------------------
def _actor(request: HttpRequest) -> str:
    return str(request.user.get_username())


def _nested_messages(details: Mapping[str, Any], *keys: str) -> list[str]:
    """The messages at details[k1][k2]…: a list of strings, or every message below a mapping."""
    node: Any = details
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return []
        node = node[key]
    return _flatten(node)


def _flatten(node: Any) -> list[str]:
    if isinstance(node, Mapping):
        return [message for value in node.values() for message in _flatten(value)]
    if isinstance(node, list | tuple):
        return [str(message) for message in node]
    return [str(node)]


def _not_saved(request: HttpRequest, errors: Mapping[str, Any], **page: Any) -> HttpResponse:
    messages.error(request, "Not saved: please correct the field marked below.")
    return _render_page(request, errors=errors, status=422, **page)


def _back_to_page(request: HttpRequest) -> HttpResponse:
    """A change URL opened with GET (e.g. after logging in again) shows the page."""
    return redirect("dashboard-settings")


@requires_scope("settings:write")
def change_ingest_password(request: HttpRequest) -> HttpResponse:
    """Rotate the ingest (DSLR) password: typed twice, checked by the service, audited."""
    if request.method != "POST":
        return _back_to_page(request)
    password = request.POST.get("password", "")
    confirmation = request.POST.get("password_confirmation", "")
    change = SettingsChange(dslr_password=password)
    errors: dict[str, Any] = {
        "password": _nested_messages(settings_service.change_errors(change), "dslr_password")
    }
    if password != confirmation:
        errors["confirmation"] = ["The two passwords are not the same."]
    if any(errors.values()):
        return _not_saved(request, errors)
    try:
        settings_service.apply_settings_change(change, actor=_actor(request), request=request)
    except Unprocessable as invalid:
        return _not_saved(request, {"password": _nested_messages(invalid.details)})
    messages.success(
        request, "Ingest password changed. Booths must send the new one from their next photo on."
    )
    return redirect("dashboard-settings")


@requires_scope("settings:write")
def change_timeout(request: HttpRequest) -> HttpResponse:
    """Set T_sync_response, how long a booth waits for its photo (the service checks 45–60 s)."""
    if request.method != "POST":
        return _back_to_page(request)
    raw = request.POST.get("sync_response_timeout_sec", "").strip()
    try:
        seconds = int(raw)
    except ValueError:
        return _not_saved(
            request, {"timeout": ["Enter a whole number of seconds."]}, timeout_value=raw
        )
    try:
        applied = settings_service.apply_settings_change(
            SettingsChange(sync_response_timeout_sec=seconds),
            actor=_actor(request),
            request=request,
        )
    except Unprocessable as invalid:
        return _not_saved(
            request, {"timeout": _nested_messages(invalid.details)}, timeout_value=raw
        )
    if applied.ingest_fields:
        messages.success(
            request, f"Booth timeout set to {seconds} s. It applies to photos received from now."
        )
    else:
        messages.info(request, f"The booth timeout is already {seconds} s: nothing changed.")
    return redirect("dashboard-settings")


def _known_key_provider(provider_id: str) -> bool:
    return provider_id in settings_service.key_providers()


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "adminui/not_found.html", status=404)


@requires_scope("settings:write")
def set_provider_key(request: HttpRequest, provider_id: str) -> HttpResponse:
    """Store a provider's API key (write-only: it is never shown again)."""
    if not _known_key_provider(provider_id):
        return _not_found(request)
    if request.method != "POST":
        return _back_to_page(request)
    api_key = request.POST.get("api_key", "")
    if not api_key.strip():
        # An empty value would remove the key: that has its own, explicit button.
        return _not_saved(
            request,
            {
                "provider_keys": {
                    provider_id: [
                        "Enter the new key (to remove the stored key, use “Remove stored key”)."
                    ]
                }
            },
        )
    try:
        settings_service.apply_settings_change(
            SettingsChange(provider_keys={provider_id: api_key}),
            actor=_actor(request),
            request=request,
        )
    except Unprocessable as invalid:
        problems = _nested_messages(invalid.details, "provider_keys", provider_id)
        return _not_saved(request, {"provider_keys": {provider_id: problems}})
    label = _provider_label(provider_id)
    messages.success(request, f"API key for {label} saved. It is used from the next call on.")
    return redirect("dashboard-settings")


@requires_scope("settings:write")
def remove_provider_key(request: HttpRequest, provider_id: str) -> HttpResponse:
    """Remove the key stored in the settings; a key from the environment, if any, applies again."""
    if not _known_key_provider(provider_id):
        return _not_found(request)
    if request.method != "POST":
        return _back_to_page(request)
    label = _provider_label(provider_id)
    if key_status(provider_id).source != "settings":
        messages.info(
            request, f"No API key for {label} is stored in the settings: nothing changed."
        )
        return redirect("dashboard-settings")
    settings_service.apply_settings_change(
        SettingsChange(provider_keys={provider_id: ""}), actor=_actor(request), request=request
    )
    fallback = (
        " The key from the server's environment applies again."
        if key_status(provider_id).source == "environment"
        else ""
    )
    messages.success(request, f"Stored API key for {label} removed.{fallback}")
    return redirect("dashboard-settings")


def _provider_label(provider_id: str) -> str:
    provider = all_providers().get(provider_id)
    return provider.label if provider else provider_id


@requires_scope("media:write")
def purge_media(request: HttpRequest) -> HttpResponse:
    """Schedule the removal of expired media and results (runs in the background)."""
    if request.method != "POST":
        return _back_to_page(request)
    settings_service.schedule_media_cache_purge("full", actor=_actor(request))
    messages.success(
        request,
        "Purge of expired media scheduled. It runs in the background: reload the page in a "
        "moment to see the new figures.",
    )
    return redirect("dashboard-settings")


urlpatterns = [
    path("dashboard/settings", settings_page, name="dashboard-settings"),
    path(
        "dashboard/settings/password",
        change_ingest_password,
        name="dashboard-settings-password",
    ),
    path("dashboard/settings/timeout", change_timeout, name="dashboard-settings-timeout"),
    path(
        "dashboard/settings/keys/<str:provider_id>",
        set_provider_key,
        name="dashboard-settings-key",
    ),
    path(
        "dashboard/settings/keys/<str:provider_id>/remove",
        remove_provider_key,
        name="dashboard-settings-key-remove",
    ),
    path("dashboard/settings/purge", purge_media, name="dashboard-settings-purge"),
]
