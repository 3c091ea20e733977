"""Property-based test of the ingest form parsing: whatever multipart body arrives, the answer
is a documented status in the JSON error shape and a refused upload leaves nothing behind."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.models import IngestSettings
from jobqueue.models import Job, ProcessingLog
from tests.conftest import INGEST_PASSWORD
from tests.support.images import make_photo

URL = "/ingest/slot-001"
PHOTO = make_photo(width=64, height=48)
BOUNDARY = "pbTestBoundary7MA4YWxk"

payloads = st.one_of(
    st.just(PHOTO),
    st.binary(max_size=256),
    st.integers(min_value=1, max_value=len(PHOTO) - 1).map(lambda cut: PHOTO[:cut]),
    st.tuples(st.integers(min_value=2, max_value=len(PHOTO) - 1), st.integers(0, 255)).map(
        lambda flip: PHOTO[: flip[0]] + bytes([flip[1]]) + PHOTO[flip[0] + 1 :]
    ),
    st.just(b""),
    st.just(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64),
)
names = st.one_of(
    st.sampled_from(["password", "fileToUpload", "hash", "id", "model"]),
    st.just("hash"),
    st.text(max_size=12),
    st.binary(min_size=1, max_size=8).map(lambda raw: raw.decode("latin-1")),
)
filenames = st.one_of(
    st.none(),
    st.sampled_from(["IMG_0001.JPG", "../../etc/passwd", "C:\\\\boot.ini", "a/b/c.jpg", ".."]),
    st.text(max_size=20),
)


@st.composite
def multipart_bodies(draw: Any) -> bytes:
    parts = []
    if draw(st.booleans()):
        password = draw(st.sampled_from([INGEST_PASSWORD, "wrong", ""]))
        parts.append((b'name="password"', None, password.encode()))
    for _ in range(draw(st.integers(0, 4))):
        name = draw(names).replace('"', "").encode("utf-8", "surrogatepass")
        filename = draw(filenames)
        disposition = b'name="' + name + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename.replace('"', "").encode() + b'"'
        parts.append(
            (disposition, draw(st.sampled_from(["image/jpeg", "text/plain"])), draw(payloads))
        )
    if draw(st.booleans()):
        parts.append(
            (b'name="fileToUpload"; filename="IMG_0003.JPG"', "image/jpeg", draw(payloads))
        )
    body = b""
    for disposition, content_type, payload in parts:
        body += f"--{BOUNDARY}\r\n".encode() + b"Content-Disposition: form-data; " + disposition
        if content_type:
            body += f"\r\nContent-Type: {content_type}".encode()
        body += b"\r\n\r\n" + payload + b"\r\n"
    if draw(st.booleans()):
        body += f"--{BOUNDARY}--\r\n".encode()  # otherwise the body just stops
    return body


def leftover_files(root: Path) -> list[str]:
    return [os.path.join(folder, n) for folder, _, files in os.walk(root) for n in files]


@given(body=multipart_bodies())
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_any_multipart_body_gets_a_documented_answer(
    body: bytes, live_db: None, ingest_password: str, media_root: Path, settings: Any
) -> None:
    settings.INGEST_MAX_PASSWORD_FAILURES_PER_ADDRESS = 10**6  # wrong passwords are generated
    # An accepted photo waits for a worker that is not running: bound that wait to a second.
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=1)

    response = Client().generic(
        "POST", URL, body, content_type=f"multipart/form-data; boundary={BOUNDARY}"
    )

    assert response.status_code in (400, 401, 415, 504), response.content[:300]
    assert response["Content-Type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"}
    if response.status_code == 504:
        Job.objects.all().delete()  # accepted (and timed out): the next example starts clean
        for path in leftover_files(media_root):
            os.remove(path)
    else:
        assert not Job.objects.exists()
        assert not ProcessingLog.objects.exists()
        assert leftover_files(media_root) == []
