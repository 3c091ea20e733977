"""Public galleries: the guests' page (/g/<id>) and the operators' page (/dashboard/galleries).

The guests' page needs no login: its unguessable address is the access key. It shows the
gallery's title, the thumbnails of its photos (newest first, 48 a page), each linking to the
photo's own guest page (/r/<job id>), and until when the gallery is online. Nothing about
slots, providers, settings or counts. Unknown or malformed ids → 404; expired or revoked
galleries → 410 with a friendly page (guests are not told which). Never cached, never indexed,
no Referer sent onwards — the same rules as the guest result page (adminui.guest_pages).

The operators' page lists the galleries with their public link (copy button, QR code) and
state; `slots:read` sees it, `slots:write` creates and revokes (POST/redirect/GET, through
galleries.services like POST/DELETE /api/galleries, with the same checks and audit).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django import forms
from django.conf import settings as django_settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from accounts.services import scopes_of
from adminui.access import requires_scope
from adminui.guest_pages import guest_headers
from adminui.views import start_of_today
from galleries import selectors, services
from galleries.models import Gallery, GalleryState
from ingest.models import IngestSettings, Slot
from photobooth.errors import Gone, NotFound, Unprocessable
from photobooth.links import guest_result_url
from photobooth.qr import qr_svg

# What the dashboard offers (the API takes any whole number of hours up to the cap).
LIFETIME_CHOICES = [(6, "6 hours"), (24, "24 hours"), (72, "3 days"), (168, "7 days")]
DEFAULT_LIFETIME_HOURS = 24
DATETIME_LOCAL = "%Y-%m-%dT%H:%M"
ALL_SLOTS, CHOSEN_SLOTS = "all", "chosen"


# --- the guests' page ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PhotoTile:
    # Same origin as the page (its Content-Security-Policy allows only its own images).
    thumbnail_path: str
    # The photo's guest page at the public address (PUBLIC_BASE_URL), as its QR code has it.
    page_url: str
    taken_at: datetime


def _page_number(request: HttpRequest) -> int:
    """?page=N; anything unusable shows the first page (guests get no error for a typo)."""
    try:
        number = int(request.GET.get("page", "1"))
    except ValueError:
        return 1
    return min(max(number, 1), selectors.MAX_PAGE)


def _page_link(gallery_id: uuid.UUID, page: int) -> str:
    address = reverse("public-gallery", kwargs={"gallery_id": str(gallery_id)})
    return address if page == 1 else f"{address}?page={page}"


@require_safe
def public_gallery_page(request: HttpRequest, gallery_id: str) -> HttpResponse:
    """A gallery's photos for its guests, one page at a time."""
    try:
        gallery = services.public_gallery(gallery_id)
    except NotFound:
        return guest_headers(render(request, "adminui/gallery_not_found.html", status=404))
    except Gone:
        return guest_headers(render(request, "adminui/gallery_expired.html", status=410))
    page = selectors.gallery_page(gallery, page=_page_number(request))
    tiles = [
        PhotoTile(
            thumbnail_path=reverse("public-result-thumbnail", kwargs={"job_id": photo.job_id}),
            page_url=guest_result_url(photo.job_id),
            taken_at=photo.taken_at,
        )
        for photo in page.photos
    ]
    context = {
        "title": gallery.title,
        "expires_at": gallery.expires_at,
        "tiles": tiles,
        "page": page,
        "first_url": _page_link(gallery.id, 1),
        "newer_url": _page_link(gallery.id, page.page - 1) if page.has_previous else "",
        "older_url": _page_link(gallery.id, page.page + 1) if page.has_next else "",
        "is_open": gallery.results_until is None or gallery.results_until > timezone.now(),
    }
    return guest_headers(render(request, "adminui/gallery.html", context))


# --- the operators' page -------------------------------------------------------------------------
class GalleryForm(forms.Form):
    """The create form. Its field names are the API's, so the service's per-field messages
    land next to the right field; `slots` picks between every slot and the ones ticked."""

    title = forms.CharField(max_length=services.TITLE_MAX_LENGTH, strip=True)
    slots = forms.ChoiceField(
        choices=[(ALL_SLOTS, "All slots"), (CHOSEN_SLOTS, "Only the slots ticked below")],
        initial=ALL_SLOTS,
    )
    slot_ids = forms.MultipleChoiceField(required=False)
    results_since = forms.DateTimeField(input_formats=[DATETIME_LOCAL, "%Y-%m-%dT%H:%M:%S"])
    results_until = forms.DateTimeField(
        required=False, input_formats=[DATETIME_LOCAL, "%Y-%m-%dT%H:%M:%S"]
    )
    lifetime_hours = forms.TypedChoiceField(
        choices=LIFETIME_CHOICES, coerce=int, initial=DEFAULT_LIFETIME_HOURS
    )

    def __init__(self, *args: Any, slots: Sequence[Slot], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["slot_ids"].choices = [(slot.id, slot.id) for slot in slots]  # type: ignore[attr-defined]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("slots") == CHOSEN_SLOTS and not cleaned.get("slot_ids"):
            self.add_error("slot_ids", "Tick at least one slot, or choose “All slots”.")
        elif cleaned.get("slots") == ALL_SLOTS and cleaned.get("slot_ids"):
            # Ticks with "All slots" chosen: ask rather than silently ignore them.
            self.add_error("slots", "Choose “Only the slots ticked below”, or untick the slots.")
        return cleaned

    def chosen_slot_ids(self) -> list[str]:
        """The slots to show: none (every slot) unless "only the slots ticked" was chosen."""
        if self.cleaned_data["slots"] == ALL_SLOTS:
            return []
        return list(self.cleaned_data["slot_ids"])

    def show_errors(self, details: Mapping[str, Any]) -> None:
        """The service's per-field messages, next to their fields."""
        for field, field_messages in details.items():
            self.add_error(field if field in self.fields else None, list(field_messages))


@dataclass(frozen=True)
class GalleryRow:
    gallery: Gallery
    state: GalleryState
    public_url: str
    slot_labels: list[str]


@dataclass(frozen=True)
class SlotChoice:
    id: str
    name: str
    is_active: bool
    checked: bool


def _rows(galleries: Sequence[Gallery], slot_names: Mapping[str, str]) -> list[GalleryRow]:
    now = timezone.now()
    return [
        GalleryRow(
            gallery=gallery,
            state=gallery.state(now),
            public_url=services.gallery_public_url(gallery.id),
            slot_labels=[
                f"{slot_id} · {slot_names[slot_id]}" if slot_id in slot_names else slot_id
                for slot_id in gallery.slot_ids
            ],
        )
        for gallery in galleries
    ]


def _values(form: GalleryForm) -> dict[str, Any]:
    """What the form's inputs show: what was posted, else the defaults."""
    if form.is_bound:
        data = form.data
        return {
            "title": data.get("title", ""),
            "slots": data.get("slots", ALL_SLOTS),
            "slot_ids": set(data.getlist("slot_ids")) if hasattr(data, "getlist") else set(),
            "results_since": data.get("results_since", ""),
            "results_until": data.get("results_until", ""),
            "lifetime_hours": str(data.get("lifetime_hours", DEFAULT_LIFETIME_HOURS)),
        }
    return {
        "title": "",
        "slots": ALL_SLOTS,
        "slot_ids": set(),
        "results_since": start_of_today().strftime(DATETIME_LOCAL),
        "results_until": "",
        "lifetime_hours": str(DEFAULT_LIFETIME_HOURS),
    }


def _render_list(
    request: HttpRequest, *, form: GalleryForm | None = None, status: int = 200
) -> HttpResponse:
    slots = list(Slot.objects.order_by("id").only("id", "name", "is_active"))
    form = form or GalleryForm(slots=slots)
    values = _values(form)
    context = {
        "nav": "galleries",
        "rows": _rows(services.list_galleries(), {slot.id: slot.name for slot in slots}),
        "slot_choices": [
            SlotChoice(
                id=slot.id,
                name=slot.name,
                is_active=slot.is_active,
                checked=slot.id in values["slot_ids"],
            )
            for slot in slots
        ],
        "values": values,
        # "__all__" cannot be read in a template (a leading underscore): it becomes "form".
        "errors": {
            ("form" if field == "__all__" else field): list(errors)
            for field, errors in form.errors.items()
        },
        "lifetime_choices": [(str(hours), label) for hours, label in LIFETIME_CHOICES],
        "max_lifetime_days": services.GALLERY_MAX_LIFETIME.days,
        "time_zone": django_settings.TIME_ZONE,
        "retention_hours": _hours(IngestSettings.load().result_retention_sec),
        "can_write": "slots:write" in scopes_of(request.user),
    }
    response = render(request, "adminui/galleries.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    return f"{hours:.0f}" if hours.is_integer() else f"{hours:.1f}"


def _actor(request: HttpRequest) -> str:
    return str(request.user.get_username())


@requires_scope("slots:read")
@require_safe
def gallery_list(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@requires_scope("slots:write")
def create_gallery(request: HttpRequest) -> HttpResponse:
    """The create form's target: the new gallery (and its link) on the list, or the form again
    with its errors (422) and nothing created."""
    if request.method != "POST":
        return redirect("dashboard-galleries")
    slots = list(Slot.objects.order_by("id").only("id", "name", "is_active"))
    form = GalleryForm(request.POST, slots=slots)
    if not form.is_valid():
        messages.error(request, "Not created: please correct the fields marked below.")
        return _render_list(request, form=form, status=422)
    values = form.cleaned_data
    try:
        gallery = services.create_gallery(
            title=values["title"],
            slot_ids=form.chosen_slot_ids(),
            results_since=values["results_since"],
            results_until=values["results_until"],
            lifetime_hours=values["lifetime_hours"],
            actor=_actor(request),
            request=request,
        )
    except Unprocessable as invalid:
        form.show_errors(invalid.details)
        messages.error(request, "Not created: please correct the fields marked below.")
        return _render_list(request, form=form, status=422)
    expires = timezone.localtime(gallery.expires_at).strftime("%Y-%m-%d %H:%M")
    messages.success(
        request,
        f"Gallery “{gallery.title}” created: share its link or QR code below. "
        f"It works until {expires}.",
    )
    return redirect(f"{reverse('dashboard-galleries')}#gallery-{gallery.id}")


@requires_scope("slots:write")
def revoke_gallery(request: HttpRequest, gallery_id: uuid.UUID) -> HttpResponse:
    if request.method != "POST":
        return redirect("dashboard-galleries")
    try:
        gallery = services.revoke_gallery(
            gallery_id=gallery_id, actor=_actor(request), request=request
        )
    except NotFound:
        return render(request, "adminui/not_found.html", status=404)
    messages.success(
        request, f"Gallery “{gallery.title}” revoked: its link now says it has expired."
    )
    return redirect(f"{reverse('dashboard-galleries')}#gallery-{gallery.id}")


@requires_scope("slots:read")
@require_safe
def gallery_qr(request: HttpRequest, gallery_id: uuid.UUID) -> HttpResponse:
    """The QR code (SVG) of a gallery's public address, to show or print for the guests."""
    try:
        gallery = services.get_gallery(gallery_id)
    except NotFound:
        return render(request, "adminui/not_found.html", status=404)
    response = HttpResponse(
        qr_svg(services.gallery_public_url(gallery.id), title=f"QR code of “{gallery.title}”"),
        content_type="image/svg+xml",
    )
    # A document of ours only: nothing in it may load or run anything.
    response["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


urlpatterns = [
    # A plain string, not <uuid:…>: a malformed id gets the guests' 404 page, not the API's.
    path("g/<str:gallery_id>", public_gallery_page, name="public-gallery"),
    path("dashboard/galleries", gallery_list, name="dashboard-galleries"),
    path("dashboard/galleries/new", create_gallery, name="dashboard-gallery-create"),
    path(
        "dashboard/galleries/<uuid:gallery_id>/revoke",
        revoke_gallery,
        name="dashboard-gallery-revoke",
    ),
    path("dashboard/galleries/<uuid:gallery_id>/qr.svg", gallery_qr, name="dashboard-gallery-qr"),
]
