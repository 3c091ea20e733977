"""Creating, revoking and resolving galleries: shared by the dashboard and the admin API.

A gallery is created by an operator (`slots:write`) for an event: a title, the slots whose
results it shows (none chosen: all of them), the range of photos (from `results_since`, until
`results_until` or open), and a lifetime between one hour and GALLERY_MAX_LIFETIME, after which
its public address answers 410. Revoking ends it at once. Both are audited.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from accounts.models import AuditEvent
from accounts.services import audit
from galleries.models import Gallery
from ingest.models import Slot
from ingest.selectors import SLOT_ID_MAX_LENGTH, plausible_slot_id
from photobooth.errors import Gone, NotFound, Unprocessable
from photobooth.links import public_url

# How long a gallery's link may live at most, and at least. A link shared with a wedding's
# guests spreads beyond them; a week covers the event and the days after it, and no more.
GALLERY_MIN_LIFETIME = timedelta(hours=1)
GALLERY_MAX_LIFETIME = timedelta(days=7)
MIN_LIFETIME_HOURS = int(GALLERY_MIN_LIFETIME / timedelta(hours=1))
MAX_LIFETIME_HOURS = int(GALLERY_MAX_LIFETIME / timedelta(hours=1))
TITLE_MAX_LENGTH = 100

FieldErrors = dict[str, list[str]]


def gallery_public_url(gallery_id: uuid.UUID) -> str:
    """The gallery's public address, from PUBLIC_BASE_URL (what the QR code points at)."""
    return public_url(reverse("public-gallery", kwargs={"gallery_id": str(gallery_id)}))


# --- creating ------------------------------------------------------------------------------------
def _unstorable(text: str) -> bool:
    """Control characters (NUL cannot even be stored by PostgreSQL) or unpaired surrogates."""
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def _title_errors(title: str) -> list[str]:
    if not title:
        return ["Give the gallery a title."]
    if len(title) > TITLE_MAX_LENGTH:
        return [f"At most {TITLE_MAX_LENGTH} characters (this one has {len(title)})."]
    if _unstorable(title):
        return ["Must not contain control characters."]
    return []


def _slot_errors(slot_ids: Sequence[str]) -> list[str]:
    plausible = [slot_id for slot_id in slot_ids if plausible_slot_id(slot_id)]
    known = set(Slot.objects.filter(id__in=plausible).values_list("id", flat=True))
    unknown = [str(slot_id) for slot_id in slot_ids if slot_id not in known]
    if unknown:
        shown = ", ".join(slot_id[:SLOT_ID_MAX_LENGTH] for slot_id in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        return [f"Unknown slot{'s' if len(unknown) > 1 else ''}: {shown}{more}."]
    return []


def _range_errors(since: datetime, until: datetime | None) -> FieldErrors:
    errors: FieldErrors = {}
    if timezone.is_naive(since):
        errors["results_since"] = ["Needs a time zone."]
    if until is not None and timezone.is_naive(until):
        errors["results_until"] = ["Needs a time zone."]
    elif until is not None and not errors and until <= since:
        errors["results_until"] = ["Must be later than the start of the range."]
    return errors


def _lifetime_errors(hours: int) -> list[str]:
    if isinstance(hours, bool) or not MIN_LIFETIME_HOURS <= hours <= MAX_LIFETIME_HOURS:
        return [
            f"Between {MIN_LIFETIME_HOURS} and {MAX_LIFETIME_HOURS} hours "
            f"({GALLERY_MAX_LIFETIME.days} days)."
        ]
    return []


def gallery_errors(
    *,
    title: str,
    slot_ids: Sequence[str],
    results_since: datetime,
    results_until: datetime | None,
    lifetime_hours: int,
) -> FieldErrors:
    """What is wrong with a new gallery, per field (named as in the API); empty when valid."""
    errors: FieldErrors = {}
    checks = {
        "title": _title_errors(title),
        "slot_ids": _slot_errors(slot_ids),
        "lifetime_hours": _lifetime_errors(lifetime_hours),
    }
    errors.update({field: messages for field, messages in checks.items() if messages})
    errors.update(_range_errors(results_since, results_until))
    return errors


def create_gallery(
    *,
    title: str,
    slot_ids: Sequence[str],
    results_since: datetime,
    results_until: datetime | None,
    lifetime_hours: int,
    actor: str,
    request: HttpRequest | None = None,
) -> Gallery:
    """A new gallery, live from now for `lifetime_hours`; audited.

    Raises Unprocessable (422 `validation_failed`) with per-field messages when a field is
    invalid (see gallery_errors); nothing is stored then.
    """
    title = title.strip()
    # Each slot once, in the slots' order (an empty list: every slot).
    wanted = list(dict.fromkeys(slot_ids))
    errors = gallery_errors(
        title=title,
        slot_ids=wanted,
        results_since=results_since,
        results_until=results_until,
        lifetime_hours=lifetime_hours,
    )
    if errors:
        raise Unprocessable("The gallery cannot be created.", details=errors)
    with transaction.atomic():
        now = timezone.now()
        gallery = Gallery.objects.create(
            title=title,
            slot_ids=sorted(wanted),
            results_since=results_since,
            results_until=results_until,
            expires_at=now + timedelta(hours=lifetime_hours),
            created_by=actor[:150],
            created_at=now,
        )
        audit(
            AuditEvent.Kind.GALLERY_CREATED,
            actor=actor,
            request=request,
            details={
                "gallery_id": str(gallery.id),
                "slot_ids": gallery.slot_ids,
                "results_since": results_since.isoformat(),
                "results_until": results_until.isoformat() if results_until else None,
                "expires_at": gallery.expires_at.isoformat(),
            },
        )
    return gallery


# --- reading and revoking ------------------------------------------------------------------------
def _gallery_key(gallery_id: uuid.UUID | str) -> uuid.UUID:
    if isinstance(gallery_id, uuid.UUID):
        return gallery_id
    try:
        return uuid.UUID(str(gallery_id))
    except ValueError:
        raise _not_found() from None


def _not_found() -> NotFound:
    return NotFound("No gallery with this id.", code="gallery_not_found")


def get_gallery(gallery_id: uuid.UUID | str) -> Gallery:
    """A gallery in any state; NotFound (404) for an unknown or malformed id."""
    gallery = Gallery.objects.filter(id=_gallery_key(gallery_id)).first()
    if gallery is None:
        raise _not_found()
    return gallery


def list_galleries() -> list[Gallery]:
    """Every gallery, newest first (operators create a handful per event)."""
    return list(Gallery.objects.order_by("-created_at", "-id"))


def revoke_gallery(
    *, gallery_id: uuid.UUID | str, actor: str, request: HttpRequest | None = None
) -> Gallery:
    """End a gallery now: its address answers 410 from the next request on. Idempotent: a
    gallery revoked before keeps its time and is not audited again. NotFound when unknown."""
    key = _gallery_key(gallery_id)
    with transaction.atomic():
        now = timezone.now()
        changed = Gallery.objects.filter(id=key, revoked_at__isnull=True).update(revoked_at=now)
        gallery = get_gallery(key)
        if changed:
            audit(
                AuditEvent.Kind.GALLERY_REVOKED,
                actor=actor,
                request=request,
                details={"gallery_id": str(gallery.id)},
            )
    return gallery


def public_gallery(gallery_id: uuid.UUID | str, *, now: datetime | None = None) -> Gallery:
    """The gallery a guest may see: NotFound (404) for an unknown or malformed id, Gone (410)
    once it expired or was revoked (guests are not told which)."""
    gallery = get_gallery(gallery_id)
    if gallery.revoked_at is not None or gallery.expires_at <= (now or timezone.now()):
        raise Gone("This gallery has expired.", code="gallery_expired")
    return gallery
