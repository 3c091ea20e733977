"""The OpenAI image edits adapter against a fake OpenAI API: form sent, image read, failures."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.utils import timezone
from PIL import Image

from ingest.services import register_template, update_slot
from jobqueue.models import FailureReason, Job, ProcessingLog
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
from providers.openai import (
    DEFAULT_MODEL,
    DEFAULT_STYLE_PROMPT,
    OpenAIProvider,
    read_answer,
)
from providers.prompted import DEFAULT_IDENTITY_PROMPT
from providers.registry import get_provider
from providers.secrets import set_api_key
from tests.conftest import Stack
from tests.ingest.test_end_to_end import post_photo
from tests.support.fakes.openai import RESULT_COLOR, FakeOpenAI, masked, solid_image
from tests.support.images import make_photo, open_image

KEY = "sk-test-adapter-key-0123456789abcdef"
OPENAI = OpenAIProvider()
PHOTO = make_photo(width=320, height=240)
STYLE = solid_image("png", (10, 10, 200), (32, 32))
FACE = solid_image("png", (230, 190, 160), (24, 24))


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI(expected_key=KEY)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Call:
    """One adapter call: its request, the events it recorded, and its outcome."""

    def __init__(
        self,
        fake: FakeOpenAI,
        operation_id: str,
        settings: Mapping[str, Any],
        *,
        templates: Mapping[str, InputImage] | None = None,
        seconds: float = 5,
        api_key: str = KEY,
    ) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.request = ProviderRequest(
            operation_id=operation_id,
            settings=settings,
            photo=InputImage(data=PHOTO, mime=JPEG, name="photo"),
            templates=templates or {},
            deadline=timezone.now() + timedelta(seconds=seconds),
            record_event=lambda name, details: self.events.append((name, dict(details))),
            base_url=fake.base_url,
            api_key=api_key,
        )

    def run(self) -> ProviderResult:
        return OPENAI.run(self.request)

    def fails(self) -> ProviderError:
        with pytest.raises(ProviderError) as raised:
            self.run()
        return raised.value


def template(key: str, data: bytes, mime: str = PNG) -> dict[str, InputImage]:
    return {key: InputImage(data=data, mime=mime, name=key)}


def colour_of(data: bytes) -> tuple[int, int, int]:
    red, green, blue = open_image(data).convert("RGB").getpixel((5, 5))  # type: ignore[misc]
    return red, green, blue


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - e) <= 6 for a, e in zip(actual, expected, strict=True))


# --- what is sent and what comes back -----------------------------------------------------------


def test_image_edit_sends_a_multipart_form_and_returns_the_jpeg(fake: FakeOpenAI) -> None:
    call = Call(fake, "image_edit", {"prompt": "Make it a watercolour painting"})
    result = call.run()

    assert result.mime == JPEG
    assert result.data == solid_image("jpeg")
    assert open_image(result.data).format == "JPEG"
    assert close_to(colour_of(result.data), RESULT_COLOR)
    assert result.provider_job_reference == "req_fake0001"
    [sent] = fake.edit_calls()
    assert sent.method == "POST" and sent.path == "/v1/images/edits"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    # Only the chosen options are sent: size, quality and fidelity stay the API's "auto".
    assert FakeOpenAI.fields_of(sent) == {
        "model": DEFAULT_MODEL,
        "prompt": "Make it a watercolour painting",
        "output_format": "jpeg",
        "n": "1",
    }
    assert FakeOpenAI.images_of(sent) == [("photo.jpg", JPEG, PHOTO)]
    [http_call] = [details for name, details in call.events if name == "http_call"]
    assert http_call["path"] == "/v1/images/edits" and http_call["status"] == 200
    assert KEY not in json.dumps(call.events)


def test_style_transfer_sends_the_style_after_the_photo_and_names_the_roles(
    fake: FakeOpenAI,
) -> None:
    settings = {
        "style_media_id": "6f1c2a",
        "output_format": "png",
        "size": "1024x1536",
        "quality": "medium",
        "input_fidelity": "high",
        "model": "gpt-image-1",
    }
    result = Call(
        fake, "style_transfer", settings, templates=template("style_media_id", STYLE)
    ).run()

    assert result.mime == PNG and result.data == solid_image("png")
    [sent] = fake.edit_calls()
    fields = FakeOpenAI.fields_of(sent)
    assert fields["prompt"] == (
        f"{DEFAULT_STYLE_PROMPT}\n\nThe first image is the guest's photo; the second image is "
        "the style reference."
    )
    assert {k: v for k, v in fields.items() if k != "prompt"} == {
        "model": "gpt-image-1",
        "output_format": "png",
        "size": "1024x1536",
        "quality": "medium",
        "input_fidelity": "high",
        "n": "1",
    }
    assert FakeOpenAI.images_of(sent) == [("photo.jpg", JPEG, PHOTO), ("style.png", PNG, STYLE)]
    # The repeated field is `image[]`, one part per image, in this order.
    assert [name for name, file_name, _, _ in sent.multipart() if file_name] == ["image[]"] * 2


def test_identity_transfer_sends_the_face_and_returns_webp(fake: FakeOpenAI) -> None:
    settings = {"face_media_id": "f00d", "output_format": "webp"}
    result = Call(
        fake, "identity_transfer", settings, templates=template("face_media_id", FACE)
    ).run()

    assert result.mime == WEBP
    assert open_image(result.data).format == "WEBP"
    [sent] = fake.edit_calls()
    prompt = FakeOpenAI.fields_of(sent)["prompt"]
    assert prompt.startswith(DEFAULT_IDENTITY_PROMPT)
    assert prompt.endswith("the second image is the scene whose person receives the guest's face.")
    assert FakeOpenAI.images_of(sent) == [("photo.jpg", JPEG, PHOTO), ("scene.png", PNG, FACE)]


def test_image_edit_with_a_reference_template(fake: FakeOpenAI) -> None:
    reference = solid_image("webp", (0, 120, 0), (20, 20))
    settings = {
        "prompt": "Put the guests into the scene of the second image",
        "reference_media_id": "r1",
    }
    Call(
        fake, "image_edit", settings, templates=template("reference_media_id", reference, WEBP)
    ).run()

    [sent] = fake.edit_calls()
    assert FakeOpenAI.fields_of(sent)["prompt"].endswith(
        "The first image is the guest's photo; the second image is a reference image."
    )
    assert FakeOpenAI.images_of(sent)[1] == ("reference.webp", WEBP, reference)


def test_a_missing_template_image_fails_before_any_call(fake: FakeOpenAI) -> None:
    error = Call(fake, "style_transfer", {"style_media_id": "6f1c2a"}).fails()

    assert error.code == "invalid_settings" and not error.retryable
    assert "style_media_id" in error.message
    assert fake.requests == []


def test_a_template_openai_cannot_read_fails_before_any_call(fake: FakeOpenAI) -> None:
    heic = template("face_media_id", b"\x00\x00\x00\x18ftypheic", HEIC)
    error = Call(fake, "identity_transfer", {"face_media_id": "f"}, templates=heic).fails()

    assert error.code == "invalid_image" and not error.retryable
    assert "image/heic" in error.message and "face" in error.message
    assert fake.requests == []


def test_no_api_key_fails_before_any_call(fake: FakeOpenAI) -> None:
    error = Call(fake, "image_edit", {"prompt": "x"}, api_key="").fails()

    assert error.code == "not_configured" and not error.retryable
    assert fake.requests == []


def test_a_provider_slower_than_the_deadline_is_abandoned_at_the_deadline(
    fake: FakeOpenAI,
) -> None:
    fake.mode = "slow"
    call = Call(fake, "image_edit", {"prompt": "x"}, seconds=1.5)
    started = time.monotonic()
    with pytest.raises(ProviderDeadlineExceeded):
        call.run()
    assert time.monotonic() - started < 1.5 + 1


@pytest.mark.parametrize(
    ("mode", "code", "retryable", "says"),
    [
        ("bad_request", "rejected", False, "HTTP 400: invalid_image_file Invalid image file"),
        ("moderation_blocked", "rejected", False, "moderation_blocked"),
        ("server_error", "provider_unavailable", True, "HTTP 500"),
        ("rate_limited", "rate_limited", True, "HTTP 429: rate_limit_exceeded"),
        ("malformed", "malformed_response", False, "malformed body"),
        ("empty_data", "no_image", True, "no image"),
        ("bad_base64", "malformed_response", False, "not valid base64"),
        ("wrong_format", "malformed_response", False, "expected a image/jpeg image, got image/png"),
    ],
)
def test_http_and_body_failures(
    fake: FakeOpenAI, mode: str, code: str, retryable: bool, says: str
) -> None:
    fake.mode = mode
    error = Call(fake, "image_edit", {"prompt": "x"}).fails()

    assert (error.code, error.retryable) == (code, retryable)
    assert says in error.message
    assert len(fake.requests) == 1  # the adapter never retries by itself: the worker does


def test_a_503_is_retryable_too(fake: FakeOpenAI) -> None:
    fake.mode = "server_error"
    fake.server_error_status = 503
    error = Call(fake, "image_edit", {"prompt": "x"}).fails()

    assert error.code == "provider_unavailable" and error.retryable
    assert "HTTP 503" in error.message


def test_flaky_fails_once_then_answers(fake: FakeOpenAI) -> None:
    fake.mode = "flaky"
    fake.flaky_failures = 1

    assert Call(fake, "image_edit", {"prompt": "x"}).fails().retryable
    assert Call(fake, "image_edit", {"prompt": "x"}).run().mime == JPEG
    assert len(fake.edit_calls()) == 2


def test_a_wrong_key_is_refused_and_not_even_its_masked_form_is_kept(fake: FakeOpenAI) -> None:
    wrong = "sk-proj-wrong-key-9876543210zyxw"
    error = Call(fake, "image_edit", {"prompt": "x"}, api_key=wrong).fails()

    assert error.code == "unauthorized" and not error.retryable
    assert "HTTP 401: invalid_api_key Incorrect API key provided: ***." in error.message
    assert wrong not in error.message and masked(wrong) not in error.message
    assert "zyxw" not in error.message
    assert fake.requests[0].headers["authorization"] == f"Bearer {wrong}"


def test_a_model_openai_does_not_know_is_refused_without_retry(fake: FakeOpenAI) -> None:
    error = Call(fake, "image_edit", {"prompt": "x", "model": "dall-e-9"}).fails()

    assert error.code == "rejected" and not error.retryable
    assert "invalid_value Invalid value: 'dall-e-9'" in error.message


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (["not", "an", "object"], "not a JSON object"),
        ({"created": 1}, "data is not a list"),
        ({"data": "nope"}, "data is not a list"),
        ({"data": [42]}, "data is not a list"),
        ({"data": [{"url": "https://example.com/x.png"}]}, "no b64_json"),
        ({"data": [{"b64_json": base64.b64encode(b"GIF89a...").decode()}]}, "something else"),
    ],
)
def test_answers_of_the_wrong_shape_are_malformed(body: Any, says: str) -> None:
    with pytest.raises(ProviderError) as raised:
        read_answer(body, output_format="jpeg")

    assert raised.value.code == "malformed_response" and not raised.value.retryable
    assert says in raised.value.message


@pytest.mark.parametrize(
    ("fields", "files", "says"),
    [
        ({"prompt": "x"}, [("image[]", ("p.jpg", PHOTO, JPEG))], "'model'"),
        ({"model": DEFAULT_MODEL}, [("image[]", ("p.jpg", PHOTO, JPEG))], "'prompt'"),
        ({"model": DEFAULT_MODEL, "prompt": "x"}, [], "'image'"),
        (
            {"model": DEFAULT_MODEL, "prompt": "x"},
            [("image[]", ("p.gif", b"GIF89a", "image/gif"))],
            "unsupported mimetype",
        ),
        (
            {"model": DEFAULT_MODEL, "prompt": "x"},
            [("image[]", ("p.jpg", b"not a jpeg", JPEG))],
            "could not be decoded",
        ),
        (
            {"model": DEFAULT_MODEL, "prompt": "x", "size": "512x512"},
            [("image[]", ("p.jpg", PHOTO, JPEG))],
            "'512x512'",
        ),
    ],
)
def test_the_fake_refuses_what_openai_refuses(
    fake: FakeOpenAI, fields: dict[str, str], files: list[Any], says: str
) -> None:
    response = requests.post(
        f"{fake.base_url}/v1/images/edits",
        headers={"Authorization": f"Bearer {KEY}"},
        data=fields,
        files=files or [("unused", ("", b"", "text/plain"))],
        timeout=5,
    )

    assert response.status_code == 400
    body = response.json()["error"]
    assert body["type"] == "invalid_request_error" and says in body["message"]


def test_the_fake_wants_a_bearer_key(fake: FakeOpenAI) -> None:
    response = requests.post(
        f"{fake.base_url}/v1/images/edits", files={"prompt": (None, "x")}, timeout=5
    )

    assert response.status_code == 401
    assert "didn't provide an API key" in response.json()["error"]["message"]


# --- settings ------------------------------------------------------------------------------------


def test_settings_defaults_are_filled_in() -> None:
    common = {
        "model": DEFAULT_MODEL,
        "output_format": "jpeg",
        "size": "auto",
        "quality": "auto",
        "input_fidelity": "auto",
    }

    assert OPENAI.clean_settings("image_edit", {"prompt": "x"}) == {"prompt": "x", **common}
    assert OPENAI.clean_settings("style_transfer", {"style_media_id": "s"}) == {
        "style_media_id": "s",
        "prompt": DEFAULT_STYLE_PROMPT,
        **common,
    }
    assert OPENAI.clean_settings("identity_transfer", {"face_media_id": "f"}) == {
        "face_media_id": "f",
        "prompt": DEFAULT_IDENTITY_PROMPT,
        **common,
    }


@pytest.mark.parametrize(
    ("operation_id", "values", "fields"),
    [
        ("image_edit", {}, {"prompt"}),
        ("image_edit", {"prompt": "   "}, {"prompt"}),
        ("image_edit", {"prompt": "x" * 32001}, {"prompt"}),
        ("style_transfer", {"prompt": "x"}, {"style_media_id"}),
        ("identity_transfer", {"face_media_id": 7}, {"face_media_id"}),
        (
            "image_edit",
            {"prompt": "x", "output_format": "gif", "size": "512x512", "quality": "ultra"},
            {"output_format", "size", "quality"},
        ),
        (
            "image_edit",
            {"prompt": "x", "input_fidelity": "medium", "n": 2},
            {"input_fidelity", "n"},
        ),
        # Every problem at once: the model's own check runs even when other fields are wrong.
        ("style_transfer", {"model": "gpt image/1"}, {"model", "style_media_id"}),
    ],
)
def test_invalid_settings_name_the_field(
    operation_id: str, values: dict[str, Any], fields: set[str]
) -> None:
    with pytest.raises(SettingsInvalid) as raised:
        OPENAI.clean_settings(operation_id, values)

    assert set(raised.value.errors) == fields


@pytest.mark.parametrize("model", ["gpt-image-1.5/../x", "gpt image", "-x", "gpt?a=1", "é"])
def test_a_model_that_is_not_a_plain_name_is_refused(fake: FakeOpenAI, model: str) -> None:
    with pytest.raises(SettingsInvalid) as raised:
        OPENAI.clean_settings("image_edit", {"prompt": "x", "model": model})
    assert raised.value.errors == {
        "model": ["must be a model name made of letters, digits, '.', '-' and '_'"]
    }
    # A job snapshot with such a model fails before any call (the worker maps it to a
    # provider error).
    with pytest.raises(SettingsInvalid):
        Call(fake, "image_edit", {"prompt": "x", "model": model}).run()
    assert fake.requests == []


def test_the_provider_is_registered_and_described() -> None:
    provider = get_provider("openai")
    description = provider.describe()

    assert isinstance(provider, OpenAIProvider)
    assert description["requires_api_key"] is True
    assert description["accepted_mimes"] == [JPEG, PNG, WEBP]
    assert [op["id"] for op in description["operations"]] == [
        "image_edit",
        "style_transfer",
        "identity_transfer",
    ]
    assert provider.operation("style_transfer").template_keys() == ("style_media_id",)
    assert provider.operation("identity_transfer").template_keys() == ("face_media_id",)
    settings = {s["name"]: s for s in description["operations"][0]["settings"]}
    assert settings["output_format"]["choices"] == ["jpeg", "png", "webp"]
    assert settings["size"]["choices"] == ["auto", "1024x1024", "1024x1536", "1536x1024"]


# --- the whole pipeline --------------------------------------------------------------------------

ENV_KEY = "sk-env-key-from-environment-4242"
STORED_KEY = "sk-stored-key-from-settings-7777"


@pytest.fixture
def openai_stack(stack_factory: Callable[..., Stack], fake: FakeOpenAI) -> Callable[[], Stack]:
    def start() -> Stack:
        return stack_factory(
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY=ENV_KEY,
            PROVIDER_RETRY_BACKOFF_SECONDS="0.2",
        )

    return start


def assert_keys_nowhere(stack: Stack, *keys: str) -> None:
    logs = stack.logs()
    rows = json.dumps(
        [list(Job.objects.values()), list(ProcessingLog.objects.values())], default=str
    )
    for key in keys:
        assert key not in logs and masked(key) not in logs
        assert key not in rows and masked(key) not in rows


def provider_calls(job: Job) -> list[dict[str, Any]]:
    return [
        log.details
        for log in job.logs.filter(event=ProcessingLog.Event.PROVIDER_CALL).order_by("id")
    ]


def http_calls(job: Job) -> list[dict[str, Any]]:
    return [
        log.details
        for log in job.logs.filter(event=ProcessingLog.Event.PROVIDER_EVENT).order_by("id")
        if log.details.get("event") == "http_call"
    ]


def use_openai(slot_id: str, operation_id: str, settings: dict[str, Any]) -> None:
    update_slot(
        slot_id=slot_id,
        provider_id="openai",
        operation_id=operation_id,
        settings=settings,
        is_active=True,
    )


def test_the_booth_gets_openais_jpeg_for_a_style_transfer(
    openai_stack: Callable[[], Stack], fake: FakeOpenAI, ingest_password: str
) -> None:
    fake.expected_key = ENV_KEY
    style = register_template(stream=io.BytesIO(STYLE), original_name="style.png")
    use_openai("slot-004", "style_transfer", {"style_media_id": str(style.id), "size": "1024x1536"})
    stack = openai_stack()
    photo = make_photo(color=(90, 60, 200))
    response = post_photo(stack, "slot-004", photo, ingest_password)

    assert response.status_code == 200, stack.logs()
    assert response.headers["Content-Type"] == JPEG
    assert response.content == solid_image("jpeg")
    assert close_to(colour_of(response.content), RESULT_COLOR)
    [sent] = fake.edit_calls()
    assert sent.headers["authorization"] == f"Bearer {ENV_KEY}"
    [(photo_name, photo_type, photo_sent), (style_name, style_type, style_sent)] = (
        FakeOpenAI.images_of(sent)
    )
    assert (photo_name, photo_type, photo_sent) == ("photo.jpg", JPEG, photo)
    assert (style_name, style_type, style_sent) == ("style.png", PNG, STYLE)
    assert FakeOpenAI.fields_of(sent)["size"] == "1024x1536"
    job = Job.objects.get(id=uuid.UUID(response.headers["X-Job-Id"]))
    assert job.succeeded and job.provider_job_reference == "req_fake0001"
    [http_call] = http_calls(job)
    assert http_call["status"] == 200 and http_call["path"] == "/v1/images/edits"
    assert [c["outcome"] for c in provider_calls(job)] == ["success"]
    assert_keys_nowhere(stack, ENV_KEY)


def test_a_503_is_retried_by_the_worker_and_the_booth_still_gets_the_image(
    openai_stack: Callable[[], Stack], fake: FakeOpenAI, ingest_password: str
) -> None:
    fake.expected_key = ENV_KEY
    fake.mode = "flaky"
    fake.flaky_failures = 1
    use_openai("slot-004", "image_edit", {"prompt": "Turn the guests into astronauts"})
    stack = openai_stack()
    response = post_photo(stack, "slot-004", make_photo(), ingest_password)

    assert response.status_code == 200, stack.logs()
    assert response.content == solid_image("jpeg")
    assert len(fake.edit_calls()) == 2
    job = Job.objects.get(id=uuid.UUID(response.headers["X-Job-Id"]))
    calls = provider_calls(job)
    assert [c["outcome"] for c in calls] == ["retry", "success"]
    assert calls[0]["code"] == "provider_unavailable" and "HTTP 503" in calls[0]["detail"]
    assert calls[0]["backoff_ms"] == 200
    assert [c["status"] for c in http_calls(job)] == [503, 200]
    assert job.provider_job_reference == "req_fake0001"
    assert_keys_nowhere(stack, ENV_KEY)


def test_refusals_reach_the_booth_as_502_without_retry_or_key(
    openai_stack: Callable[[], Stack], fake: FakeOpenAI, ingest_password: str
) -> None:
    for slot_id in ("slot-004", "slot-005"):
        use_openai(slot_id, "image_edit", {"prompt": "x"})
    stack = openai_stack()

    # A 400 is not retried: one call, and the booth hears at once.
    fake.expected_key = ENV_KEY
    fake.mode = "bad_request"
    response = post_photo(stack, "slot-004", make_photo(color=(1, 2, 3)), ingest_password)
    assert response.status_code == 502, stack.logs()
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "provider_error"
    job = Job.objects.get(id=response.headers["X-Job-Id"])
    assert job.failure_reason == FailureReason.PROVIDER_ERROR
    assert job.failure_detail.startswith("rejected:") and "invalid_image_file" in job.failure_detail
    assert len(fake.edit_calls()) == 1

    # A refused key: OpenAI's message repeats part of it, which is kept nowhere.
    fake.expected_key = "sk-some-other-key"
    fake.mode = "success"
    response = post_photo(stack, "slot-005", make_photo(color=(4, 5, 6)), ingest_password)
    assert response.status_code == 502, stack.logs()
    job = Job.objects.get(id=response.headers["X-Job-Id"])
    assert (
        job.failure_detail.startswith("unauthorized:") and "invalid_api_key" in job.failure_detail
    )
    assert len(fake.edit_calls()) == 2
    assert_keys_nowhere(stack, ENV_KEY)


def test_the_key_stored_in_settings_beats_the_environments(
    openai_stack: Callable[[], Stack], fake: FakeOpenAI, ingest_password: str
) -> None:
    set_api_key("openai", STORED_KEY, changed_by="tests")
    fake.expected_key = STORED_KEY
    use_openai("slot-004", "image_edit", {"prompt": "x", "output_format": "png"})
    stack = openai_stack()
    response = post_photo(stack, "slot-004", make_photo(), ingest_password)

    assert response.status_code == 200, stack.logs()
    assert response.headers["Content-Type"] == PNG
    assert Image.open(io.BytesIO(response.content)).format == "PNG"
    assert [r.headers["authorization"] for r in fake.edit_calls()] == [f"Bearer {STORED_KEY}"]
    assert_keys_nowhere(stack, STORED_KEY, ENV_KEY)
