"""Structured logs: the JSON line format, the correlation id, and the events the queue logs."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, RequestFactory
from django.utils import timezone

from accounts.models import AuditEvent
from ingest.models import IngestSettings
from jobqueue import files, services
from jobqueue.cleanup import run_cleanup
from jobqueue.models import Job, ProcessingLog
from jobqueue.worker import RetryPolicy, Worker, WorkerConfig, process_job
from photobooth.logging_config import JsonFormatter, PlainFormatter, logging_config
from photobooth.request_id import (
    RequestIdMiddleware,
    accepted_request_id,
    current_request_id,
    request_id_context,
)
from tests.support.images import make_photo

JPEG_HEAD = make_photo(width=32)[:64]


class JsonLines(logging.Handler):
    """Formats each record as it is emitted (in the emitting thread and context)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def with_message(self, message: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line["message"] == message]


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def record(
    message: str = "hello", *, levelno: int = logging.INFO, **extra: Any
) -> logging.LogRecord:
    logger = logging.getLogger("tests.logging")
    return logger.makeRecord(logger.name, levelno, __file__, 1, message, (), None, extra=extra)


def as_json(entry: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(entry)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


# --- the JSON line -------------------------------------------------------------------------------
def test_a_line_has_time_level_logger_message_and_every_extra_field() -> None:
    entry = record("job queued", job_id="abc", slot_id="slot-001", count=3, ok=True, ratio=0.5)
    line = as_json(entry)

    assert line == {
        "timestamp": line["timestamp"],
        "level": "INFO",
        "logger": "tests.logging",
        "message": "job queued",
        "job_id": "abc",
        "slot_id": "slot-001",
        "count": 3,
        "ok": True,
        "ratio": 0.5,
    }
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert line["timestamp"].endswith("Z") and stamp.utcoffset() == timedelta(0)
    assert abs(stamp.timestamp() - entry.created) < 0.001


def test_the_message_is_formatted_with_its_arguments() -> None:
    logger = logging.getLogger("tests.logging")
    entry = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "%s of %d", ("3", 4), None)
    assert as_json(entry)["message"] == "3 of 4"
    broken = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "%d", ("x",), None)
    assert as_json(broken)["message"] == "%d (unformattable arguments)"


def test_values_that_are_not_json_are_described_never_dumped() -> None:
    class Holder:
        def __repr__(self) -> str:
            return f"Holder(key='sk-secret', photo={JPEG_HEAD!r})"

        __str__ = __repr__

    request = RequestFactory().post("/ingest/slot-001?password=x", {"password": "hunter2"})
    line = as_json(
        record(
            photo=JPEG_HEAD,
            chunk=bytearray(b"abc"),
            holder=Holder(),
            when=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
            took=timedelta(milliseconds=1500),
            job=uuid.UUID(int=1),
            amount=Decimal("1.5"),
            folder=Path("/tmp/x"),
            nested={"ids": {1, 2}, 3: (JPEG_HEAD,)},
            request=request,
            error=ValueError("bad value"),
            huge=float("inf"),
        )
    )

    assert line["photo"] == "<64 bytes>"
    assert line["chunk"] == "<3 bytes>"
    assert line["holder"] == "<Holder>"
    assert line["when"] == "2025-01-02T03:04:05+00:00"
    assert line["took"] == 1.5
    assert line["job"] == "00000000-0000-0000-0000-000000000001"
    assert line["amount"] == "1.5"
    assert line["folder"] == "/tmp/x"
    assert sorted(line["nested"]["ids"]) == [1, 2]
    assert line["nested"]["3"] == ["<64 bytes>"]
    # Django passes the request with its warnings: method and path only, no query, no body.
    assert line["request"] == "POST /ingest/slot-001"
    assert line["error"] == "ValueError: bad value"
    assert line["huge"] == "inf"
    text = JsonFormatter().format(record(holder=Holder(), request=request))
    assert "sk-secret" not in text and "hunter2" not in text and "password" not in text


def test_an_exception_is_one_exc_field_on_the_same_line() -> None:
    logger = logging.getLogger("tests.logging")
    try:
        raise RuntimeError("provider exploded")
    except RuntimeError:
        entry = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "job crashed", (), sys.exc_info()
        )
    line = as_json(entry)
    assert line["message"] == "job crashed"
    assert line["exc"].startswith("Traceback (most recent call last):")
    assert line["exc"].endswith("RuntimeError: provider exploded")


def test_extra_fields_cannot_overwrite_the_line_s_own_fields() -> None:
    line = as_json(record(level="forged", timestamp="forged", logger="forged", exc="forged"))
    assert line["level"] == "INFO" and line["logger"] == "tests.logging"
    assert line["timestamp"] != "forged" and "exc" not in line
    assert line["extra_level"] == line["extra_timestamp"] == "forged"
    assert line["extra_logger"] == line["extra_exc"] == "forged"
    with request_id_context("real-id"):
        line = as_json(record(request_id="forged"))
    assert line["request_id"] == "real-id" and line["extra_request_id"] == "forged"


def test_lines_written_in_a_request_context_carry_its_id() -> None:
    assert "request_id" not in as_json(record())
    with request_id_context("booth-7.0001"):
        assert current_request_id() == "booth-7.0001"
        assert as_json(record())["request_id"] == "booth-7.0001"
        with request_id_context(None):
            assert "request_id" not in as_json(record())
    assert current_request_id() is None


def test_plain_lines_are_readable_and_still_carry_the_fields() -> None:
    with request_id_context("abc"):
        text = PlainFormatter().format(record("job queued", job_id="j-1", photo=JPEG_HEAD))
    assert " INFO tests.logging job queued " in text
    assert 'request_id="abc"' in text and 'job_id="j-1"' in text
    assert 'photo="<64 bytes>"' in text


# --- configuration -------------------------------------------------------------------------------
def test_json_is_the_default_and_plain_the_default_in_debug() -> None:
    assert logging_config(environ={})["handlers"]["console"]["formatter"] == "json"
    assert logging_config(debug=True, environ={})["handlers"]["console"]["formatter"] == "plain"
    chosen = logging_config(debug=True, environ={"LOG_FORMAT": "JSON", "LOG_LEVEL": "warning"})
    assert chosen["handlers"]["console"]["formatter"] == "json"
    assert chosen["root"]["level"] == "WARNING"
    assert logging_config(environ={"LOG_FORMAT": "plain"})["handlers"]["console"]["formatter"] == (
        "plain"
    )


def test_unknown_formats_and_levels_are_refused() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(environ={"LOG_FORMAT": "xml"})
    with pytest.raises(ValueError, match="LOG_LEVEL"):
        logging_config(environ={"LOG_LEVEL": "LOUD"})


def test_queries_urls_and_pool_chatter_stay_out_whatever_the_level() -> None:
    loggers = logging_config(environ={"LOG_LEVEL": "DEBUG"})["loggers"]
    assert loggers["django.db.backends"]["level"] == "INFO"
    assert loggers["urllib3"]["level"] == "INFO"
    assert loggers["psycopg.pool"]["level"] == "WARNING"
    # Django's and uvicorn's own handlers give way to the JSON one; uvicorn's access log is ours.
    assert loggers["django"] == {"handlers": [], "propagate": True}
    assert loggers["uvicorn"] == {"handlers": [], "propagate": True}
    assert loggers["uvicorn.access"]["level"] == "WARNING"


# --- the correlation id --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("candidate", "accepted"),
    [
        ("booth-7.0001_a", "booth-7.0001_a"),
        (b"abc", "abc"),
        ("x" * 128, "x" * 128),
        ("x" * 129, None),
        ("", None),
        ("has space", None),
        ("semi;colon", None),
        ("new\nline", None),
        ("ünïcode".encode(), None),
        (None, None),
    ],
)
def test_which_request_ids_are_accepted(
    candidate: str | bytes | None, accepted: str | None
) -> None:
    assert accepted_request_id(candidate) == accepted


def run_asgi(
    app: Any, path: str = "/api/slots", headers: list[tuple[bytes, bytes]] | None = None
) -> list[dict[str, Any]]:
    """Send one HTTP request through `app`; returns the messages it sent."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET",
        "path": path,
        "query_string": b"token=secret",
        "headers": headers or [],
        "client": ("10.0.0.7", 50000),
    }
    asyncio.run(app(scope, receive, send))
    return sent


def answering(
    status: int = 200, headers: list[tuple[bytes, bytes]] | None = None
) -> tuple[Any, list[str | None]]:
    """An ASGI app answering `status`, noting the correlation id it ran under."""
    seen: list[str | None] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(current_request_id())
        await send({"type": "http.response.start", "status": status, "headers": headers or []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app, seen


def response_headers(sent: list[dict[str, Any]]) -> dict[bytes, list[bytes]]:
    found: dict[bytes, list[bytes]] = {}
    for name, value in sent[0]["headers"]:
        found.setdefault(name, []).append(value)
    return found


def test_a_valid_client_id_is_kept_used_and_returned(json_lines: JsonLines) -> None:
    app, seen = answering(headers=[(b"x-job-id", b"job-1"), (b"X-Request-Id", b"app-set")])

    sent = run_asgi(RequestIdMiddleware(app), headers=[(b"x-request-id", b"booth-7.0001")])

    assert seen == ["booth-7.0001"]
    assert response_headers(sent)[b"x-request-id"] == [b"booth-7.0001"]
    assert b"X-Request-Id" not in response_headers(sent)
    assert current_request_id() is None  # not leaked past the request
    [line] = json_lines.with_message("request finished")
    assert line == {
        "timestamp": line["timestamp"],
        "level": "INFO",
        "logger": "photobooth.requests",
        "message": "request finished",
        "request_id": "booth-7.0001",
        "method": "GET",
        "path": "/api/slots",  # never the query string
        "status": 200,
        "duration_ms": line["duration_ms"],
        "job_id": "job-1",
        "client_address": "10.0.0.7",
    }


def test_an_unusable_or_missing_client_id_is_replaced_by_a_new_one() -> None:
    for headers in ([(b"x-request-id", b"bad id; drop table")], []):
        app, seen = answering()
        sent = run_asgi(RequestIdMiddleware(app), headers=headers)
        [returned] = response_headers(sent)[b"x-request-id"]
        assert seen == [returned.decode()]
        assert len(returned) == 32 and int(returned, 16) >= 0


def test_probes_that_succeed_are_logged_at_debug_only(json_lines: JsonLines) -> None:
    run_asgi(RequestIdMiddleware(answering()[0]), path="/readyz")
    run_asgi(RequestIdMiddleware(answering(503)[0]), path="/readyz")
    assert [line["level"] for line in json_lines.with_message("request finished")] == [
        "DEBUG",
        "INFO",
    ]


def test_other_connections_pass_through_untouched() -> None:
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        return None

    asyncio.run(RequestIdMiddleware(app)({"type": "lifespan"}, nothing, ignore))
    assert calls == ["lifespan"]


# --- the queue's events --------------------------------------------------------------------------
def enqueue(operation: str, settings: dict[str, Any]) -> Job:
    # A photo of its own: the testing provider's `flaky` counts calls per photo content.
    red, green, blue = uuid.uuid4().bytes[:3]
    photo = make_photo(width=64, color=(red, green, blue))
    stored = files.store_bytes(
        kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=photo
    )
    return services.enqueue_job(
        configuration=services.JobConfiguration(
            slot_id="slot-005",
            provider_id="testing",
            operation_id=operation,
            settings=settings,
            template_refs={},
        ),
        payload=services.StoredPayload(
            path=stored.path, mime="image/jpeg", size=stored.size, sha256=stored.sha256
        ),
        metadata={},
        received_at=timezone.now(),
        sync_response=timedelta(seconds=48),
        result_retention=timedelta(hours=1),
        received_details={"mime": "image/jpeg"},
    )


def test_a_job_keeps_its_request_s_id_and_the_worker_logs_under_it(
    live_db: None, json_lines: JsonLines
) -> None:
    # live_db: the worker hands its database connection back after each job, as in production.
    with request_id_context("booth-7.0042"):
        job = enqueue("flaky", {"failures": 1})
    received = job.logs.get(event=ProcessingLog.Event.RECEIVED)
    assert received.details == {"mime": "image/jpeg", "request_id": "booth-7.0042"}
    worker = Worker(
        WorkerConfig(concurrency=1, retry=RetryPolicy(max_retries=2, backoff_seconds=0.01)),
        worker_id="w-test:1",
    )
    [acquired] = services.acquire_jobs(worker_id=worker.worker_id, limit=1)

    worker._process_safely(acquired)

    assert current_request_id() is None
    [queued] = json_lines.with_message("job queued")
    [picked] = json_lines.with_message("job picked up")
    [retry] = json_lines.with_message("provider call failed, retrying")
    [success] = json_lines.with_message("provider call succeeded")
    [finalized] = json_lines.with_message("job finalized")
    for line in (queued, picked, retry, success, finalized):
        assert line["request_id"] == "booth-7.0042" and line["job_id"] == str(job.id)
    assert picked["worker_id"] == "w-test:1" and picked["attempt"] == 1
    assert retry["level"] == "WARNING" and retry["retry"] == 1 and retry["code"]
    assert success["level"] == "INFO" and success["retries"] == 1
    assert finalized["outcome"] == "success" and finalized["provider"] == "testing"


@pytest.mark.django_db
def test_failures_timeouts_releases_and_cleanups_are_logged(json_lines: JsonLines) -> None:
    failing = enqueue("fail", {})
    [acquired] = services.acquire_jobs(worker_id="w:1", limit=1)
    process_job(acquired)
    [failed] = json_lines.with_message("provider call failed")
    assert failed["level"] == "WARNING" and failed["job_id"] == str(failing.id)
    [finalized] = json_lines.with_message("job finalized")
    assert finalized["outcome"] == "provider_error" and "request_id" not in finalized

    released = enqueue("sleep", {})
    [held] = services.acquire_jobs(worker_id="w:2", limit=1)
    assert services.release_jobs(jobs=[held]) == 1
    [line] = json_lines.with_message("job released to the queue")
    assert line["job_id"] == str(released.id) and line["worker_id"] == "w:2"

    Job.objects.filter(id=released.id).update(
        created_at=timezone.now() - timedelta(seconds=60),
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    run_cleanup(actor="reaper:test")
    timed_out = [
        line
        for line in json_lines.with_message("job finalized")
        if line["job_id"] == str(released.id)
    ]
    assert timed_out[0]["outcome"] == "timeout" and timed_out[0]["finalized_by"] == "reaper:test"
    [cleanup] = json_lines.with_message("cleanup")
    assert cleanup["jobs_timed_out"] == 1 and cleanup["actor"] == "reaper:test"


@pytest.mark.django_db
def test_a_refused_ingest_password_is_warned_about_and_audited_without_it(
    client: Client, ingest_password: str, json_lines: JsonLines
) -> None:
    wrong = "not-the-booth-password-9917"
    photo = SimpleUploadedFile("IMG_0001.JPG", make_photo(width=64), "image/jpeg")

    response = client.post(
        "/ingest/slot-003", {"password": wrong, "fileToUpload": photo}, REMOTE_ADDR="192.0.2.44"
    )
    missing = client.post(
        "/ingest/slot-003",
        {"fileToUpload": SimpleUploadedFile("a.jpg", make_photo(width=64), "image/jpeg")},
    )

    assert response.status_code == 401 and missing.status_code == 401
    [first, second] = AuditEvent.objects.filter(
        kind=AuditEvent.Kind.INGEST_PASSWORD_FAILED
    ).order_by("created_at", "id")
    assert first.client_address == "192.0.2.44"
    assert first.details == {"slot_id": "slot-003", "code": "invalid_password"}
    assert second.details == {"slot_id": "slot-003", "code": "missing_password"}
    warnings = json_lines.with_message("ingest password refused")
    assert [w["level"] for w in warnings] == ["WARNING", "WARNING"]
    assert warnings[0]["client_address"] == "192.0.2.44" and warnings[0]["slot_id"] == "slot-003"
    everything = json.dumps(json_lines.lines) + json.dumps([e.details for e in [first, second]])
    assert wrong not in everything and ingest_password not in everything


@pytest.mark.django_db
def test_a_server_without_ingest_password_is_not_an_audited_client_failure(
    client: Client, json_lines: JsonLines
) -> None:
    IngestSettings.objects.filter(id=1).update(ingest_password_hash="")
    photo = SimpleUploadedFile("IMG_0001.JPG", make_photo(width=64), "image/jpeg")

    response = client.post("/ingest/slot-001", {"password": "anything", "fileToUpload": photo})

    assert response.status_code == 401
    assert not AuditEvent.objects.filter(kind=AuditEvent.Kind.INGEST_PASSWORD_FAILED).exists()
    assert not json_lines.with_message("ingest password refused")
