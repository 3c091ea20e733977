"""What the real processes write to their logs: JSON lines, correlated, and nothing secret.

uvicorn and run_workers are started with known secrets (the ingest password, a Gemini key in the
environment) at LOG_LEVEL=DEBUG, the most talkative level an operator can choose. Then the things
that handle secrets and images happen: uploads (accepted, and refused for a wrong password), a
Gemini job against the fake API, an admin login (failed, then successful) and a settings change
rotating the ingest password and storing a new provider key, and a job using both. Afterwards
every line either process wrote must be a JSON object, no secret and no recognizable piece of an
image may appear in them, and the correlation id sent with an upload must appear in the web's
lines and in the worker's lines for that upload's job, provider call included.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
from django.conf import settings
from django.contrib.auth import get_user_model

from accounts.models import SCOPES, AuditEvent
from accounts.services import grant
from ingest.models import IngestSettings
from ingest.services import set_ingest_password, update_slot
from jobqueue.models import ProcessingLog
from providers.models import ProviderKey
from tests.conftest import Stack
from tests.support.fakes.gemini import FakeGemini
from tests.support.images import make_photo
from tests.support.stack import wait_until

INGEST_PASSWORD = "leak-test-booth-pass-5531"
WRONG_INGEST_PASSWORD = "leak-test-wrong-pass-8872"
NEW_INGEST_PASSWORD = "leak-test-rotated-pass-2290"
ENV_GEMINI_KEY = "AIzaLeakTest-environment-key-61d0"
STORED_GEMINI_KEY = "AIzaLeakTest-stored-key-93c7"
ADMIN = "leak-admin"
ADMIN_PASSWORD = "leak-test-admin-pass-4417"
WRONG_ADMIN_PASSWORD = "leak-test-wrong-admin-pass-7050"

LOCAL_REQUEST_ID = "booth-7.local_0001"
GEMINI_REQUEST_ID = "booth-7.gemini_0002"
# The run_workers command's start-up banner is written to standard output, not logged.
BANNER_PREFIX = "workers running: "


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini(expected_key=ENV_GEMINI_KEY)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def post_photo(
    stack: Stack, slot_id: str, photo: bytes, password: str, request_id: str | None = None
) -> requests.Response:
    return requests.post(
        f"{stack.base_url}/ingest/{slot_id}",
        data={"password": password, "id": "0123456789-0001"},
        files={"fileToUpload": ("IMG_0001.JPG", photo, "image/jpeg")},
        headers={"X-Request-Id": request_id} if request_id else {},
        timeout=90,
    )


def json_lines(output: str, *, process: str) -> list[dict[str, Any]]:
    """Every line as a JSON object; fails on any line that is not one."""
    entries = []
    for number, line in enumerate(output.splitlines(), 1):
        if not line.strip() or line.startswith(BANNER_PREFIX):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            pytest.fail(f"{process} log line {number} is not JSON: {line[:300]!r}")
        assert isinstance(entry, dict), line
        assert {"timestamp", "level", "logger", "message"} <= set(entry), line
        assert entry["timestamp"].endswith("Z"), line
        entries.append(entry)
    return entries


def image_fingerprints(image: bytes) -> list[bytes]:
    """Forms a piece of an image would take in a log: raw, base64, hex, escaped."""
    head = image[:64]
    return [
        head[:32],
        base64.b64encode(head),
        base64.b64encode(image[16:64]),  # base64 of a run that does not start the file
        base64.urlsafe_b64encode(head),
        head.hex().encode(),
        repr(head[:24])[2:-1].encode(),
        json.dumps(head[:24].decode("latin-1"))[1:-1].encode(),
    ]


def lines_with(entries: list[dict[str, Any]], **fields: Any) -> list[dict[str, Any]]:
    return [e for e in entries if all(e.get(k) == v for k, v in fields.items())]


def test_logs_are_json_correlated_and_free_of_secrets_and_images(
    stack_factory: Callable[..., Stack], fake: FakeGemini
) -> None:
    set_ingest_password(password=INGEST_PASSWORD, changed_by="tests")
    update_slot(
        slot_id="slot-002",
        provider_id="gemini",
        operation_id="image_edit",
        settings={"prompt": "Make it a watercolour painting"},
        is_active=True,
    )
    admin = get_user_model().objects.create_user(
        username=ADMIN, password=ADMIN_PASSWORD, is_staff=True
    )
    grant(admin, SCOPES)
    stack = stack_factory(
        GEMINI_BASE_URL=fake.base_url,
        GEMINI_API_KEY=ENV_GEMINI_KEY,
        LOG_LEVEL="DEBUG",
        LOG_FORMAT="json",
    )
    local_photo = make_photo(color=(120, 30, 90))
    gemini_photo = make_photo(color=(10, 160, 70))
    rotated_photo = make_photo(color=(70, 70, 200))

    # A photo through the local provider, with the booth's own correlation id.
    local = post_photo(stack, "slot-001", local_photo, INGEST_PASSWORD, LOCAL_REQUEST_ID)
    assert local.status_code == 200, stack.logs()
    assert local.headers["X-Request-Id"] == LOCAL_REQUEST_ID
    local_job = local.headers["X-Job-Id"]

    # A wrong password: refused, warned about and audited with the client's address.
    refused = post_photo(stack, "slot-001", local_photo, WRONG_INGEST_PASSWORD)
    assert refused.status_code == 401
    refused_id = refused.headers["X-Request-Id"]
    assert len(refused_id) == 32 and int(refused_id, 16) >= 0  # generated: a uuid4 in hex
    failure = AuditEvent.objects.get(kind=AuditEvent.Kind.INGEST_PASSWORD_FAILED)
    assert failure.client_address == "127.0.0.1"
    assert failure.details == {"slot_id": "slot-001", "code": "invalid_password"}

    # A Gemini job against the fake, with the key from the environment.
    gemini = post_photo(stack, "slot-002", gemini_photo, INGEST_PASSWORD, GEMINI_REQUEST_ID)
    assert gemini.status_code == 200, stack.logs()
    assert gemini.content == fake.result_png
    assert gemini.headers["X-Request-Id"] == GEMINI_REQUEST_ID
    gemini_job = gemini.headers["X-Job-Id"]
    received = ProcessingLog.objects.get(job_id=gemini_job, event=ProcessingLog.Event.RECEIVED)
    assert received.details["request_id"] == GEMINI_REQUEST_ID

    # The admin API: a failed login, a login, then a new ingest password and Gemini key.
    api = f"{stack.base_url}/api"
    wrong_login = requests.post(
        f"{api}/login", json={"username": ADMIN, "password": WRONG_ADMIN_PASSWORD}, timeout=30
    )
    assert wrong_login.status_code == 401
    login = requests.post(
        f"{api}/login", json={"username": ADMIN, "password": ADMIN_PASSWORD}, timeout=30
    )
    assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    change = requests.put(
        f"{api}/settings",
        json={
            "dslr_password": {"value": NEW_INGEST_PASSWORD},
            "provider_keys": {"gemini": {"api_key": STORED_GEMINI_KEY}},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert change.status_code == 200, change.text

    # Both new secrets in use: the rotated password, the stored (encrypted) key.
    fake.expected_key = STORED_GEMINI_KEY
    rotated = post_photo(stack, "slot-002", rotated_photo, NEW_INGEST_PASSWORD)
    assert rotated.status_code == 200, stack.logs()
    assert [r.headers["x-goog-api-key"] for r in fake.generate_calls()] == [
        ENV_GEMINI_KEY,
        STORED_GEMINI_KEY,
    ]

    # Unusable correlation ids are replaced, and probes answer with one too.
    for bad in ("has spaces", "x" * 129, "semi;colon", "ünïcode"):
        answer = requests.get(
            f"{stack.base_url}/healthz", headers={"X-Request-Id": bad.encode()}, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["X-Request-Id"] != bad
        assert len(answer.headers["X-Request-Id"]) == 32

    # The worker logs a job's end right after committing it: wait for the last one's line.
    rotated_job = rotated.headers["X-Job-Id"]
    wait_until(
        lambda: (
            f'"job_id": "{rotated_job}"' in stack.workers.output()
            and "job finalized" in stack.workers.output()
        ),
        timeout=10,
    )
    web = json_lines(stack.web.process.output(), process="web")
    workers = json_lines(stack.workers.output(), process="workers")

    # --- nothing secret, no image -----------------------------------------------------------
    raw = stack.web.process.log_path.read_bytes() + stack.workers.log_path.read_bytes()
    secrets = [
        INGEST_PASSWORD,
        WRONG_INGEST_PASSWORD,
        NEW_INGEST_PASSWORD,
        ENV_GEMINI_KEY,
        STORED_GEMINI_KEY,
        ADMIN_PASSWORD,
        WRONG_ADMIN_PASSWORD,
        token,
        settings.SECRET_KEY,
        IngestSettings.load().ingest_password_hash,
        ProviderKey.objects.get(provider_id="gemini").encrypted_key,
    ]
    for secret in secrets:
        assert secret.encode() not in raw, f"a secret appears in the logs: {secret[:6]}…"
    results = [local.content, fake.result_png]
    for image in [local_photo, gemini_photo, rotated_photo, *results]:
        for fingerprint in image_fingerprints(image):
            assert fingerprint not in raw, f"image bytes appear in the logs: {fingerprint[:20]!r}"

    # --- one correlation id from the booth's request to the provider call ---------------------
    assert all(entry.get("request_id") for entry in lines_with(web, logger="photobooth.requests"))
    [local_request] = lines_with(web, message="request finished", request_id=LOCAL_REQUEST_ID)
    assert local_request["job_id"] == local_job and local_request["status"] == 200
    assert local_request["path"] == "/ingest/slot-001"
    assert lines_with(web, message="job queued", request_id=LOCAL_REQUEST_ID, job_id=local_job)
    for message in ("job picked up", "job finalized"):
        assert lines_with(workers, message=message, request_id=LOCAL_REQUEST_ID, job_id=local_job)

    [gemini_request] = lines_with(web, message="request finished", request_id=GEMINI_REQUEST_ID)
    assert gemini_request["job_id"] == gemini_job
    gemini_lines = lines_with(workers, request_id=GEMINI_REQUEST_ID)
    assert {"job picked up", "provider http call", "provider call succeeded", "job finalized"} <= {
        entry["message"] for entry in gemini_lines
    }
    [http_call] = [e for e in gemini_lines if e["message"] == "provider http call"]
    assert http_call["status"] == 200 and http_call["path"].endswith(":generateContent")
    [finalized] = lines_with(workers, message="job finalized", job_id=gemini_job)
    assert finalized["outcome"] == "success" and finalized["request_id"] == GEMINI_REQUEST_ID
    # Lines about other requests never carry these ids.
    assert not lines_with(workers, request_id=GEMINI_REQUEST_ID, job_id=local_job)

    # --- the refused upload: a warning under its own id, without the password -----------------
    [warning] = lines_with(web, message="ingest password refused", request_id=refused_id)
    assert warning["level"] == "WARNING" and warning["client_address"] == "127.0.0.1"
    assert warning["code"] == "invalid_password" and warning["slot_id"] == "slot-001"
