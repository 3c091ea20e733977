"""GET /api/results/archive: a slot's or a time range's results as one streamed ZIP."""

from __future__ import annotations

import http.client
import logging
import re
import socket
from collections.abc import Callable
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.utils import timezone
from rest_framework.test import APIClient

from ingest.services import update_slot
from jobqueue import files
from jobqueue.models import Job
from tests.api.conftest import ADMIN_PASSWORD, assert_error, make_admin
from tests.conftest import Stack
from tests.jobqueue.test_archives import (
    MARCH_1,
    expected_name,
    expire_result,
    failed_job,
    noisy_bytes,
    result_job,
    zip_contents,
    zip_names,
)
from tests.support.images import make_photo
from tests.support.stack import wait_until

pytestmark = pytest.mark.django_db

URL = "/api/results/archive"


@pytest.fixture(autouse=True)
def fast_hasher(request: pytest.FixtureRequest, settings: Any) -> None:
    # A running server checks passwords with the product's own hashers.
    if "stack_factory" not in request.fixturenames:
        settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def reader(api_client_with: Callable[..., APIClient]) -> APIClient:
    return api_client_with("slots:read")


def body(response: Any) -> bytes:
    assert response.streaming, "the archive must be streamed"
    return b"".join(response.streaming_content)


def attachment_name(response: Any) -> str:
    found = re.fullmatch(r'attachment; filename="([^"]+)"', response["Content-Disposition"])
    assert found, response["Content-Disposition"]
    return found.group(1)


# --- downloads -----------------------------------------------------------------------------------
def test_a_slot_and_range_download_holds_exactly_those_results(reader: APIClient) -> None:
    since, until = MARCH_1, MARCH_1 + timedelta(hours=3)
    first = result_job("slot-001", data=make_photo(width=50), created_at=since)
    second = result_job(
        "slot-001",
        data=make_photo(width=60, format="PNG"),
        mime="image/png",
        created_at=since + timedelta(hours=1),
    )
    result_job("slot-001", created_at=until)  # the end is not included
    result_job("slot-001", created_at=since - timedelta(minutes=1))
    result_job("slot-002", created_at=since + timedelta(minutes=1))
    failed_job("slot-001", created_at=since + timedelta(minutes=2))
    expire_result(result_job("slot-001", created_at=since + timedelta(minutes=3)))

    response = reader.get(
        URL, {"slot_id": "slot-001", "since": since.isoformat(), "until": until.isoformat()}
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert attachment_name(response) == (
        "photobooth-results-slot-001-20250301-101500-20250301-131500.zip"
    )
    assert response["Cache-Control"] == "private, no-store"
    assert zip_contents(body(response)) == {
        expected_name(first): make_photo(width=50),
        expected_name(second, "png"): make_photo(width=60, format="PNG"),
    }


def test_without_parameters_every_retained_result_of_every_slot_is_included(
    reader: APIClient,
) -> None:
    jobs = [
        result_job("slot-001", created_at=MARCH_1),
        result_job("slot-007", created_at=MARCH_1 + timedelta(days=1)),
        result_job("slot-015"),
    ]
    before = timezone.now()

    response = reader.get(URL, HTTP_ACCEPT="application/zip")

    assert response.status_code == 200
    assert zip_names(body(response)) == [expected_name(job) for job in jobs]
    # An open range is named by what it holds: from the first result up to now.
    found = re.fullmatch(
        r"photobooth-results-all-(\S+)-(\d{8}-\d{6})\.zip", attachment_name(response)
    )
    assert found, attachment_name(response)
    assert found.group(1) == "20250301-101500"
    assert found.group(2) >= f"{before.astimezone(UTC):%Y%m%d-%H%M%S}"


def test_empty_parameters_mean_any(reader: APIClient) -> None:
    job = result_job("slot-003")

    response = reader.get(f"{URL}?slot_id=&since=&until=")

    assert response.status_code == 200
    assert zip_names(body(response)) == [expected_name(job)]


def test_a_time_without_offset_is_taken_in_the_servers_time_zone(
    reader: APIClient, settings: Any
) -> None:
    settings.TIME_ZONE = "Europe/Berlin"  # UTC+1 in March
    job = result_job("slot-001", created_at=MARCH_1)  # 11:15 in Berlin

    inside = reader.get(URL, {"since": "2025-03-01T11:15", "until": "2025-03-01T11:16"})
    outside = reader.get(URL, {"since": "2025-03-01T10:15", "until": "2025-03-01T10:16"})

    assert zip_names(body(inside)) == [expected_name(job)]
    assert_error(outside, 404, "no_results")


def test_a_vanished_file_is_left_out_and_the_archive_stays_valid(reader: APIClient) -> None:
    kept = result_job("slot-001", created_at=MARCH_1)
    gone = result_job("slot-001", created_at=MARCH_1 + timedelta(minutes=1))
    files.delete_quietly(gone.result_path)

    response = reader.get(URL, {"slot_id": "slot-001"})

    assert response.status_code == 200
    assert zip_contents(body(response)) == {expected_name(kept): files.read_bytes(kept.result_path)}


def test_the_download_is_logged_without_image_bytes(
    reader: APIClient, caplog: pytest.LogCaptureFixture
) -> None:
    data = noisy_bytes(5000, 9)
    result_job("slot-002", data=data, created_at=MARCH_1)
    result_job("slot-002", created_at=MARCH_1 + timedelta(minutes=1))

    with caplog.at_level(logging.INFO, logger="api.archives"):
        response = reader.get(URL, {"slot_id": "slot-002", "since": "2025-03-01T00:00:00Z"})
        body(response)

    [record] = [r for r in caplog.records if r.getMessage() == "results archive downloaded"]
    fields = record.__dict__
    assert fields["slot_id"] == "slot-002"
    assert fields["since"] == "2025-03-01T00:00:00+00:00" and fields["until"] is None
    assert (fields["file_count"], fields["skipped_count"], fields["complete"]) == (2, 0, True)
    assert fields["via"] == "api" and fields["actor"].startswith("admin")
    assert data[:64] not in repr(fields).encode()


def test_the_first_bytes_leave_before_the_later_files_are_read(reader: APIClient) -> None:
    """Served synchronously (WSGI): the archive is made while it is sent."""
    early = result_job("slot-001", data=noisy_bytes(1_500_000, 1), created_at=MARCH_1)
    late = result_job(
        "slot-001", data=noisy_bytes(1_500_000, 2), created_at=MARCH_1 + timedelta(minutes=1)
    )

    response = reader.get(URL)
    assert response.streaming
    content = iter(response.streaming_content)
    opening = next(content)
    files.delete_quietly(late.result_path)  # not read yet: it will be left out
    rest = b"".join(content)

    assert len(opening) < 1_500_000
    assert zip_contents(opening + rest) == {expected_name(early): noisy_bytes(1_500_000, 1)}


def test_served_asynchronously_the_archive_is_an_async_stream(db: None) -> None:
    """Under ASGI the content is an async iterator: no thread held, nothing collected first."""
    make_admin("async-reader", ["slots:read"])
    early = result_job("slot-001", data=noisy_bytes(1_500_000, 3), created_at=MARCH_1)
    middle = result_job(
        "slot-001", data=noisy_bytes(1_500_000, 4), created_at=MARCH_1 + timedelta(minutes=1)
    )
    late = result_job("slot-001", created_at=MARCH_1 + timedelta(minutes=2))
    token = APIClient().post(
        "/api/login", {"username": "async-reader", "password": ADMIN_PASSWORD}, format="json"
    )
    bearer = f"Bearer {token.json()['access_token']}"

    async def download() -> tuple[Any, bytes, bytes]:
        response = await AsyncClient().get(URL, headers={"Authorization": bearer})
        assert response.status_code == 200 and response.streaming
        assert response.is_async
        content = aiter(response.streaming_content)
        opening = await anext(content)
        files.delete_quietly(late.result_path)
        rest = b"".join([chunk async for chunk in content])
        return response, opening, rest

    response, opening, rest = async_to_sync(download)()

    assert response["Content-Type"] == "application/zip"
    assert len(opening) < 1_500_000
    assert zip_contents(opening + rest) == {
        expected_name(early): noisy_bytes(1_500_000, 3),
        expected_name(middle): noisy_bytes(1_500_000, 4),
    }


# --- errors --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2025-13-01T00:00"}, "until"),
        ({"since": "2025-03-02T00:00Z", "until": "2025-03-01T00:00Z"}, "until"),
        ({"since": "2025-03-01T00:00Z", "until": "2025-03-01T00:00Z"}, "until"),
        ({"slot_id": "x" * 33}, "slot_id"),
    ],
)
def test_bad_parameters_are_400_naming_the_parameter(
    reader: APIClient, query: dict[str, str], field: str
) -> None:
    result_job("slot-001")

    error = assert_error(reader.get(URL, query), 400, "invalid_parameter")

    assert field in error["details"], error


def test_an_unknown_slot_is_404(reader: APIClient) -> None:
    result_job("slot-001")

    error = assert_error(reader.get(URL, {"slot_id": "slot-999"}), 404, "slot_not_found")

    assert error["details"] == {"slot_id": "slot-999"}


def test_nothing_to_download_is_404_not_an_empty_file(reader: APIClient) -> None:
    failed_job("slot-001")
    expire_result(result_job("slot-001"))
    result_job("slot-002")

    error = assert_error(reader.get(URL, {"slot_id": "slot-001"}), 404, "no_results")

    assert "expired" in error["message"]


def test_a_token_is_needed(anonymous_api: APIClient) -> None:
    assert_error(anonymous_api.get(URL), 401, "not_authenticated")


def test_the_slots_read_permission_is_needed(api_client_with: Callable[..., APIClient]) -> None:
    result_job("slot-001")
    client = api_client_with("stats:read", "slots:write", "settings:read", "media:write")

    assert_error(client.get(URL), 403, "forbidden")


# --- through the real server ---------------------------------------------------------------------
def local_slot(slot_id: str) -> None:
    """The slot on the offline provider."""
    update_slot(
        slot_id=slot_id,
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "black_and_white"},
        is_active=True,
    )


def _token(stack: Stack, username: str) -> str:
    """A `slots:read` user's bearer token, from the running server's login."""
    make_admin(username, ["slots:read"])
    login = requests.post(
        f"{stack.base_url}/api/login",
        json={"username": username, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    assert login.status_code == 200, login.text
    return str(login.json()["access_token"])


# The module's plain django_db mark would keep the seeded slots from being restored between
# tests on committed data: these say what they need.
LIVE = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@LIVE
def test_booth_results_download_as_one_zip_from_the_running_server(
    stack: Stack, ingest_password: str
) -> None:
    for slot_id in ("slot-001", "slot-002"):
        local_slot(slot_id)
    made: dict[str, bytes] = {}
    for slot_id, width in (("slot-001", 320), ("slot-001", 360), ("slot-002", 400)):
        answer = requests.post(
            f"{stack.base_url}/ingest/{slot_id}",
            data={"password": ingest_password},
            files={"fileToUpload": ("IMG.JPG", make_photo(width=width), "image/jpeg")},
            timeout=90,
        )
        assert answer.status_code == 200, stack.logs()
        made[answer.headers["X-Job-Id"]] = answer.content
    token = _token(stack, "operator")

    with requests.get(
        f"{stack.base_url}{URL}",
        params={"slot_id": "slot-001"},
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=60,
    ) as download:
        assert download.status_code == 200, stack.logs()
        assert "Content-Length" not in download.headers  # sent as it is made
        assert download.headers["Content-Type"] == "application/zip"
        data = b"".join(download.iter_content(chunk_size=64 * 1024))

    slot_jobs = Job.objects.filter(slot_id="slot-001", id__in=list(made)).order_by("created_at")
    assert zip_contents(data) == {expected_name(job): made[str(job.id)] for job in slot_jobs}
    assert slot_jobs.count() == 2
    wait_until(lambda: "results archive downloaded" in stack.web.process.output(), timeout=10)


@LIVE
def test_the_running_server_sends_the_first_bytes_before_it_reads_the_last_file(
    stack_factory: Callable[..., Stack],
) -> None:
    """Under uvicorn the archive is sent as it is made, not collected first: after the first
    bytes arrived, a file far behind them can still be removed and is then left out."""
    size = 3 * 1024 * 1024
    jobs = [
        result_job("slot-001", data=noisy_bytes(size, n), created_at=MARCH_1 + timedelta(minutes=n))
        for n in range(5)
    ]
    stack = stack_factory()  # after the jobs are made: its workers must not take them
    token = _token(stack, "streamer")
    connection = http.client.HTTPConnection(urlsplit(stack.base_url).netloc, timeout=60)
    # A small receive window, so the kernel cannot take in megabytes ahead of the reader.
    connection.sock = socket.create_connection(
        (urlsplit(stack.base_url).hostname, urlsplit(stack.base_url).port), timeout=60
    )
    connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    try:
        connection.request("GET", URL, headers={"Authorization": f"Bearer {token}"})
        answer = connection.getresponse()
        assert answer.status == 200, stack.logs()
        assert answer.getheader("Transfer-Encoding") == "chunked"
        opening = answer.read(64 * 1024)
        # The last file starts 12 MiB into the archive: far past anything buffered so far.
        files.delete_quietly(jobs[-1].result_path)
        data = opening + answer.read()
    finally:
        connection.close()

    assert zip_contents(data) == {
        expected_name(job): noisy_bytes(size, n) for n, job in enumerate(jobs[:-1])
    }
