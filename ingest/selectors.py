"""Slots as the admin API and the dashboard see them: lists, versions (ETags), recent results.

A slot's version is its `updated_at`: every saved edit moves it, and the ETag is derived from it.
An edit is accepted only when the editor names the version it read (If-Match or `updated_at`),
so two people editing the same slot cannot silently overwrite each other. The version-checked
edit and the statistics reset at the end of this module are the slot's write paths shared by
the API and the dashboard.
"""

from __future__ import annotations

import hashlib
import unicodedata
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.http import parse_etags

from accounts.models import AuditEvent
from accounts.services import audit
from ingest.models import SLOT_FLAGS, Slot
from ingest.services import update_slot
from jobqueue.selectors import retained_results
from photobooth.errors import BadRequest, Conflict, NotFound, PreconditionRequired
from photobooth.links import result_download_url, result_thumbnail_url
from providers.registry import all_providers

# How many of a slot's latest results its detail page shows.
RECENT_RESULTS_LIMIT = 10
# Longest slot id the database holds (Slot.id's max_length).
SLOT_ID_MAX_LENGTH = 32


# --- lists ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SlotFilters:
    """What a slot list is narrowed to; None means "any"."""

    provider_id: str | None = None
    operation_id: str | None = None
    is_active: bool | None = None
    # Part of the slot's id or name, case-insensitive.
    search: str | None = None


def known_provider_ids() -> list[str]:
    """Ids of the providers this installation offers, sorted."""
    return sorted(all_providers())


def known_operation_ids() -> list[str]:
    """Ids of every operation any installed provider offers, sorted."""
    return sorted({op for provider in all_providers().values() for op in provider.operations})


def slot_list(filters: SlotFilters) -> QuerySet[Slot]:
    """The slots matching every given filter, ordered by id."""
    slots = Slot.objects.all()
    if filters.provider_id is not None:
        slots = slots.filter(provider_id=filters.provider_id)
    if filters.operation_id is not None:
        slots = slots.filter(operation_id=filters.operation_id)
    if filters.is_active is not None:
        slots = slots.filter(is_active=filters.is_active)
    if filters.search:
        slots = slots.filter(Q(id__icontains=filters.search) | Q(name__icontains=filters.search))
    return slots.order_by("id")


def plausible_slot_id(value: object) -> bool:
    """Whether `value` could be a slot id at all. Ids that cannot exist are answered without
    asking the database (PostgreSQL refuses NUL; lone surrogates cannot even be encoded)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= SLOT_ID_MAX_LENGTH
        and not any(unicodedata.category(char) in ("Cc", "Cs") for char in value)
    )


def _slot_not_found(slot_id: str) -> NotFound:
    return NotFound(f"No slot '{slot_id}'.", code="slot_not_found", details={"slot_id": slot_id})


def get_slot(slot_id: str) -> Slot:
    """The slot with this id, or NotFound (404 `slot_not_found`)."""
    slot = Slot.objects.filter(id=slot_id).first() if plausible_slot_id(slot_id) else None
    if slot is None:
        raise _slot_not_found(slot_id)
    return slot


# --- versions ------------------------------------------------------------------------------------
def slot_etag(slot: Slot) -> str:
    """The slot's current version as a strong ETag (quoted); it changes with every saved edit."""
    version = f"{slot.id}\n{slot.updated_at.astimezone(UTC).isoformat()}"
    return f'"{hashlib.sha256(version.encode()).hexdigest()[:32]}"'


def ensure_current_version(
    slot: Slot, *, if_match: str | None, updated_at: datetime | None
) -> None:
    """Nothing when the editor read the slot's current version; otherwise the error to answer.

    `if_match` is the If-Match header (one or more ETags), `updated_at` the version from the
    body; at least one is needed (PreconditionRequired, 428) and every one given must name the
    current version (Conflict `version_conflict`, 409, whose details carry the current ETag).
    A weak form (W/"…") of the current ETag is accepted: proxies that compress answers turn
    ETags weak, and the tag still names the version.
    """
    header = (if_match or "").strip()
    if not header and updated_at is None:
        raise PreconditionRequired(
            "Send If-Match with the ETag from GET /api/slots/<id>, or the slot's updated_at "
            "in the body.",
        )
    current = slot_etag(slot)
    matches: list[bool] = []
    if header:
        tags = parse_etags(header)
        if tags == ["*"]:
            raise PreconditionRequired(
                "If-Match: * does not say which version you edited; send the slot's ETag."
            )
        if not tags:
            raise BadRequest(
                'If-Match must hold one or more quoted ETags, e.g. If-Match: "…".',
                code="invalid_if_match",
            )
        matches.append(any(tag.removeprefix("W/") == current for tag in tags))
    if updated_at is not None:
        matches.append(updated_at == slot.updated_at)
    if not all(matches):
        raise Conflict(
            "The slot was changed since you read it; reload it and apply your edit again.",
            code="version_conflict",
            details={
                "current_etag": current,
                "current_updated_at": slot.updated_at.isoformat(),
            },
            headers={"ETag": current},
        )


# --- recent results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecentResult:
    """A successful job's result that guests can still download."""

    job_id: uuid.UUID
    thumbnail_url: str
    download_url: str
    completed_at: datetime
    result_expires_at: datetime
    mime: str
    size: int


def recent_results(
    slot_id: str, *, now: datetime | None = None, limit: int = RECENT_RESULTS_LIMIT
) -> list[RecentResult]:
    """The slot's latest successful results that have not expired, newest first."""
    now = now or timezone.now()
    rows = (
        retained_results(now=now)
        .filter(slot_id=slot_id, result_size__isnull=False)
        .order_by("-finalized_at", "-id")
        .values("id", "finalized_at", "result_expires_at", "result_mime", "result_size")[:limit]
    )
    return [_recent_result(row) for row in rows]


def _recent_result(row: Mapping[str, Any]) -> RecentResult:
    return RecentResult(
        job_id=row["id"],
        thumbnail_url=result_thumbnail_url(row["id"]),
        download_url=result_download_url(row["id"]),
        completed_at=row["finalized_at"],
        result_expires_at=row["result_expires_at"],
        mime=row["result_mime"],
        size=row["result_size"],
    )


# --- writes (shared by the API and the dashboard) -----------------------------------------------
_TRACKED_FIELDS = ("name", "provider_id", "operation_id", "is_active", *SLOT_FLAGS)


def _changes(before: Mapping[str, Any], after: Slot) -> tuple[list[str], list[str]]:
    """(changed fields, changed setting keys) between a snapshot and the saved slot."""
    fields = [name for name in _TRACKED_FIELDS if before[name] != getattr(after, name)]
    old_settings: Mapping[str, Any] = before["settings_json"]
    new_settings: Mapping[str, Any] = after.settings_json
    keys = sorted(
        key
        for key in set(old_settings) | set(new_settings)
        if key not in old_settings
        or key not in new_settings
        or old_settings[key] != new_settings[key]
    )
    if keys:
        fields.append("settings_json")
    return fields, keys


def update_slot_if_current(
    *,
    slot_id: str,
    if_match: str | None,
    updated_at: datetime | None,
    provider_id: str,
    operation_id: str,
    settings: Mapping[str, Any],
    is_active: bool,
    name: str | None = None,
    flags: Mapping[str, bool] | None = None,
    actor: str,
    request: HttpRequest | None = None,
) -> Slot:
    """Save a slot edit made on the version the editor read, and audit what changed.

    The slot row stays locked from the version check to the save, so of two edits based on the
    same version exactly one is saved; the other gets Conflict (409). Raises NotFound (404),
    PreconditionRequired (428), BadRequest (400) as ensure_current_version does, and
    providers.base.SettingsInvalid with per-field errors when the configuration is invalid.
    Jobs already queued keep the configuration they were queued with.
    """
    with transaction.atomic():
        slot = (
            Slot.objects.select_for_update().filter(id=slot_id).first()
            if plausible_slot_id(slot_id)
            else None
        )
        if slot is None:
            raise _slot_not_found(slot_id)
        ensure_current_version(slot, if_match=if_match, updated_at=updated_at)
        before = {field: getattr(slot, field) for field in (*_TRACKED_FIELDS, "settings_json")}
        saved = update_slot(
            slot_id=slot.id,
            provider_id=provider_id,
            operation_id=operation_id,
            settings=settings,
            is_active=is_active,
            name=name,
            flags=flags,
        )
        fields, setting_keys = _changes(before, saved)
        if fields:
            audit(
                AuditEvent.Kind.SLOT_CHANGED,
                actor=actor,
                request=request,
                details={"slot_id": slot.id, "fields": fields, "setting_keys": setting_keys},
            )
    return saved


def reset_slot_stats(*, slot_id: str, actor: str, request: HttpRequest | None = None) -> Slot:
    """Start the slot's statistics afresh from now (`last_reset_at`); jobs are kept.

    The slot's configuration version (ETag) does not change, so an edit in progress elsewhere
    is not invalidated. NotFound (404) for an unknown slot.
    """
    with transaction.atomic():
        now = timezone.now()
        changed = (
            Slot.objects.filter(id=slot_id).update(last_reset_at=now)
            if plausible_slot_id(slot_id)
            else 0
        )
        if not changed:
            raise _slot_not_found(slot_id)
        audit(
            AuditEvent.Kind.SLOT_STATS_RESET,
            actor=actor,
            request=request,
            details={"slot_id": slot_id, "reset_at": now.isoformat()},
        )
    return get_slot(slot_id)
