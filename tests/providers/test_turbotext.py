"""The Turbotext adapter against a fake Turbotext: queue, poll, download, and every failure."""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone
from PIL import Image

from ingest.models import IngestSettings
from ingest.services import register_template, update_slot
from jobqueue import files
from jobqueue.models import FailureReason, Job, MediaObject, ProcessingLog
from providers.base import (
    HEIC,
    JPEG,
    PNG,
    WEBP,
    InputImage,
    ProviderDeadlineExceeded,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    SettingsInvalid,
)
from providers.registry import get_provider
from providers.secrets import set_api_key
from providers.turbotext import MAX_DOWNLOAD_ATTEMPTS, MAX_POLL_ERRORS, TurbotextProvider
from tests.conftest import Stack
from tests.ingest.test_end_to_end import post_photo
from tests.support.fakes.turbotext import FIRST_QUEUEID, FakeTurbotext, solid_png
from tests.support.images import make_photo
from tests.support.stack import free_port, wait_until

KEY = "tt-adapter-key-5f2a9c7e31d4"
TURBOTEXT = TurbotextProvider()
PHOTO = make_photo(width=320, height=240)
SCENE = make_photo(width=200, height=300, format="PNG", color=(20, 120, 60))
STYLE = solid_png((10, 10, 200), (32, 32))
QUEUEID = str(FIRST_QUEUEID)


@pytest.fixture
def fake() -> Iterator[FakeTurbotext]:
    server = FakeTurbotext(expected_key=KEY, reconnects=2)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def quick_polls(settings: Any) -> None:
    settings.TURBOTEXT_POLL_SECONDS = 0.02


@dataclass
class Outcome:
    """One adapter call: what it returned or raised, the events it recorded, how long it took."""

    result: ProviderResult | None = None
    error: ProviderError | None = None
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    elapsed: float = 0.0

    def named(self, name: str) -> list[dict[str, Any]]:
        return [details for event, details in self.events if event == name]


def run(
    fake: FakeTurbotext,
    operation_id: str,
    settings: Mapping[str, Any],
    *,
    templates: Mapping[str, InputImage] | None = None,
    seconds: float = 5.0,
    api_key: str = KEY,
    photo: InputImage | None = None,
    publish: Callable[[InputImage], str] | None | str = "fake",
) -> Outcome:
    outcome = Outcome()
    request = ProviderRequest(
        operation_id=operation_id,
        settings=settings,
        photo=photo or InputImage(data=PHOTO, mime=JPEG, name="photo"),
        templates=templates or {},
        deadline=timezone.now() + timedelta(seconds=seconds),
        publish_temporary=fake.publish if isinstance(publish, str) else publish,
        record_event=lambda name, details: outcome.events.append((name, dict(details))),
        base_url=fake.base_url,
        api_key=api_key,
    )
    started = time.monotonic()
    try:
        outcome.result = TURBOTEXT.run(request)
    except ProviderError as error:
        outcome.error = error
    outcome.elapsed = time.monotonic() - started
    return outcome


def scene_template() -> dict[str, InputImage]:
    return {"face_media_id": InputImage(data=SCENE, mime=PNG, name="face_media_id")}


def style_template() -> dict[str, InputImage]:
    return {"style_media_id": InputImage(data=STYLE, mime=PNG, name="style_media_id")}


# --- success -------------------------------------------------------------------------------------


def test_image_edit_queues_the_task_polls_it_and_downloads_the_result(fake: FakeTurbotext) -> None:
    outcome = run(
        fake,
        "image_edit",
        {
            "prompt": "Turn the guests into comic heroes",
            "strength": 35,
            "seed": 0,
            "scale": 7.5,
            "negative_prompt": "blurry, extra fingers",
        },
    )

    assert outcome.error is None
    assert outcome.result == ProviderResult(
        data=fake.result_png, mime=PNG, provider_job_reference=QUEUEID
    )
    [create] = fake.create_calls("generate_image2image")
    assert create.headers["authorization"] == f"Bearer {KEY}"
    assert create.headers["content-type"] == "application/x-www-form-urlencoded"
    assert create.form() == {
        "do": "create_queue",
        "url": f"{fake.base_url}/inputs/1",
        "content": "Turn the guests into comic heroes",
        "strength": "35",
        "seed": "0",
        "scale": "7.5",
        "negative_prompt": "blurry, extra fingers",
    }
    # Turbotext downloaded the photo from the published URL, byte for byte.
    [fetched] = fake.fetched
    assert (fetched.field, fetched.status, fetched.content_type) == ("url", 200, JPEG)
    assert fetched.body == PHOTO
    # Two "reconnect" answers, then the result: three polls of the same task.
    polls = fake.poll_calls("generate_image2image")
    assert [p.form() for p in polls] == [{"do": "get_result", "queueid": QUEUEID}] * 3
    assert {p.headers["authorization"] for p in polls} == {f"Bearer {KEY}"}
    # The result is fetched without our key: it may live on another host.
    [download] = fake.received("/uploads/")
    assert download.method == "GET" and download.path == f"/uploads/{QUEUEID}.png"
    assert "authorization" not in download.headers

    assert outcome.named("queued") == [{"queueid": QUEUEID, "method": "generate_image2image"}]
    assert outcome.named("polled") == [{"queueid": QUEUEID, "polls": 3, "outcome": "ready"}]
    paths = [(e["method"], e["path"], e["status"]) for e in outcome.named("http_call")]
    assert paths == [
        ("POST", "/api_ai/generate_image2image", 200),
        *[("POST", "/api_ai/generate_image2image", 200)] * 3,
        ("GET", f"/uploads/{QUEUEID}.png", 200),
    ]
    assert [name for name, _ in outcome.events if name != "http_call"] == ["queued", "polled"]


def test_optional_image_edit_fields_are_left_out_when_not_set(fake: FakeTurbotext) -> None:
    outcome = run(fake, "image_edit", {"prompt": "Sepia please"})

    assert outcome.result is not None
    [create] = fake.create_calls()
    assert create.form() == {
        "do": "create_queue",
        "url": f"{fake.base_url}/inputs/1",
        "content": "Sepia please",
    }


@pytest.mark.parametrize("prompt", ["", "In the style of a Disney poster"])
def test_style_transfer_sends_the_photo_as_target_and_the_template_as_style(
    fake: FakeTurbotext, prompt: str
) -> None:
    outcome = run(
        fake,
        "style_transfer",
        {"style_media_id": "3f0c-style", "prompt": prompt},
        templates=style_template(),
    )

    assert outcome.result is not None and outcome.result.data == fake.result_png
    [create] = fake.create_calls("mix_images")
    form = create.form()
    expected = {
        "do": "create_queue",
        "url_image_target": f"{fake.base_url}/inputs/1",
        "url": f"{fake.base_url}/inputs/2",
    }
    assert form == ({**expected, "content": prompt} if prompt else expected)
    [target] = fake.fetched_for("url_image_target")
    [style] = fake.fetched_for("url")
    assert (target.body, target.content_type) == (PHOTO, JPEG)
    assert (style.body, style.content_type) == (STYLE, PNG)
    assert len(fake.poll_calls("mix_images")) == 3


@pytest.mark.parametrize(("face_restore", "sent"), [(None, "1"), (True, "1"), (False, "0")])
def test_identity_transfer_puts_the_guests_face_into_the_template_scene(
    fake: FakeTurbotext, face_restore: bool | None, sent: str
) -> None:
    settings: dict[str, Any] = {"face_media_id": "9a7e-scene"}
    if face_restore is not None:
        settings["face_restore"] = face_restore
    outcome = run(fake, "identity_transfer", settings, templates=scene_template())

    assert outcome.result is not None and outcome.result.data == fake.result_png
    [create] = fake.create_calls("deepfake_photo")
    form = create.form()
    assert form["face_restore"] == sent
    # Turbotext replaces the face of the person at `url` with the face at `url_image_target`:
    # the template scene is `url`, the guest's photo supplies the face.
    [scene] = fake.fetched_for("url")
    [guest] = fake.fetched_for("url_image_target")
    assert scene.url == form["url"] and scene.body == SCENE
    assert guest.url == form["url_image_target"] and guest.body == PHOTO


@pytest.mark.parametrize(
    ("relative", "nested", "list_only"),
    [(True, False, False), (False, True, False), (True, True, False), (False, False, True)],
    ids=["relative", "in-data", "relative-in-data", "data-image-list"],
)
def test_every_shape_of_finished_answer_gives_the_image(
    fake: FakeTurbotext, relative: bool, nested: bool, list_only: bool
) -> None:
    fake.relative_url, fake.nest_in_data, fake.image_list_only = relative, nested, list_only
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.error is None
    assert outcome.result == ProviderResult(fake.result_png, PNG, QUEUEID)
    [download] = fake.received("/uploads/")
    assert download.path == f"/uploads/{QUEUEID}.png"


@pytest.mark.parametrize("content_type", ["application/octet-stream", "image/jpeg", ""])
def test_the_results_type_is_read_from_its_bytes(fake: FakeTurbotext, content_type: str) -> None:
    fake.result_content_type = content_type
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.result is not None and outcome.result.mime == PNG


def test_a_webp_result_is_accepted(fake: FakeTurbotext) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buffer, format="WEBP")
    fake.result_png = buffer.getvalue()
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.result is not None and outcome.result.mime == WEBP


def test_polls_are_spaced_by_the_configured_interval(fake: FakeTurbotext, settings: Any) -> None:
    settings.TURBOTEXT_POLL_SECONDS = 0.15
    fake.reconnects = 2
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.result is not None
    assert len(fake.poll_calls()) == 3
    assert outcome.elapsed >= 3 * 0.15


# --- deadline ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "interval"),
    [("slow", 0.05), ("slow", 5.0), ("slow_answer", 0.05)],
    ids=["reconnect-forever", "interval-longer-than-deadline", "answer-after-deadline"],
)
def test_a_task_unfinished_at_the_deadline_times_out_on_time(
    fake: FakeTurbotext, settings: Any, mode: str, interval: float
) -> None:
    settings.TURBOTEXT_POLL_SECONDS = interval
    fake.mode = mode
    outcome = run(fake, "image_edit", {"prompt": "x"}, seconds=1.2)

    assert isinstance(outcome.error, ProviderDeadlineExceeded)
    assert not outcome.error.retryable and outcome.error.code == "timeout"
    assert 1.0 <= outcome.elapsed < 1.2 + 1.0
    [polled] = outcome.named("polled")
    assert polled["outcome"] == "deadline" and polled["queueid"] == QUEUEID
    assert polled["polls"] == len(fake.poll_calls())
    assert outcome.result is None and not fake.received("/uploads/")


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "code", "retryable", "says"),
    [
        ("4xx", "rejected", False, "HTTP 400: Bad Request"),
        ("5xx", "provider_unavailable", True, "HTTP 503"),
        ("429", "rate_limited", True, "HTTP 429: Too Many Requests"),
        ("malformed", "malformed_response", False, "malformed body"),
        ("rejected", "rejected", False, "face_not_detected"),
    ],
)
def test_create_queue_failures(
    fake: FakeTurbotext, mode: str, code: str, retryable: bool, says: str
) -> None:
    fake.mode = mode
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.result is None and outcome.error is not None
    assert (outcome.error.code, outcome.error.retryable) == (code, retryable)
    assert says in outcome.error.message
    assert len(fake.create_calls()) == 1
    assert not fake.poll_calls() and not outcome.named("queued")


def test_a_failed_task_fails_the_job_with_turbotexts_reason(fake: FakeTurbotext) -> None:
    fake.mode = "failed"
    outcome = run(fake, "identity_transfer", {"face_media_id": "x"}, templates=scene_template())

    assert outcome.error is not None and not outcome.error.retryable
    assert outcome.error.code == "provider_failed"
    assert "face_not_detected: no face found on the image" in outcome.error.message
    assert len(fake.poll_calls()) == fake.reconnects + 1
    assert outcome.named("polled") == [
        {"queueid": QUEUEID, "polls": fake.reconnects + 1, "outcome": "error"}
    ]


def test_a_finished_answer_without_an_image_is_malformed(fake: FakeTurbotext) -> None:
    fake.mode = "malformed_result"
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.error is not None and not outcome.error.retryable
    assert outcome.error.code == "malformed_response"
    assert "without an image URL" in outcome.error.message


def test_a_result_that_is_not_an_image_is_malformed(fake: FakeTurbotext) -> None:
    fake.mode = "not_an_image"
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.error is not None and not outcome.error.retryable
    assert outcome.error.code == "malformed_response"
    assert "not a JPEG, PNG or WebP" in outcome.error.message
    assert len(fake.received("/uploads/")) == 1


def test_turbotexts_messages_never_carry_the_key(fake: FakeTurbotext) -> None:
    fake.mode = "failed"
    fake.failure_message = f"the key {KEY} has no credits left"
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.error is not None
    assert KEY not in outcome.error.message and "the key *** has no credits" in str(outcome.error)
    assert KEY not in json.dumps(outcome.events)


@pytest.mark.parametrize(("status", "code"), [(401, "unauthorized"), (200, "rejected")])
def test_a_wrong_key_is_refused_and_not_retried(
    fake: FakeTurbotext, status: int, code: str
) -> None:
    fake.expected_key = "some-other-key"
    fake.auth_failure_status = status
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.error is not None and not outcome.error.retryable
    assert outcome.error.code == code and "Invalid API key" in outcome.error.message
    assert KEY not in outcome.error.message


def test_poll_glitches_are_tolerated_without_a_new_task(fake: FakeTurbotext) -> None:
    fake.poll_errors = MAX_POLL_ERRORS - 1
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.result is not None and outcome.result.data == fake.result_png
    assert len(fake.create_calls()) == 1
    assert len(fake.poll_calls()) == MAX_POLL_ERRORS - 1 + 3
    assert [e["in_a_row"] for e in outcome.named("poll_error")] == [1, 2]


def test_polls_failing_again_and_again_give_a_retryable_error(fake: FakeTurbotext) -> None:
    fake.poll_errors = MAX_POLL_ERRORS
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.error is not None and outcome.error.retryable
    assert outcome.error.code == "provider_unavailable"
    assert len(fake.poll_calls()) == MAX_POLL_ERRORS
    assert outcome.named("polled")[0]["outcome"] == "error"


def test_a_result_download_glitch_is_retried_without_a_new_task(fake: FakeTurbotext) -> None:
    fake.download_errors = 1
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.result is not None and outcome.result.data == fake.result_png
    assert len(fake.create_calls()) == 1 and len(fake.received("/uploads/")) == 2
    assert outcome.named("download_retry") == [{"code": "provider_unavailable", "attempt": 1}]


def test_a_result_that_stays_unavailable_gives_a_retryable_error(fake: FakeTurbotext) -> None:
    fake.download_errors = 99
    outcome = run(fake, "image_edit", {"prompt": "x"})

    assert outcome.error is not None and outcome.error.retryable
    assert outcome.error.code == "provider_unavailable"
    assert len(fake.received("/uploads/")) == MAX_DOWNLOAD_ATTEMPTS


def test_an_input_turbotext_cannot_download_fails_the_job(fake: FakeTurbotext) -> None:
    dead = f"http://127.0.0.1:{free_port()}/public/media/{uuid.uuid4()}"
    outcome = run(fake, "image_edit", {"prompt": "x"}, publish=lambda image: dead)

    assert outcome.error is not None and not outcome.error.retryable
    assert outcome.error.code == "rejected" and "url_error" in outcome.error.message
    [fetched] = fake.fetched
    assert fetched.url == dead and fetched.status is None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"api_key": ""}, "not_configured"),
        ({"publish": None}, "not_configured"),
        ({"photo": InputImage(data=b"heic", mime=HEIC, name="photo")}, "unsupported_input"),
    ],
    ids=["no-key", "no-public-links", "heic-photo"],
)
def test_what_cannot_work_fails_before_calling_turbotext(
    fake: FakeTurbotext, change: dict[str, Any], code: str
) -> None:
    outcome = run(fake, "image_edit", {"prompt": "x"}, **change)

    assert outcome.error is not None and not outcome.error.retryable
    assert outcome.error.code == code
    assert fake.requests == []


def test_a_missing_template_fails_before_calling_turbotext(fake: FakeTurbotext) -> None:
    outcome = run(fake, "style_transfer", {"style_media_id": "gone"})

    assert outcome.error is not None and outcome.error.code == "invalid_settings"
    assert fake.requests == []


# --- settings ------------------------------------------------------------------------------------


def test_the_provider_is_registered_with_its_operations() -> None:
    provider = get_provider("turbotext")
    assert isinstance(provider, TurbotextProvider)
    description = provider.describe()
    assert description["requires_api_key"] is True
    assert description["accepted_mimes"] == sorted([JPEG, PNG, WEBP])
    operations = {op["id"]: [s["name"] for s in op["settings"]] for op in description["operations"]}
    assert operations == {
        "image_edit": ["prompt", "strength", "seed", "scale", "negative_prompt"],
        "style_transfer": ["style_media_id", "prompt"],
        "identity_transfer": ["face_media_id", "face_restore"],
    }
    assert provider.operation("identity_transfer").template_keys() == ("face_media_id",)
    assert provider.operation("style_transfer").template_keys() == ("style_media_id",)


@pytest.mark.parametrize(
    ("operation_id", "given", "cleaned"),
    [
        ("image_edit", {"prompt": "x"}, {"prompt": "x"}),
        (
            "image_edit",
            {"prompt": "x", "strength": 80, "seed": 0, "scale": 20, "negative_prompt": "n"},
            {"prompt": "x", "strength": 80, "seed": 0, "scale": 20.0, "negative_prompt": "n"},
        ),
        ("style_transfer", {"style_media_id": " s "}, {"style_media_id": "s"}),
        (
            "style_transfer",
            {"style_media_id": "s", "prompt": "p"},
            {"style_media_id": "s", "prompt": "p"},
        ),
        ("identity_transfer", {"face_media_id": "f"}, {"face_media_id": "f", "face_restore": True}),
        (
            "identity_transfer",
            {"face_media_id": "f", "face_restore": False},
            {"face_media_id": "f", "face_restore": False},
        ),
    ],
)
def test_valid_settings_are_cleaned_with_defaults(
    operation_id: str, given: dict[str, Any], cleaned: dict[str, Any]
) -> None:
    assert TURBOTEXT.clean_settings(operation_id, given) == cleaned


@pytest.mark.parametrize(
    ("operation_id", "given", "errors"),
    [
        ("image_edit", {}, {"prompt": ["this setting is required"]}),
        ("image_edit", {"prompt": "x", "strength": 81}, {"strength": ["must be at most 80"]}),
        ("image_edit", {"prompt": "x", "strength": -1}, {"strength": ["must be at least 0"]}),
        ("image_edit", {"prompt": "x", "strength": 1.5}, {"strength": ["must be a whole number"]}),
        ("image_edit", {"prompt": "x", "seed": -3}, {"seed": ["must be at least 0"]}),
        ("image_edit", {"prompt": "x", "scale": 0}, {"scale": ["must be at least 0.1"]}),
        ("image_edit", {"prompt": "x", "scale": 25}, {"scale": ["must be at most 20"]}),
        ("image_edit", {"prompt": "x", "scale": "7"}, {"scale": ["must be a number"]}),
        (
            "image_edit",
            {"prompt": "x", "style_media_id": "s"},
            {"style_media_id": ["unknown setting for operation 'image_edit'"]},
        ),
        ("style_transfer", {"prompt": "p"}, {"style_media_id": ["this setting is required"]}),
        ("identity_transfer", {}, {"face_media_id": ["this setting is required"]}),
        (
            "identity_transfer",
            {"face_media_id": "f", "face_restore": "yes"},
            {"face_restore": ["must be true or false"]},
        ),
    ],
)
def test_invalid_settings_are_refused_per_field(
    operation_id: str, given: dict[str, Any], errors: dict[str, list[str]]
) -> None:
    with pytest.raises(SettingsInvalid) as refused:
        TURBOTEXT.clean_settings(operation_id, given)
    assert refused.value.errors == errors


def test_an_unknown_operation_is_refused() -> None:
    with pytest.raises(SettingsInvalid) as refused:
        TURBOTEXT.clean_settings("upscale", {})
    assert list(refused.value.errors) == ["operation_id"]


# --- the whole pipeline --------------------------------------------------------------------------

ENV_KEY = "tt-env-key-from-environment-8c41"
STORED_KEY = "tt-stored-key-from-settings-2be7"


@pytest.fixture
def turbotext_stack(
    stack_factory: Callable[..., Stack], fake: FakeTurbotext
) -> Callable[[], Stack]:
    def start() -> Stack:
        return stack_factory(
            TURBOTEXT_BASE_URL=fake.base_url,
            TURBOTEXT_API_KEY=ENV_KEY,
            TURBOTEXT_POLL_SECONDS="0.05",
            PROVIDER_RETRY_BACKOFF_SECONDS="0.2",
        )

    return start


def assert_keys_nowhere(stack: Stack, *keys: str) -> None:
    logs = stack.logs()
    rows = json.dumps(
        [list(Job.objects.values()), list(ProcessingLog.objects.values())], default=str
    )
    for key in keys:
        assert key not in logs
        assert key not in rows


def provider_events(job: Job, name: str) -> list[dict[str, Any]]:
    return [
        log.details
        for log in job.logs.filter(event=ProcessingLog.Event.PROVIDER_EVENT).order_by("id")
        if log.details.get("event") == name
    ]


def media_files() -> list[str]:
    folder = files.default_storage.path("media")
    return [os.path.join(d, f) for d, _, names in os.walk(folder) for f in names]


def assert_public_media_gone(stack: Stack, job: Job, urls: list[str]) -> None:
    """The job's temporary public links, rows and files are gone once it is finalized."""
    wait_until(lambda: not MediaObject.objects.filter(job_id=job.id).exists(), timeout=5)
    for url in urls:
        media_id = uuid.UUID(url.rsplit("/", 1)[-1])
        assert not MediaObject.objects.filter(id=media_id).exists()
        assert requests.get(url, timeout=10).status_code in (404, 410)
    assert media_files() == []


def test_the_booth_gets_turbotexts_image(
    turbotext_stack: Callable[[], Stack], fake: FakeTurbotext, ingest_password: str
) -> None:
    fake.expected_key = ENV_KEY
    fake.reconnects = 3
    update_slot(
        slot_id="slot-004",
        provider_id="turbotext",
        operation_id="image_edit",
        settings={"prompt": "Make it look like a 1920s postcard", "strength": 40},
        is_active=True,
    )
    stack = turbotext_stack()
    photo = make_photo(color=(70, 90, 30))
    response = post_photo(stack, "slot-004", photo, ingest_password)

    assert response.status_code == 200, stack.logs()
    assert response.headers["Content-Type"] == PNG
    assert response.content == fake.result_png
    [create] = fake.create_calls("generate_image2image")
    form = create.form()
    assert create.headers["authorization"] == f"Bearer {ENV_KEY}"
    assert form["content"] == "Make it look like a 1920s postcard" and form["strength"] == "40"
    # Turbotext fetched the guest's photo from our public media link, byte for byte.
    assert form["url"].startswith(f"{stack.base_url}/public/media/")
    [fetched] = fake.fetched
    assert (fetched.url, fetched.status, fetched.content_type) == (form["url"], 200, JPEG)
    assert fetched.body == photo
    assert len(fake.poll_calls()) == 4

    job = Job.objects.get(id=uuid.UUID(response.headers["X-Job-Id"]))
    assert job.succeeded and job.provider_job_reference == QUEUEID
    [queued] = provider_events(job, "queued")
    assert queued["queueid"] == QUEUEID
    [polled] = provider_events(job, "polled")
    assert polled["polls"] == 4 and polled["outcome"] == "ready"
    assert len(provider_events(job, "http_call")) == 1 + 4 + 1
    assert_public_media_gone(stack, job, [form["url"]])
    assert_keys_nowhere(stack, ENV_KEY)


def test_failures_reach_the_booth_as_502_and_504(
    turbotext_stack: Callable[[], Stack], fake: FakeTurbotext, ingest_password: str
) -> None:
    fake.expected_key = ENV_KEY
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=3)
    for slot_id in ("slot-005", "slot-006"):
        update_slot(
            slot_id=slot_id,
            provider_id="turbotext",
            operation_id="image_edit",
            settings={"prompt": "x"},
            is_active=True,
        )
    stack = turbotext_stack()

    # A 400 is not retried: one task, and the booth hears at once.
    fake.mode = "4xx"
    response = post_photo(stack, "slot-005", make_photo(color=(1, 2, 3)), ingest_password)
    assert response.status_code == 502, stack.logs()
    assert response.json()["error"]["code"] == "provider_error"
    job = Job.objects.get(id=response.headers["X-Job-Id"])
    assert job.failure_reason == FailureReason.PROVIDER_ERROR
    assert job.failure_detail.startswith("rejected:") and "HTTP 400" in job.failure_detail
    assert len(fake.create_calls()) == 1
    assert_public_media_gone(stack, job, [fake.create_calls()[-1].form()["url"]])

    # A task that never finishes: the booth gets 504 at the deadline and the polling stops.
    fake.mode = "slow"
    started = time.monotonic()
    response = post_photo(stack, "slot-006", make_photo(color=(4, 5, 6)), ingest_password)
    elapsed = time.monotonic() - started
    assert response.status_code == 504, stack.logs()
    assert elapsed < 3 + 1.2
    job = Job.objects.get(id=response.json()["error"]["details"]["job_id"])
    assert job.is_finalized and job.failure_reason == FailureReason.TIMEOUT
    # The adapter records its poll count when it stops: every poll the fake saw was before that.
    wait_until(lambda: provider_events(job, "polled"), timeout=5)
    [polled] = provider_events(job, "polled")
    assert polled["outcome"] == "deadline" and polled["polls"] >= 2
    assert polled["polls"] == len(fake.poll_calls())
    [queued] = provider_events(job, "queued")
    assert queued["queueid"] == QUEUEID
    assert_public_media_gone(stack, job, [fake.create_calls()[-1].form()["url"]])
    assert_keys_nowhere(stack, ENV_KEY)


def test_the_stored_key_beats_the_environments_in_a_face_swap(
    turbotext_stack: Callable[[], Stack], fake: FakeTurbotext, ingest_password: str
) -> None:
    set_api_key("turbotext", STORED_KEY, changed_by="tests")
    fake.expected_key = STORED_KEY
    scene = register_template(stream=io.BytesIO(SCENE), original_name="astronaut.png")
    update_slot(
        slot_id="slot-007",
        provider_id="turbotext",
        operation_id="identity_transfer",
        settings={"face_media_id": str(scene.id)},
        is_active=True,
    )
    stack = turbotext_stack()
    photo = make_photo(color=(200, 170, 150))
    response = post_photo(stack, "slot-007", photo, ingest_password)

    assert response.status_code == 200, stack.logs()
    assert response.content == fake.result_png
    requests_sent = fake.create_calls("deepfake_photo") + fake.poll_calls("deepfake_photo")
    assert {r.headers["authorization"] for r in requests_sent} == {f"Bearer {STORED_KEY}"}
    [create] = fake.create_calls("deepfake_photo")
    form = create.form()
    assert form["face_restore"] == "1"
    [scene_fetch] = fake.fetched_for("url")
    [guest_fetch] = fake.fetched_for("url_image_target")
    assert (scene_fetch.status, scene_fetch.content_type, scene_fetch.body) == (200, PNG, SCENE)
    assert (guest_fetch.status, guest_fetch.content_type, guest_fetch.body) == (200, JPEG, photo)
    job = Job.objects.get(id=uuid.UUID(response.headers["X-Job-Id"]))
    assert job.provider_job_reference == QUEUEID
    assert_public_media_gone(stack, job, [form["url"], form["url_image_target"]])
    assert_keys_nowhere(stack, STORED_KEY, ENV_KEY)
