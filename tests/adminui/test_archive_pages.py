"""The results download page (/dashboard/results/archive) and its ZIP download."""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.test import Client

from accounts.models import SCOPES
from jobqueue import files
from tests.api.conftest import ADMIN_PASSWORD, make_admin
from tests.conftest import Stack
from tests.jobqueue.test_archives import (
    MARCH_1,
    expected_name,
    expire_result,
    failed_job,
    result_job,
    zip_contents,
)
from tests.support.images import make_photo

pytestmark = pytest.mark.django_db

PAGE = "/dashboard/results/archive"
ZIP = "/dashboard/results/archive.zip"


@pytest.fixture(autouse=True)
def fast_hasher(request: pytest.FixtureRequest, settings: Any) -> None:
    # A running server checks passwords with the product's own hashers.
    if "stack_factory" not in request.fixturenames:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def logged_in(*scopes: str, username: str = "olga") -> Client:
    make_admin(username, scopes)
    client = Client()
    response = client.post("/dashboard/login", {"username": username, "password": ADMIN_PASSWORD})
    assert response.status_code == 302
    return client


@pytest.fixture
def reader() -> Client:
    return logged_in("slots:read")


def squash(page: str) -> str:
    """Text without tags, whitespace collapsed, entities decoded."""
    return html.unescape(" ".join(re.sub(r"<[^>]+>", " ", page).split()))


def download_link(page: str) -> str | None:
    found = re.search(r'<a class="button" href="([^"]+)" download id="archive-download">', page)
    return html.unescape(found.group(1)) if found else None


def zip_body(response: Any) -> bytes:
    assert response.status_code == 200, response.content[:300]
    assert response.streaming
    return b"".join(response.streaming_content)


# --- access --------------------------------------------------------------------------------------
@pytest.mark.parametrize("address", [PAGE, ZIP])
def test_a_login_is_needed(address: str) -> None:
    response = Client().get(address)

    assert response.status_code == 302
    assert response["Location"].startswith("/dashboard/login?next=")


@pytest.mark.parametrize("address", [PAGE, ZIP])
def test_slots_read_is_needed(address: str) -> None:
    result_job()
    client = logged_in("stats:read", "settings:read")

    response = client.get(address)

    assert response.status_code == 403
    assert "slots:read" in response.content.decode()
    assert "Downloads" not in response.content.decode()


def test_the_menu_and_the_slot_page_lead_here(reader: Client) -> None:
    home = reader.get("/dashboard/").content.decode()
    slot_page = reader.get("/dashboard/slots/slot-004").content.decode()

    assert f'<a href="{PAGE}">Downloads</a>' in home
    assert (
        f'<a href="{PAGE}?slot=slot-004" id="download-all-results">Download all results (ZIP)</a>'
        in slot_page
    )
    archive_page = reader.get(PAGE).content.decode()
    assert f'<a href="{PAGE}" aria-current="page">Downloads</a>' in archive_page


# --- the form ------------------------------------------------------------------------------------
def test_the_page_counts_everything_still_kept_and_offers_the_zip(reader: Client) -> None:
    kept = [
        result_job("slot-001", data=make_photo(width=80), created_at=MARCH_1),
        result_job("slot-002", data=make_photo(width=90), created_at=MARCH_1 + timedelta(hours=1)),
    ]
    failed_job("slot-001")
    expire_result(result_job("slot-003"))

    response = reader.get(PAGE)

    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    page = response.content.decode()
    total = sum(job.result_size or 0 for job in kept)
    summary = squash(page)
    assert "Results of all slots" in summary
    assert "2 results" in summary
    assert f"{total / 1024:.1f} KB in total" in summary
    assert "between 2025-03-01 10:15 and 2025-03-01 11:15 (UTC)" in summary
    assert download_link(page) == ZIP
    assert '<option value="" selected' not in page  # "All slots" is the first option anyway
    assert 'id="archive-error"' not in page


def test_the_download_link_gives_the_apis_zip_with_the_session(reader: Client) -> None:
    jobs = [
        result_job("slot-005", data=make_photo(width=70), created_at=MARCH_1),
        result_job("slot-005", data=make_photo(width=75), created_at=MARCH_1 + timedelta(hours=1)),
    ]
    result_job("slot-006", created_at=MARCH_1)
    query = {"slot": "slot-005", "from": "2025-03-01T10:00", "to": "2025-03-01T12:00"}

    page = reader.get(PAGE, query).content.decode()
    link = download_link(page)
    assert link == f"{ZIP}?slot=slot-005&from=2025-03-01T10%3A00&to=2025-03-01T12%3A00"
    response = reader.get(link)

    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == (
        'attachment; filename="photobooth-results-slot-005-20250301-100000-20250301-120000.zip"'
    )
    assert zip_contents(zip_body(response)) == {
        expected_name(job): files.read_bytes(job.result_path) for job in jobs
    }


def test_a_slot_can_be_preselected(reader: Client) -> None:
    result_job("slot-004")
    result_job("slot-004")
    result_job("slot-009")

    page = reader.get(PAGE, {"slot": "slot-004"}).content.decode()

    assert '<option value="slot-004" selected>' in page
    assert "Results of slot-004 · Slot 4" in squash(page)
    assert "2 results" in squash(page)
    assert download_link(page) == f"{ZIP}?slot=slot-004"


def test_from_and_to_are_in_the_servers_time_zone(reader: Client, settings: Any) -> None:
    settings.TIME_ZONE = "Europe/Berlin"  # UTC+1 in March: MARCH_1 is 11:15 there
    job = result_job("slot-001", created_at=MARCH_1)
    result_job("slot-001", created_at=MARCH_1 + timedelta(hours=2))

    page = reader.get(PAGE, {"from": "2025-03-01T11:00", "to": "2025-03-01T11:30"})

    text = squash(page.content.decode())
    assert "1 result ," in text
    assert "from a photo received at 2025-03-01 11:15 (Europe/Berlin)" in text
    assert "Times are in Europe/Berlin" in text
    download = reader.get(download_link(page.content.decode()) or "")
    assert list(zip_contents(zip_body(download))) == [expected_name(job)]


def test_a_range_without_results_says_so_instead_of_offering_an_empty_file(
    reader: Client,
) -> None:
    result_job("slot-001", created_at=MARCH_1)
    query = {"from": "2025-04-01T00:00", "to": "2025-04-02T00:00"}

    page = reader.get(PAGE, query)
    download = reader.get(ZIP, query)

    assert page.status_code == 200
    assert "No results in this range" in squash(page.content.decode())
    assert download_link(page.content.decode()) is None
    assert download.status_code == 404
    assert download["Content-Type"].startswith("text/html")
    assert "No results in this range" in squash(download.content.decode())


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            {"from": "2025-03-02T10:00", "to": "2025-03-01T10:00"},
            "to",
            "Must be later than the start of the range.",
        ),
        ({"from": "2025-03-01T10:00", "to": "2025-03-01T10:00"}, "to", "Must be later"),
        ({"from": "yesterday"}, "from", "Datetime has wrong format"),
        ({"slot": "slot-999"}, "slot", "No slot 'slot-999'."),
    ],
)
def test_a_bad_form_is_shown_again_with_the_message_next_to_its_field(
    reader: Client, query: dict[str, str], field: str, message: str
) -> None:
    result_job("slot-001", created_at=MARCH_1)

    page = reader.get(PAGE, query)
    download = reader.get(ZIP, query)

    assert page.status_code == 400
    content = page.content.decode()
    assert "Some fields are invalid: correct them and try again." in content
    error = re.search(rf'<p class="error" id="archive-{field}-error">([^<]*)</p>', content)
    assert error and message in html.unescape(error.group(1)), content
    assert f'id="archive-{field}" name="{field}"' in content
    assert 'aria-invalid="true"' in content
    assert download_link(content) is None
    assert download.status_code == 400 and not download.streaming
    assert 'id="archive-error"' in download.content.decode()


def test_the_dashboard_download_is_logged(reader: Client, caplog: pytest.LogCaptureFixture) -> None:
    result_job("slot-001")

    with caplog.at_level(logging.INFO, logger="api.archives"):
        zip_body(reader.get(ZIP, {"slot": "slot-001"}))

    [record] = [r for r in caplog.records if r.getMessage() == "results archive downloaded"]
    assert record.__dict__["via"] == "dashboard" and record.__dict__["actor"] == "olga"
    assert record.__dict__["file_count"] == 1


def test_a_head_request_gets_the_headers_without_making_the_archive(
    reader: Client, caplog: pytest.LogCaptureFixture
) -> None:
    result_job("slot-001", created_at=MARCH_1)

    with caplog.at_level(logging.INFO, logger="api.archives"):
        response = reader.head(ZIP, {"slot": "slot-001"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith(
        'attachment; filename="photobooth-results-slot-001-20250301-101500-'
    )
    assert b"".join(response.streaming_content) == b""
    assert "results archive downloaded" not in caplog.text


# --- through the real server ---------------------------------------------------------------------
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_operator_downloads_a_slots_results_from_the_running_server(
    stack_factory: Callable[..., Stack],
) -> None:
    # Made before the workers start, so that none of them takes these jobs.
    jobs = [result_job("slot-002", data=make_photo(width=60 + n)) for n in range(3)]
    result_job("slot-003")
    stack = stack_factory()
    admin = make_admin("operator", SCOPES)
    client = Client()
    client.force_login(get_user_model().objects.get(pk=admin.pk))
    cookies = {
        django_settings.SESSION_COOKIE_NAME: client.cookies[
            django_settings.SESSION_COOKIE_NAME
        ].value
    }

    page = requests.get(
        f"{stack.base_url}{PAGE}", params={"slot": "slot-002"}, cookies=cookies, timeout=30
    )
    assert page.status_code == 200, stack.logs()
    assert "3 results" in squash(page.text)
    link = download_link(page.text)
    assert link is not None
    with requests.get(f"{stack.base_url}{link}", cookies=cookies, stream=True, timeout=60) as zip_:
        assert zip_.status_code == 200, stack.logs()
        assert zip_.headers["Content-Type"] == "application/zip"
        data = b"".join(zip_.iter_content(64 * 1024))

    assert zip_contents(data) == {
        expected_name(job): files.read_bytes(job.result_path) for job in jobs
    }
