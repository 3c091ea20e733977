"""The upload size limit and `Expect: 100-continue`, byte for byte, against the real server.

Raw sockets, so that the test decides exactly which bytes are sent and when: a booth that
announces a huge body must be refused before it sends it, one that announces a normal photo must
get its `100 Continue`, and a chunked body that never ends must be cut off at the limit.
"""

from __future__ import annotations

import json
import os
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import pytest
import requests

from jobqueue.models import Job
from tests.conftest import Stack
from tests.support.images import open_image
from tests.support.stack import WebServer, start_web

SOCKET_TIMEOUT = 10.0
MAX_UPLOAD_BYTES = 100_000
BOUNDARY = "----DSLRRemoteProBoundary7MA4YWxk"


@dataclass(frozen=True)
class RawResponse:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, object]:
        return dict(json.loads(self.body))


def read_response(reader: BinaryIO) -> RawResponse:
    """One HTTP/1.1 response (interim or final) read from the socket, every read bounded."""
    status_line = reader.readline(1024)
    assert status_line, "the server closed the connection without answering"
    version, status, reason = status_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    assert version == "HTTP/1.1", status_line
    headers: dict[str, str] = {}
    while (line := reader.readline(8192)) not in (b"\r\n", b"\n", b""):
        name, value = line.decode("latin-1").split(":", 1)
        headers[name.strip().lower()] = value.strip()
    status_code = int(status)
    if status_code < 200:
        return RawResponse(status_code, reason, headers, b"")
    if "content-length" in headers:
        body = reader.read(int(headers["content-length"]))
    else:
        assert headers.get("connection") == "close", headers
        body = reader.read()
    return RawResponse(status_code, reason, headers, body)


def request_head(host: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def multipart_prefix(password: str) -> bytes:
    """The form up to the start of the photo's bytes, as DSLR Remote Pro sends it."""
    return (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="password"\r\n\r\n'
        f"{password}\r\n"
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="fileToUpload"; filename="IMG_0003.JPG"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()


def multipart_body(password: str, photo: bytes) -> bytes:
    return multipart_prefix(password) + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


def stored_files(root: Path) -> list[str]:
    return [os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names]


def assert_too_large(response: RawResponse, limit: int) -> None:
    assert response.status == 413, response
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    error = response.json()["error"]
    assert isinstance(error, dict)
    assert error["code"] == "payload_too_large"
    assert error["message"]
    assert error["details"] == {"max_bytes": limit}


def guard_limit(max_upload_bytes: int) -> int:
    """The body may exceed the photo limit by the multipart overhead the product allows."""
    from django.conf import settings

    return max_upload_bytes + int(settings.INGEST_MAX_FORM_OVERHEAD_BYTES)


@pytest.fixture
def small_limit_web(live_db: None, tmp_path: Path) -> Iterator[WebServer]:
    """The real web server (no workers) with a 100 kB photo limit."""
    web = start_web(tmp_path, INGEST_MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES))
    try:
        yield web
    finally:
        web.process.stop()


def connect(base_url: str) -> tuple[socket.socket, str]:
    parts = urlsplit(base_url)
    assert parts.hostname and parts.port
    sock = socket.create_connection((parts.hostname, parts.port), timeout=SOCKET_TIMEOUT)
    sock.settimeout(SOCKET_TIMEOUT)
    return sock, parts.netloc


def test_huge_declared_upload_is_refused_before_the_body_is_sent(
    small_limit_web: WebServer, media_root: Path
) -> None:
    sock, host = connect(small_limit_web.base_url)
    with sock, sock.makefile("rb") as reader:
        sock.sendall(
            request_head(
                host,
                "/ingest/slot-001",
                {
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    "Content-Length": "2000000000",
                    "Expect": "100-continue",
                },
            )
        )
        started = time.monotonic()
        # No body is sent: the very first answer must be the refusal, not "100 Continue".
        response = read_response(reader)
        elapsed = time.monotonic() - started

    assert_too_large(response, MAX_UPLOAD_BYTES)
    assert elapsed < 10  # not after waiting for the body (INGEST_BODY_TIMEOUT_SECONDS: 60 s)
    assert not Job.objects.exists()
    assert stored_files(media_root) == []


def test_booth_waiting_for_100_continue_gets_it_then_the_processed_photo(
    stack: Stack, ingest_password: str, photo_jpeg: bytes
) -> None:
    body = multipart_body(ingest_password, photo_jpeg)
    sock, host = connect(stack.base_url)
    with sock, sock.makefile("rb") as reader:
        sock.sendall(
            request_head(
                host,
                "/ingest/slot-001",
                {
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    "Content-Length": str(len(body)),
                    "Expect": "100-continue",
                    "Connection": "close",
                },
            )
        )
        interim = read_response(reader)
        assert (interim.status, interim.reason) == (100, "Continue"), stack.logs()

        sock.sendall(body)
        final = read_response(reader)

    assert final.status == 200, (final, stack.logs())
    assert final.headers["content-type"] == "image/jpeg"
    assert final.headers["cache-control"] == "no-store"
    assert open_image(final.body).size == open_image(photo_jpeg).size
    assert Job.objects.get(id=final.headers["x-job-id"]).succeeded


def test_endless_chunked_upload_is_cut_off_at_the_limit_and_the_server_stays_healthy(
    small_limit_web: WebServer, ingest_password: str, photo_jpeg: bytes, media_root: Path
) -> None:
    limit = guard_limit(MAX_UPLOAD_BYTES)
    # A real photo's start, then more bytes than the limit allows, in chunks that never end.
    stream = multipart_prefix(ingest_password) + photo_jpeg + os.urandom(limit)
    chunk_size = 16 * 1024
    sock, host = connect(small_limit_web.base_url)
    with sock, sock.makefile("rb") as reader:
        sock.sendall(
            request_head(
                host,
                "/ingest/slot-001",
                {
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    "Transfer-Encoding": "chunked",
                },
            )
        )
        sent = 0
        answered = False
        while sent < len(stream) and not answered:
            chunk = stream[sent : sent + chunk_size]
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            answered = bool(select.select([sock], [], [], 0)[0])
        assert sent > limit or answered
        response = read_response(reader)

    assert_too_large(response, MAX_UPLOAD_BYTES)
    assert requests.get(f"{small_limit_web.base_url}/healthz", timeout=5).status_code == 200
    assert not Job.objects.exists()
    assert stored_files(media_root) == []


def test_a_stalled_upload_gets_408_and_its_connection_closed(
    live_db: None, tmp_path: Path, ingest_password: str, photo_jpeg: bytes, media_root: Path
) -> None:
    web = start_web(tmp_path, INGEST_BODY_TIMEOUT_SECONDS="1")
    try:
        body = multipart_body(ingest_password, photo_jpeg)
        sock, host = connect(web.base_url)
        with sock, sock.makefile("rb") as reader:
            sock.sendall(
                request_head(
                    host,
                    "/ingest/slot-001",
                    {
                        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                        "Content-Length": str(len(body)),
                    },
                )
            )
            sock.sendall(body[:100])  # ...and then nothing more (a stalled or slow-loris client)
            started = time.monotonic()
            response = read_response(reader)
            waited = time.monotonic() - started

        assert response.status == 408, response
        error = response.json()["error"]
        assert isinstance(error, dict) and error["code"] == "request_timeout"
        assert response.headers["connection"] == "close"
        assert waited < SOCKET_TIMEOUT
        assert requests.get(f"{web.base_url}/healthz", timeout=5).status_code == 200
        assert not Job.objects.exists()
        assert stored_files(media_root) == []
    finally:
        web.process.stop()
