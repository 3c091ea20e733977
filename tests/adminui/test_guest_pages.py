"""The public guest result page (/r/<job id>) and its QR code: states, headers, no admin data."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import Any

import pytest
import segno
from django.test import Client
from django.utils import timezone

from ingest.models import Slot
from ingest.services import job_configuration
from jobqueue import files, services
from jobqueue.models import FailureReason, Job
from photobooth.links import guest_result_url
from photobooth.qr import qr_svg
from tests.support.images import make_photo

pytestmark = pytest.mark.django_db

BASE_URL = "https://booth.example"
SLOT_NAME = "Secret Gala of the Lindqvist Family"


@pytest.fixture(autouse=True)
def public_address(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = BASE_URL


# --- helpers (also used by the settings page's tests) --------------------------------------------
def queued_job(slot_id: str = "slot-001") -> Job:
    """A pending job, queued from the slot's configuration as ingest does."""
    stored = files.store_bytes(
        kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=make_photo(width=64)
    )
    return services.enqueue_job(
        configuration=job_configuration(Slot.objects.get(id=slot_id)),
        payload=services.StoredPayload(
            path=stored.path, mime="image/jpeg", size=stored.size, sha256=stored.sha256
        ),
        metadata={},
        received_at=timezone.now(),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=72),
    )


def finished_job(
    slot_id: str = "slot-001", *, data: bytes | None = None, mime: str = "image/jpeg"
) -> Job:
    """A job that went through the queue and succeeded with this result."""
    job = queued_job(slot_id)
    [taken] = services.acquire_jobs(worker_id="tests", limit=1)
    assert taken.id == job.id and taken.lease_token is not None
    result = files.store_bytes(
        kind="results", stem=str(job.id), mime=mime, data=data or make_photo(width=96)
    )
    assert services.finalize_success(
        job=taken, lease_token=taken.lease_token, result=result, result_mime=mime
    )
    return Job.objects.get(id=job.id)


def failed_job(slot_id: str = "slot-001") -> Job:
    job = queued_job(slot_id)
    [taken] = services.acquire_jobs(worker_id="tests", limit=1)
    assert taken.lease_token is not None
    services.finalize_failure(
        job=taken, lease_token=taken.lease_token, reason=FailureReason.PROVIDER_ERROR
    )
    return Job.objects.get(id=job.id)


def page_of(job_id: uuid.UUID) -> Any:
    return Client().get(f"/r/{job_id}")


def assert_guest_headers(response: Any) -> None:
    """Guest pages (a photo's, a gallery's): never cached, never indexed, no Referer onwards."""
    assert response["Cache-Control"] == "no-store"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["X-Robots-Tag"] == "noindex, nofollow"
    assert "script-src 'self'" in response["Content-Security-Policy"]


def assert_no_admin_data(page: str, job: Job) -> None:
    """Nothing about the slot, its provider or the dashboard appears on a guest page."""
    slot = Slot.objects.get(id=job.slot_id)
    for secret in (
        SLOT_NAME,
        slot.name,
        job.slot_id,
        job.provider_id,
        job.operation_id,
        "Local (offline)",
        "/dashboard",
        "csrfmiddlewaretoken",
        "Log out",
        "app.css",
    ):
        assert secret not in page, f"{secret!r} shown to guests"


@pytest.fixture
def named_slot() -> Slot:
    Slot.objects.filter(id="slot-001").update(name=SLOT_NAME)
    return Slot.objects.get(id="slot-001")


# --- an available photo --------------------------------------------------------------------------
def test_available_result_shows_preview_download_expiry_and_qr(named_slot: Slot) -> None:
    job = finished_job()

    response = page_of(job.id)

    assert response.status_code == 200
    assert_guest_headers(response)
    page = response.content.decode()
    assert "<h1>Your photo</h1>" in page
    assert f'<img src="/public/results/{job.id}" alt="Your photo from the photo booth"' in page
    download = re.search(r'<a class="button" id="guest-download" href="([^"]+)" download>', page)
    assert download and download.group(1) == f"/public/results/{job.id}"
    assert f'<img src="/r/{job.id}/qr.svg" alt="QR code with the address of this page"' in page
    assert f'href="{BASE_URL}/r/{job.id}"' in page
    expiry = re.search(r'<p id="guest-expiry">(.*?)</p>', page, re.S)
    assert expiry
    assert job.result_expires_at is not None
    assert f'datetime="{timezone.localtime(job.result_expires_at).isoformat()}"' in expiry.group(1)
    assert "that is for 2\xa0days, 23\xa0hours more" in expiry.group(1)
    assert_no_admin_data(page, job)


def test_the_download_link_answers_with_the_photo(named_slot: Slot) -> None:
    photo = make_photo(width=120)
    job = finished_job(data=photo)

    response = Client().get(f"/public/results/{job.id}")

    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment")
    assert response.getvalue() == photo


def test_head_is_answered_like_get() -> None:
    job = finished_job()

    response = Client().head(f"/r/{job.id}")

    assert response.status_code == 200
    assert_guest_headers(response)


def test_guest_pages_answer_only_get_and_head() -> None:
    job = finished_job()

    assert Client().post(f"/r/{job.id}").status_code == 405
    assert Client().post(f"/r/{job.id}/qr.svg").status_code == 405


# --- expired, unknown, failed, unfinished ---------------------------------------------------------
def test_an_expired_result_is_a_friendly_410(named_slot: Slot) -> None:
    job = finished_job()
    Job.objects.filter(id=job.id).update(result_expires_at=timezone.now() - timedelta(seconds=1))

    response = page_of(job.id)

    assert response.status_code == 410
    assert_guest_headers(response)
    page = response.content.decode()
    assert "<h1>This photo has expired</h1>" in page
    assert "/public/results/" not in page and "qr.svg" not in page
    assert_no_admin_data(page, job)


def test_a_result_whose_file_is_gone_is_410() -> None:
    job = finished_job()
    files.delete_quietly(job.result_path)

    response = page_of(job.id)

    assert response.status_code == 410
    assert "This photo has expired" in response.content.decode()


def test_an_unknown_job_is_a_friendly_404() -> None:
    response = page_of(uuid.uuid4())

    assert response.status_code == 404
    assert_guest_headers(response)
    page = response.content.decode()
    assert "<h1>Photo not found</h1>" in page
    assert "/dashboard" not in page


def test_a_failed_job_is_404(named_slot: Slot) -> None:
    job = failed_job()

    response = page_of(job.id)

    assert response.status_code == 404
    page = response.content.decode()
    assert "Photo not found" in page
    assert_no_admin_data(page, job)


@pytest.mark.parametrize("processing", [False, True])
def test_an_unfinished_job_is_404(processing: bool) -> None:
    job = queued_job()
    if processing:
        services.acquire_jobs(worker_id="tests", limit=1)

    response = page_of(job.id)

    assert response.status_code == 404
    assert "reload this page in a moment" in response.content.decode()


def test_guest_pages_do_not_extend_the_admin_layout() -> None:
    job = finished_job()

    page = page_of(job.id).content.decode()

    assert "guest.css" in page
    assert "<nav" not in page and "topbar" not in page
    assert '<meta name="robots" content="noindex, nofollow">' in page
    assert "<script" not in page and "style=" not in page


# --- the QR code ---------------------------------------------------------------------------------
def test_qr_svg_encodes_the_pages_public_address() -> None:
    job = finished_job()

    response = Client().get(f"/r/{job.id}/qr.svg")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response["Content-Security-Policy"]
    body = response.content
    assert body.startswith(b"<svg") and b"<script" not in body
    page_url = f"{BASE_URL}/r/{job.id}"
    assert guest_result_url(job.id) == page_url
    assert body == qr_svg(page_url, title="QR code of this photo's page")


def test_qr_svg_draws_exactly_the_symbol_of_the_address() -> None:
    """The SVG's dark path, read back, is segno's matrix for the page's address."""
    job = finished_job()
    body = Client().get(f"/r/{job.id}/qr.svg").content.decode()
    expected = segno.make(f"{BASE_URL}/r/{job.id}", error="m", micro=False)

    view_box = re.search(r'viewBox="0 0 (\d+) \1"', body)
    assert view_box
    size = int(view_box.group(1))
    dark_path = re.search(r'<path stroke="#000" d="([^"]+)"', body)
    assert dark_path
    drawn = [[False] * size for _ in range(size)]
    x = y = 0.0
    for command, number in re.findall(r"([MmHhVv])(-?[\d.]+(?: -?[\d.]+)?)", dark_path.group(1)):
        values = [float(v) for v in number.split()]
        if command == "M":
            x, y = values
        elif command == "m":
            x, y = x + values[0], y + values[1]
        elif command == "h":
            for column in range(int(x), int(x + values[0])):
                drawn[int(y)][column] = True
            x += values[0]
    modules = [[bool(m) for m in row] for row in expected.matrix_iter(scale=1, border=4)]
    assert drawn == modules


@pytest.mark.parametrize("state", ["unknown", "failed", "expired"])
def test_qr_svg_is_available_only_while_the_photo_is(state: str) -> None:
    if state == "unknown":
        job_id, status = uuid.uuid4(), 404
    elif state == "failed":
        job_id, status = failed_job().id, 404
    else:
        job = finished_job()
        Job.objects.filter(id=job.id).update(result_expires_at=timezone.now())
        job_id, status = job.id, 410

    response = Client().get(f"/r/{job_id}/qr.svg")

    assert response.status_code == status
    assert response["Content-Type"].startswith("text/plain")
    assert response["X-Content-Type-Options"] == "nosniff"
