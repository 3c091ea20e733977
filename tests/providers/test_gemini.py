"""The Gemini adapter against a fake Gemini API: requests sent, answers read, failures mapped."""

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

from ingest.models import IngestSettings
from ingest.services import register_template, update_slot
from jobqueue.models import FailureReason, Job, ProcessingLog
from providers.base import (
    HEIC,
    JPEG,
    PNG,
    InputImage,
    ProviderDeadlineExceeded,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    SettingsInvalid,
)
from providers.gemini import (
    DEFAULT_MODEL,
    DEFAULT_STYLE_PROMPT,
    GeminiProvider,
    read_answer,
)
from providers.prompted import DEFAULT_IDENTITY_PROMPT
from providers.registry import get_provider
from providers.secrets import set_api_key
from tests.conftest import Stack
from tests.ingest.test_end_to_end import post_photo
from tests.support.fakes.gemini import FakeGemini, solid_png
from tests.support.images import make_frame_png, make_photo, open_image

KEY = "AIzaTest-adapter-key-0123456789"
GEMINI = GeminiProvider()
PHOTO = make_photo(width=320, height=240)
STYLE = solid_png((10, 10, 200), (32, 32))
FACE = solid_png((230, 190, 160), (24, 24))


@pytest.fixture
def fake() -> Iterator[FakeGemini]:
    server = FakeGemini(expected_key=KEY)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Call:
    """One adapter call: its request, the events it recorded, and its outcome."""

    def __init__(
        self,
        fake: FakeGemini,
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
        return GEMINI.run(self.request)

    def fails(self) -> ProviderError:
        with pytest.raises(ProviderError) as raised:
            self.run()
        return raised.value

    def named(self, name: str) -> list[dict[str, Any]]:
        return [details for event, details in self.events if event == name]


def template(key: str, data: bytes) -> dict[str, InputImage]:
    return {key: InputImage(data=data, mime=PNG, name=key)}


# --- what is sent and what comes back -----------------------------------------------------------


def test_image_edit_sends_the_prompt_and_photo_and_returns_the_image(fake: FakeGemini) -> None:
    call = Call(fake, "image_edit", {"prompt": "Make it a watercolour painting"})
    result = call.run()

    assert result.data == fake.result_png and result.mime == PNG
    assert result.provider_job_reference == "fake-response-1"
    assert open_image(result.data).getpixel((0, 0)) == (20, 200, 60)
    [sent] = fake.generate_calls()
    assert sent.method == "POST"
    assert sent.path == f"/v1beta/models/{DEFAULT_MODEL}:generateContent"
    assert sent.headers["x-goog-api-key"] == KEY
    assert sent.headers["content-type"] == "application/json"
    assert not sent.query  # the key travels in the header only
    body = sent.json()
    assert body["generationConfig"] == {"responseModalities": ["IMAGE"]}
    [content] = body["contents"]
    assert content["role"] == "user"
    text, photo = content["parts"]
    assert text == {"text": "Make it a watercolour painting"}
    assert photo == {"inline_data": {"mime_type": JPEG, "data": base64.b64encode(PHOTO).decode()}}
    [http_call] = call.named("http_call")
    assert http_call["path"] == sent.path and http_call["status"] == 200
    assert KEY not in json.dumps(call.events)


def test_a_snake_case_answer_is_read_too(fake: FakeGemini) -> None:
    fake.mode = "snake_case"
    assert Call(fake, "image_edit", {"prompt": "x"}).run().data == fake.result_png


def test_style_transfer_sends_the_style_after_the_photo_and_names_the_roles(
    fake: FakeGemini,
) -> None:
    settings = {"style_media_id": "tpl-1", "aspect_ratio": "3:4", "image_size": "4K"}
    Call(fake, "style_transfer", settings, templates=template("style_media_id", STYLE)).run()

    [sent] = fake.generate_calls()
    assert FakeGemini.images_of(sent) == [(JPEG, PHOTO), (PNG, STYLE)]
    prompt = FakeGemini.prompt_of(sent)
    assert prompt.startswith(DEFAULT_STYLE_PROMPT)
    assert "The first image is the guest's photo; the second image is the style reference." in (
        prompt
    )
    # imageSize is for gemini-3-pro-image-preview only; the default model never gets it.
    assert sent.json()["generationConfig"] == {
        "responseModalities": ["IMAGE"],
        "imageConfig": {"aspectRatio": "3:4"},
    }


def test_identity_transfer_on_the_pro_model_sends_the_image_size(fake: FakeGemini) -> None:
    settings = {
        "face_media_id": "tpl-2",
        "model": "gemini-3-pro-image-preview",
        "image_size": "2K",
    }
    Call(fake, "identity_transfer", settings, templates=template("face_media_id", FACE)).run()

    [sent] = fake.generate_calls()
    assert sent.path == "/v1beta/models/gemini-3-pro-image-preview:generateContent"
    assert sent.json()["generationConfig"]["imageConfig"] == {"imageSize": "2K"}
    assert FakeGemini.images_of(sent) == [(JPEG, PHOTO), (PNG, FACE)]
    prompt = FakeGemini.prompt_of(sent)
    assert prompt.startswith(DEFAULT_IDENTITY_PROMPT)
    assert "the second image is the scene whose person receives the guest's face" in prompt


def test_image_edit_with_a_reference_template(fake: FakeGemini) -> None:
    frame = make_frame_png(width=40, height=30)
    settings = {"prompt": "Put the guest in this frame", "reference_media_id": "tpl-3"}
    Call(fake, "image_edit", settings, templates=template("reference_media_id", frame)).run()

    [sent] = fake.generate_calls()
    assert FakeGemini.images_of(sent) == [(JPEG, PHOTO), (PNG, frame)]
    assert FakeGemini.prompt_of(sent) == (
        "Put the guest in this frame\n\n"
        "The first image is the guest's photo; the second image is a reference image."
    )


def test_a_missing_template_image_fails_before_any_call(fake: FakeGemini) -> None:
    error = Call(fake, "style_transfer", {"style_media_id": "tpl-1"}).fails()
    assert error.code == "invalid_settings" and not error.retryable
    assert not fake.requests


def test_no_api_key_fails_before_any_call(fake: FakeGemini) -> None:
    error = Call(fake, "image_edit", {"prompt": "x"}, api_key="").fails()
    assert error.code == "not_configured" and not error.retryable
    assert not fake.requests


# --- failures -----------------------------------------------------------------------------------


def test_a_provider_slower_than_the_deadline_is_abandoned_at_the_deadline(
    fake: FakeGemini,
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
        ("bad_request", "rejected", False, "HTTP 400: INVALID_ARGUMENT"),
        ("unauthorized", "unauthorized", False, "HTTP 403: PERMISSION_DENIED"),
        ("server_error", "provider_unavailable", True, "HTTP 503: UNAVAILABLE"),
        ("rate_limited", "rate_limited", True, "HTTP 429: RESOURCE_EXHAUSTED"),
        ("malformed", "malformed_response", False, "malformed body"),
        ("bad_base64", "malformed_response", False, "not valid base64"),
    ],
)
def test_http_and_body_failures(
    fake: FakeGemini, mode: str, code: str, retryable: bool, says: str
) -> None:
    fake.mode = mode
    error = Call(fake, "image_edit", {"prompt": "x"}).fails()
    assert (error.code, error.retryable) == (code, retryable)
    assert says in error.message
    assert len(fake.requests) == 1  # the adapter never retries by itself: the worker does


def test_a_wrong_key_is_refused_and_never_repeated_in_the_error(fake: FakeGemini) -> None:
    wrong = "AIzaWrong-key-9876543210"
    error = Call(fake, "image_edit", {"prompt": "x"}, api_key=wrong).fails()
    assert error.code == "rejected" and not error.retryable
    assert "API key not valid" in error.message
    assert wrong not in error.message
    assert fake.requests[0].headers["x-goog-api-key"] == wrong


def test_no_image_is_a_retryable_error_with_the_reason_recorded(fake: FakeGemini) -> None:
    fake.mode = "no_image"
    call = Call(fake, "image_edit", {"prompt": "x"})
    error = call.fails()
    assert (error.code, error.retryable) == ("no_image", True)
    assert "finishReason NO_IMAGE" in error.message
    [event] = call.named("no_image")
    assert event["finish_reason"] == "NO_IMAGE" and event["model"] == DEFAULT_MODEL


def test_a_blocked_prompt_names_the_block_reason(fake: FakeGemini) -> None:
    fake.mode = "blocked"
    call = Call(fake, "image_edit", {"prompt": "x"})
    error = call.fails()
    assert (error.code, error.retryable) == ("no_image", True)
    assert "blockReason PROHIBITED_CONTENT" in error.message
    assert call.named("no_image")[0]["block_reason"] == "PROHIBITED_CONTENT"


def test_a_text_only_answer_quotes_the_text(fake: FakeGemini) -> None:
    fake.mode = "text_only"
    error = Call(fake, "image_edit", {"prompt": "x"}).fails()
    assert error.code == "no_image"
    assert "finishReason STOP" in error.message
    assert "I can't edit this photo" in error.message


def test_no_image_then_success(fake: FakeGemini) -> None:
    fake.mode = "no_image_then_success"
    fake.no_image_count = 2
    outcomes: list[bytes | str] = []
    for _ in range(3):
        try:
            outcomes.append(Call(fake, "image_edit", {"prompt": "x"}).run().data)
        except ProviderError as error:
            outcomes.append(error.code)
    assert outcomes == ["no_image", "no_image", fake.result_png]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"candidates": "nope"}, "candidates is not a list"),
        (["not", "an", "object"], "not a JSON object"),
        (
            {"candidates": [{"content": {"parts": [{"inlineData": {"mimeType": "image/png"}}]}}]},
            "no data",
        ),
    ],
)
def test_answers_of_the_wrong_shape_are_malformed(fake: FakeGemini, body: Any, says: str) -> None:
    request = Call(fake, "image_edit", {"prompt": "x"}).request
    with pytest.raises(ProviderError) as raised:
        read_answer(body, request=request, model=DEFAULT_MODEL)
    assert raised.value.code == "malformed_response" and not raised.value.retryable
    assert says in raised.value.message


def test_the_final_image_wins_over_thought_drafts_and_untyped_data_is_sniffed(
    fake: FakeGemini,
) -> None:
    draft = base64.b64encode(solid_png((0, 0, 0))).decode()
    final = make_photo(width=16, height=16)
    answer = {
        "candidates": [
            {
                "content": {
                    "parts": [
                        {"thought": True, "inlineData": {"mimeType": PNG, "data": draft}},
                        {"inline_data": {"data": base64.b64encode(final).decode()}},
                    ]
                }
            }
        ]
    }
    request = Call(fake, "image_edit", {"prompt": "x"}).request
    result = read_answer(answer, request=request, model=DEFAULT_MODEL)
    assert result.data == final and result.mime == JPEG


# --- the fake behaves like the real API on requests it would refuse -----------------------------


def _post(fake: FakeGemini, body: Any, *, key: str = KEY) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/v1beta/models/{DEFAULT_MODEL}:generateContent",
        headers={"x-goog-api-key": key},
        data=body if isinstance(body, bytes) else json.dumps(body),
        timeout=5,
    )


PHOTO_PART = {"inline_data": {"mime_type": JPEG, "data": base64.b64encode(PHOTO).decode()}}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (
            {
                "contents": [{"parts": [{"text": "x"}, PHOTO_PART]}],
                "generationConfig": {"responseMimeType": "image/png"},
            },
            "response_mime_type",
        ),
        (b"{not json", "Invalid JSON"),
        ({"contents": []}, "contents is not specified"),
        ({"contents": [{"parts": []}]}, "must not be empty"),
        (
            {"contents": [{"parts": [{"inline_data": {"mime_type": JPEG, "data": "%%"}}]}]},
            "Base64 decoding failed",
        ),
    ],
)
def test_the_fake_refuses_what_gemini_refuses(fake: FakeGemini, body: Any, says: str) -> None:
    response = _post(fake, body)
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert says in response.json()["error"]["message"]


# --- settings -----------------------------------------------------------------------------------


def test_settings_defaults_are_filled_in() -> None:
    assert GEMINI.clean_settings("image_edit", {"prompt": "Add confetti"}) == {
        "prompt": "Add confetti",
        "model": DEFAULT_MODEL,
        "aspect_ratio": "",
        "image_size": "",
    }
    assert GEMINI.clean_settings("style_transfer", {"style_media_id": "abc"}) == {
        "style_media_id": "abc",
        "prompt": DEFAULT_STYLE_PROMPT,
        "model": DEFAULT_MODEL,
        "aspect_ratio": "",
        "image_size": "",
    }
    cleaned = GEMINI.clean_settings(
        "identity_transfer",
        {"face_media_id": "f", "model": "gemini-3-pro-image-preview", "aspect_ratio": "21:9"},
    )
    assert cleaned["prompt"] == DEFAULT_IDENTITY_PROMPT
    assert cleaned["aspect_ratio"] == "21:9"


@pytest.mark.parametrize(
    ("operation_id", "given", "field"),
    [
        ("image_edit", {}, "prompt"),
        ("style_transfer", {}, "style_media_id"),
        ("identity_transfer", {"prompt": "x"}, "face_media_id"),
        ("image_edit", {"prompt": "x", "aspect_ratio": "7:5"}, "aspect_ratio"),
        ("image_edit", {"prompt": "x", "image_size": "8K"}, "image_size"),
        ("image_edit", {"prompt": "x", "strength": 3}, "strength"),
        ("image_edit", {"prompt": 42}, "prompt"),
    ],
)
def test_invalid_settings_name_the_field(
    operation_id: str, given: dict[str, Any], field: str
) -> None:
    with pytest.raises(SettingsInvalid) as raised:
        GEMINI.clean_settings(operation_id, given)
    assert field in raised.value.errors


@pytest.mark.parametrize(
    "model",
    ["../../v1/files", "gemini?key=x", "models/gemini-2.5-flash-image", "a b", "gemini#x", "-x"],
)
def test_a_model_that_is_not_a_plain_name_is_refused(fake: FakeGemini, model: str) -> None:
    settings = {"prompt": "x", "model": model}
    with pytest.raises(SettingsInvalid) as raised:
        GEMINI.clean_settings("image_edit", settings)
    assert list(raised.value.errors) == ["model"]
    # The operation's own validation (what slot updates use) refuses it too...
    with pytest.raises(SettingsInvalid):
        GEMINI.operation("image_edit").clean_settings(settings)
    # ...and a stale job snapshot never reaches the URL.
    with pytest.raises(SettingsInvalid):
        Call(fake, "image_edit", settings).run()
    assert not fake.requests


def test_the_provider_is_registered_and_described() -> None:
    provider = get_provider("gemini")
    assert isinstance(provider, GeminiProvider)
    assert provider.requires_api_key
    assert HEIC in provider.accepted_mimes
    described = provider.describe()
    assert [op["id"] for op in described["operations"]] == [
        "image_edit",
        "style_transfer",
        "identity_transfer",
    ]
    settings = {s["name"]: s for s in described["operations"][1]["settings"]}
    assert settings["style_media_id"]["kind"] == "template"
    assert settings["aspect_ratio"]["choices"][:2] == ["", "1:1"]
    assert "gemini-3-pro-image-preview" in settings["image_size"]["help_text"]


# --- the whole pipeline --------------------------------------------------------------------------

ENV_KEY = "AIzaEnv-key-from-environment-42"
STORED_KEY = "AIzaStored-key-from-settings-77"


@pytest.fixture
def gemini_stack(stack_factory: Callable[..., Stack], fake: FakeGemini) -> Callable[[], Stack]:
    def start() -> Stack:
        return stack_factory(
            GEMINI_BASE_URL=fake.base_url,
            GEMINI_API_KEY=ENV_KEY,
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


def test_the_booth_gets_geminis_image(
    gemini_stack: Callable[[], Stack], fake: FakeGemini, ingest_password: str
) -> None:
    fake.expected_key = ENV_KEY
    style = register_template(stream=io.BytesIO(STYLE), original_name="style.png")
    update_slot(
        slot_id="slot-002",
        provider_id="gemini",
        operation_id="style_transfer",
        settings={"style_media_id": str(style.id), "aspect_ratio": "4:3"},
        is_active=True,
    )
    stack = gemini_stack()
    photo = make_photo(color=(90, 60, 200))
    response = post_photo(stack, "slot-002", photo, ingest_password)

    assert response.status_code == 200, stack.logs()
    assert response.headers["Content-Type"] == PNG
    assert response.content == fake.result_png
    [sent] = fake.generate_calls()
    assert sent.headers["x-goog-api-key"] == ENV_KEY
    assert FakeGemini.images_of(sent) == [(JPEG, photo), (PNG, STYLE)]
    assert sent.json()["generationConfig"]["imageConfig"] == {"aspectRatio": "4:3"}
    job = Job.objects.get(id=uuid.UUID(response.headers["X-Job-Id"]))
    assert job.succeeded and job.provider_job_reference == "fake-response-1"
    [http_call] = provider_events(job, "http_call")
    assert http_call["status"] == 200 and http_call["path"] == sent.path
    assert_keys_nowhere(stack, ENV_KEY)


def test_no_image_answers_are_retried_until_an_image_comes(
    gemini_stack: Callable[[], Stack], fake: FakeGemini, ingest_password: str
) -> None:
    fake.expected_key = ENV_KEY
    fake.mode = "no_image_then_success"
    fake.no_image_count = 2
    update_slot(
        slot_id="slot-002",
        provider_id="gemini",
        operation_id="image_edit",
        settings={"prompt": "Turn the guests into astronauts"},
        is_active=True,
    )
    stack = gemini_stack()
    response = post_photo(stack, "slot-002", make_photo(), ingest_password)

    assert response.status_code == 200, stack.logs()
    assert response.content == fake.result_png
    assert len(fake.generate_calls()) == 3
    job = Job.objects.get(id=uuid.UUID(response.headers["X-Job-Id"]))
    calls = [
        log.details
        for log in job.logs.filter(event=ProcessingLog.Event.PROVIDER_CALL).order_by("id")
    ]
    assert [c["outcome"] for c in calls] == ["retry", "retry", "success"]
    assert all(c["code"] == "no_image" and "NO_IMAGE" in c["detail"] for c in calls[:2])
    assert [e["finish_reason"] for e in provider_events(job, "no_image")] == ["NO_IMAGE"] * 2
    assert job.provider_job_reference == "fake-response-3"


def test_failures_reach_the_booth_as_502_with_the_reason_logged(
    gemini_stack: Callable[[], Stack], fake: FakeGemini, ingest_password: str
) -> None:
    fake.expected_key = ENV_KEY
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=10)
    for slot_id in ("slot-002", "slot-003"):
        update_slot(
            slot_id=slot_id,
            provider_id="gemini",
            operation_id="image_edit",
            settings={"prompt": "x"},
            is_active=True,
        )
    stack = gemini_stack()

    # A 400 is not retried: one call, and the booth hears at once.
    fake.mode = "bad_request"
    response = post_photo(stack, "slot-002", make_photo(color=(1, 2, 3)), ingest_password)
    assert response.status_code == 502, stack.logs()
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "provider_error"
    job = Job.objects.get(id=response.headers["X-Job-Id"])
    assert job.failure_reason == FailureReason.PROVIDER_ERROR
    assert "INVALID_ARGUMENT" in job.failure_detail
    assert len(fake.generate_calls()) == 1

    # No image, every time: retried, then failed with Gemini's reason in the log.
    fake.mode = "no_image"
    response = post_photo(stack, "slot-003", make_photo(color=(4, 5, 6)), ingest_password)
    assert response.status_code == 502, stack.logs()
    job = Job.objects.get(id=response.headers["X-Job-Id"])
    assert job.failure_reason == FailureReason.PROVIDER_ERROR
    assert job.failure_detail.startswith("no_image:") and "NO_IMAGE" in job.failure_detail
    assert len(fake.generate_calls()) == 1 + 3
    [last] = job.logs.filter(event=ProcessingLog.Event.PROVIDER_CALL, details__outcome="error")
    assert "finishReason NO_IMAGE" in last.details["detail"]
    assert_keys_nowhere(stack, ENV_KEY)


def test_the_key_stored_in_settings_beats_the_environments(
    gemini_stack: Callable[[], Stack], fake: FakeGemini, ingest_password: str
) -> None:
    set_api_key("gemini", STORED_KEY, changed_by="tests")
    fake.expected_key = STORED_KEY
    update_slot(
        slot_id="slot-002",
        provider_id="gemini",
        operation_id="image_edit",
        settings={"prompt": "x"},
        is_active=True,
    )
    stack = gemini_stack()
    response = post_photo(stack, "slot-002", make_photo(), ingest_password)

    assert response.status_code == 200, stack.logs()
    assert [r.headers["x-goog-api-key"] for r in fake.generate_calls()] == [STORED_KEY]
    assert_keys_nowhere(stack, STORED_KEY, ENV_KEY)
