"""The global settings page: what is configured (never the secrets), changing it, purging media.

Used by the admin API (GET/PUT /api/settings, POST /api/media/cache/purge) and the dashboard.
What an operator notices:
- the ingest (DSLR) password and provider API keys are write-only: only whether they are set,
  who set them and when can be read back;
- a change is checked completely before anything is stored, then stored all at once: a request
  with one wrong field changes nothing;
- a new ingest password is in force for the very next upload (no restart);
- every change is written to the audit log, without the password or key.
"""

from __future__ import annotations

import logging
import threading
import unicodedata
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from typing import Any, Literal

from django.conf import settings as django_settings
from django.db import connections, transaction
from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from accounts.models import AuditEvent
from accounts.services import audit
from ingest.models import IngestSettings, TemplateMedia
from ingest.services import set_ingest_password
from jobqueue import cleanup, deadlines
from jobqueue.models import Job, MediaObject
from photobooth.errors import Unprocessable
from providers.base import Provider
from providers.registry import all_providers
from providers.secrets import key_status, set_api_key

logger = logging.getLogger(__name__)

INGEST_PASSWORD_MIN_LENGTH = 8
INGEST_PASSWORD_MAX_LENGTH = 128
API_KEY_MAX_LENGTH = 4096

PurgeScope = Literal["full", "media_objects"]
PURGE_SCOPES: tuple[PurgeScope, ...] = ("full", "media_objects")


# --- reading -------------------------------------------------------------------------------------
def key_providers() -> dict[str, Provider]:
    """The configured providers that need an API key, by id."""
    return {pid: p for pid, p in all_providers().items() if p.requires_api_key}


def media_cache_usage() -> dict[str, int]:
    """Bytes (and counts) of the files the server keeps, as recorded in the database.

    Results and payloads count while their file is still kept (its path not yet cleared);
    temporary media count until removed; templates are permanent.
    """
    has_result = ~Q(result_path="")
    jobs = Job.objects.aggregate(
        results_bytes=Coalesce(Sum("result_size", filter=has_result), 0),
        results_count=Count("id", filter=has_result),
        payloads_bytes=Coalesce(Sum("payload_size", filter=~Q(payload_path="")), 0),
    )
    media = MediaObject.objects.aggregate(
        media_bytes=Coalesce(Sum("size"), 0), media_count=Count("id")
    )
    templates = TemplateMedia.objects.aggregate(templates_bytes=Coalesce(Sum("size"), 0))
    return {
        "results_bytes": int(jobs["results_bytes"]),
        "results_count": int(jobs["results_count"]),
        "payloads_bytes": int(jobs["payloads_bytes"]),
        "media_bytes": int(media["media_bytes"]),
        "media_count": int(media["media_count"]),
        "templates_bytes": int(templates["templates_bytes"]),
    }


def settings_view() -> dict[str, Any]:
    """Everything the settings page shows. Never a password, key or hash."""
    row = IngestSettings.load()
    provider_keys: dict[str, dict[str, Any]] = {}
    for provider_id in key_providers():
        status = key_status(provider_id)
        provider_keys[provider_id] = {
            "is_configured": status.is_configured,
            "source": status.source,
            "updated_at": status.updated_at,
            "updated_by": status.updated_by,
        }
    return {
        "dslr_password": {
            "is_set": row.has_ingest_password,
            "updated_at": row.ingest_password_updated_at,
            "updated_by": row.ingest_password_updated_by,
        },
        "provider_keys": provider_keys,
        "ingest": {
            "sync_response_timeout_sec": row.sync_response_timeout_sec,
            "sync_response_min_sec": deadlines.SYNC_RESPONSE_MIN_SECONDS,
            "sync_response_max_sec": deadlines.SYNC_RESPONSE_MAX_SECONDS,
            "result_retention_sec": row.result_retention_sec,
            "max_upload_bytes": int(django_settings.INGEST_MAX_UPLOAD_BYTES),
        },
        "media_cache": media_cache_usage(),
    }


# --- changing ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SettingsChange:
    """What an admin asked to change; None (or a missing provider) leaves it as it is.

    An empty API key removes the stored key, so the environment's key (if any) applies again.
    """

    dslr_password: str | None = None
    sync_response_timeout_sec: int | None = None
    provider_keys: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return (
            self.dslr_password is None
            and self.sync_response_timeout_sec is None
            and not self.provider_keys
        )


def change_errors(change: SettingsChange) -> dict[str, Any]:
    """Every problem with a change, nested like the request: {"ingest": {"field": [msg]}}.

    Messages never repeat the submitted password or key.
    """
    errors: dict[str, Any] = {}
    password = change.dslr_password
    if password is not None:
        problem = _password_problem(password)
        if problem:
            errors["dslr_password"] = {"value": [problem]}
    if change.sync_response_timeout_sec is not None:
        try:
            deadlines.validate_sync_response_seconds(change.sync_response_timeout_sec)
        except ValueError as error:
            errors["ingest"] = {"sync_response_timeout_sec": [str(error).capitalize() + "."]}
    key_errors: dict[str, Any] = {}
    known = all_providers()
    for provider_id, api_key in change.provider_keys.items():
        if provider_id not in known:
            key_errors[provider_id] = ["Unknown provider."]
        elif not known[provider_id].requires_api_key:
            key_errors[provider_id] = ["This provider does not use an API key."]
        else:
            problem = _api_key_problem(api_key)
            if problem:
                key_errors[provider_id] = {"api_key": [problem]}
    if key_errors:
        errors["provider_keys"] = key_errors
    return errors


def _password_problem(password: object) -> str | None:
    if not isinstance(password, str):
        return "Must be a string."
    if len(password) < INGEST_PASSWORD_MIN_LENGTH:
        return f"Must have at least {INGEST_PASSWORD_MIN_LENGTH} characters."
    if len(password) > INGEST_PASSWORD_MAX_LENGTH:
        return f"Must have at most {INGEST_PASSWORD_MAX_LENGTH} characters."
    if _has_control_characters(password):
        return "Must not contain control characters."
    return None


def _api_key_problem(api_key: object) -> str | None:
    if not isinstance(api_key, str):
        return "Must be a string."
    if len(api_key) > API_KEY_MAX_LENGTH:
        return f"Must have at most {API_KEY_MAX_LENGTH} characters."
    # The key travels in HTTP headers: a line break or other control character would break them.
    if _has_control_characters(api_key):
        return "Must not contain control characters."
    return None


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


@dataclass(frozen=True)
class AppliedChange:
    """What a change did (for messages): never the values of secrets."""

    password_rotated: bool = False
    ingest_fields: tuple[str, ...] = ()
    keys_set: tuple[str, ...] = ()
    keys_removed: tuple[str, ...] = ()


def apply_settings_change(
    change: SettingsChange, *, actor: str, request: HttpRequest | None = None
) -> AppliedChange:
    """Check the whole change (Unprocessable with nested per-field messages), then store it in one
    transaction with its audit events: either everything is applied or nothing is."""
    errors = change_errors(change)
    if errors:
        raise Unprocessable(details=errors)
    ingest_fields: list[str] = []
    keys_set: list[str] = []
    keys_removed: list[str] = []
    with transaction.atomic():
        if change.dslr_password is not None:
            set_ingest_password(password=change.dslr_password, changed_by=actor)
            audit(AuditEvent.Kind.INGEST_PASSWORD_ROTATED, actor=actor, request=request)
        if change.sync_response_timeout_sec is not None:
            IngestSettings.load()  # the row exists from here on
            row = IngestSettings.objects.select_for_update().get(id=1)
            previous = row.sync_response_timeout_sec
            wanted = change.sync_response_timeout_sec
            if previous != wanted:
                row.sync_response_timeout_sec = wanted
                row.save(update_fields=["sync_response_timeout_sec", "updated_at"])
                ingest_fields.append("sync_response_timeout_sec")
                audit(
                    AuditEvent.Kind.SETTINGS_CHANGED,
                    actor=actor,
                    request=request,
                    details={
                        "fields": ["sync_response_timeout_sec"],
                        "sync_response_timeout_sec": {"from": previous, "to": wanted},
                    },
                )
        for provider_id, api_key in sorted(change.provider_keys.items()):
            removed = not api_key.strip()
            set_api_key(provider_id, api_key, changed_by=actor)
            (keys_removed if removed else keys_set).append(provider_id)
            audit(
                AuditEvent.Kind.PROVIDER_KEY_CHANGED,
                actor=actor,
                request=request,
                details={"provider_id": provider_id, "action": "removed" if removed else "set"},
            )
    return AppliedChange(
        password_rotated=change.dslr_password is not None,
        ingest_fields=tuple(ingest_fields),
        keys_set=tuple(keys_set),
        keys_removed=tuple(keys_removed),
    )


# --- purging the media cache ---------------------------------------------------------------------
@dataclass(frozen=True)
class PurgeReport:
    scope: str
    media_removed: int
    results_removed: int
    orphans_removed: int


# Upper bound on batches per kind in one purge, so that a purge always ends.
MAX_PURGE_BATCHES = 1000


def _drain(step: Callable[[], int]) -> int:
    """Run a batch step (removing up to cleanup.BATCH items) until a batch comes back short."""
    total = 0
    for _ in range(MAX_PURGE_BATCHES):
        removed = step()
        total += removed
        if removed < cleanup.BATCH:
            break
    return total


def purge_media_cache(scope: PurgeScope, *, actor: str) -> PurgeReport:
    """Remove expired temporary media now; with scope "full" also results past their retention
    (their links then answer 410; job history stays) and orphaned files no row refers to."""
    if scope not in PURGE_SCOPES:
        raise ValueError(f"unknown purge scope {scope!r}")
    media_removed = _drain(cleanup.purge_expired_media)
    results_removed = orphans_removed = 0
    if scope == "full":
        results_removed = _drain(cleanup.purge_expired_results)
        orphans_removed = cleanup.sweep_orphan_files(min_age=cleanup.ORPHAN_MIN_AGE)
    report = PurgeReport(
        scope=scope,
        media_removed=media_removed,
        results_removed=results_removed,
        orphans_removed=orphans_removed,
    )
    logger.info("media cache purged", extra={"actor": actor, **vars(report)})
    return report


# One background thread per web process runs purges one after the other. A purge asked for while
# an equal (or a full) one still waits to start is covered by that one and not queued again.
_purge_lock = threading.Lock()
_purge_executor: ThreadPoolExecutor | None = None
_purges_waiting: set[str] = set()
_purges_unfinished: set[Future[None]] = set()


def schedule_media_cache_purge(scope: PurgeScope, *, actor: str) -> None:
    """Purge the media cache (see purge_media_cache) in the background; returns at once."""
    global _purge_executor
    if scope not in PURGE_SCOPES:
        raise ValueError(f"unknown purge scope {scope!r}")
    with _purge_lock:
        if scope in _purges_waiting or "full" in _purges_waiting:
            return
        if _purge_executor is None:
            _purge_executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="media-cache-purge"
            )
        _purges_waiting.add(scope)
        future = _purge_executor.submit(_run_purge, scope, actor)
        _purges_unfinished.add(future)
    future.add_done_callback(_forget_purge)
    logger.info("media cache purge scheduled", extra={"actor": actor, "scope": scope})


def _forget_purge(future: Future[None]) -> None:
    with _purge_lock:
        _purges_unfinished.discard(future)


def _run_purge(scope: PurgeScope, actor: str) -> None:
    with _purge_lock:
        _purges_waiting.discard(scope)
    try:
        purge_media_cache(scope, actor=actor)
    except Exception:
        logger.exception("media cache purge failed", extra={"actor": actor, "scope": scope})
    finally:
        # This thread's connections (its own, thread-local) go back now, not when it is reused.
        connections.close_all()


def wait_for_purges(timeout: float) -> bool:
    """Wait until every scheduled purge has finished (shutdown, tests); False on timeout."""
    with _purge_lock:
        pending = list(_purges_unfinished)
    _, not_done = wait_for_futures(pending, timeout=timeout)
    return not not_done
