"""Public pages for guests: a photo's result page (/r/<job id>) and its QR code.

No login. The page is reached through the job's unguessable id (from a QR code or a shared
link) and shows that one photo only: a preview, a download button, until when it can be
downloaded, and a QR code of the page itself. Nothing about the slot, provider, settings or
other jobs. The rules are those of the public download (ingest.views.public_result):
- a successful job whose result is still kept → 200;
- its retention has ended, or the file is gone (purged) → 410, "this photo has expired";
- an unknown id, a failed job, a job not finished yet → 404.
Responses are never cached and send no Referer onwards (the address is the access key).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from jobqueue import files
from jobqueue.models import Job
from photobooth.links import guest_result_url
from photobooth.qr import qr_svg


class Availability(Enum):
    AVAILABLE = "available"
    EXPIRED = "expired"
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class GuestResult:
    """What a guest may know about a result: nothing but the photo and its expiry."""

    availability: Availability
    job_id: uuid.UUID
    expires_at: datetime | None = None
    mime: str = ""


def guest_result(job_id: uuid.UUID, *, now: datetime | None = None) -> GuestResult:
    """Whether a job's result can be shown to guests (same rules as the public download)."""
    now = now or timezone.now()
    job = (
        Job.objects.filter(id=job_id, is_finalized=True, failure_reason__isnull=True)
        .only("id", "result_path", "result_mime", "result_expires_at")
        .first()
    )
    if job is None:
        return GuestResult(Availability.NOT_FOUND, job_id)
    expires_at = job.result_expires_at
    if expires_at is None or expires_at <= now or not files.exists(job.result_path):
        return GuestResult(Availability.EXPIRED, job_id, expires_at)
    return GuestResult(Availability.AVAILABLE, job_id, expires_at, job.result_mime)


def guest_headers(response: HttpResponse) -> HttpResponse:
    """What every public guest page sends: never cached, never indexed, no Referer onwards."""
    response["Cache-Control"] = "no-store"
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@require_safe
def guest_result_page(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """The guest's photo: preview, download, expiry and a QR code of this page."""
    result = guest_result(job_id)
    if result.availability is Availability.NOT_FOUND:
        return guest_headers(render(request, "adminui/guest_not_found.html", status=404))
    if result.availability is Availability.EXPIRED:
        return guest_headers(render(request, "adminui/guest_expired.html", status=410))
    context = {
        "expires_at": result.expires_at,
        # Same origin as this page: shown and downloaded from where the guest already is.
        "image_url": reverse("public-result", kwargs={"job_id": job_id}),
        "download_url": reverse("public-result", kwargs={"job_id": job_id}),
        "qr_url": reverse("guest-result-qr", kwargs={"job_id": job_id}),
        "page_url": guest_result_url(job_id),
    }
    return guest_headers(render(request, "adminui/guest_result.html", context))


@require_safe
def guest_result_qr(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """The QR code (SVG) of the guest page's public address, while the photo is available."""
    result = guest_result(job_id)
    if result.availability is not Availability.AVAILABLE:
        status = 404 if result.availability is Availability.NOT_FOUND else 410
        response = HttpResponse(
            "Not found." if status == 404 else "This photo has expired.",
            status=status,
            content_type="text/plain; charset=utf-8",
        )
    else:
        response = HttpResponse(
            qr_svg(guest_result_url(job_id), title="QR code of this photo's page"),
            content_type="image/svg+xml",
        )
        # A document of ours only: nothing in it may load or run anything.
        response["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'none'"
    response["X-Content-Type-Options"] = "nosniff"
    return guest_headers(response)


urlpatterns = [
    path("r/<uuid:job_id>", guest_result_page, name="guest-result"),
    path("r/<uuid:job_id>/qr.svg", guest_result_qr, name="guest-result-qr"),
]
