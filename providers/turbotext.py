"""Turbotext photo AI: the guest's photo goes to Turbotext by URL, the result comes back by URL.

Turbotext only reads images from public URLs, so the photo and the slot's template are first
published as temporary media links (`/public/media/<id>`, deleted when the job ends). Each job is
then one queued task at Turbotext:

1. `POST {base}/api_ai/<method>` with `do=create_queue` and the operation's fields (form-urlencoded,
   `Authorization: Bearer <key>`) answers `{"success": true, "queueid": N}`. N is kept as the job's
   provider reference, so an operator can quote it to Turbotext's support.
2. The same endpoint with `do=get_result&queueid=N` is asked every TURBOTEXT_POLL_SECONDS (2.5 s
   by default) until the task is done, and never past the job's deadline: `{"action":
   "reconnect"}` means "not ready yet"; the finished answer carries the result's URL in
   `uploaded_image` (at the top level, or inside `data`; as a last resort the first entry of
   `data.image`, the shape of Turbotext's own image2image example). A relative URL is taken from
   Turbotext's site.
3. The result is downloaded (without the API key: it may live on another host) and accepted only
   if it really is a JPEG, PNG or WebP image.

What the operator notices:
- A task Turbotext refuses or fails (`{"success": false, "error": ...}`) fails the job at once
  with Turbotext's own message: repeating it would only be billed again.
- HTTP 429/5xx or a network error when creating the task is retried by the worker (a new task).
  The same trouble while polling an existing task is tolerated a few times in a row, so that a
  brief glitch does not cost a second, billed task.
- A task still running at the job's deadline ends the job as a timeout; nothing keeps polling.

Which image is which in `deepfake_photo` (identity_transfer): in Turbotext's API `url` is the
photo of the person whose face is replaced and `url_image_target` is the photo whose face is put
in. A photobooth wants the guest to appear in the event's scene (an astronaut, a film poster...),
so the guest's face must go onto the template's person: the template (setting `face_media_id`,
the scene with the face to be replaced) is sent as `url` and the guest's photo as
`url_image_target`. The other way round the guest would keep their own body and background and
merely wear the template's face, which is not what a face-swap booth sells.

In `mix_images` (style_transfer) `url_image_target` is the photo to process (the guest's) and `url`
the image the style comes from (the template).
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urljoin, urlsplit

from django.conf import settings as django_settings
from PIL import Image

from photobooth import metrics
from providers import http
from providers.base import (
    JPEG,
    PNG,
    WEBP,
    InputImage,
    Operation,
    Provider,
    ProviderDeadlineExceeded,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    SettingField,
)

# The Turbotext method behind each operation.
ENDPOINTS = {
    "image_edit": "/api_ai/generate_image2image",
    "style_transfer": "/api_ai/mix_images",
    "identity_transfer": "/api_ai/deepfake_photo",
}
DEFAULT_POLL_SECONDS = 2.5
# Polls of an existing task that may fail in a row (HTTP 429/5xx, network) before giving up.
MAX_POLL_ERRORS = 3
# Attempts at downloading a finished result when the download fails transiently.
MAX_DOWNLOAD_ATTEMPTS = 3
# Longest queue id we keep (they are integers in practice).
MAX_QUEUEID_CHARS = 64
RESULT_FORMATS = {"JPEG": JPEG, "PNG": PNG, "WEBP": WEBP}

PROMPT_HELP = "Sent to Turbotext as the text prompt (`content`)."


class TurbotextProvider(Provider):
    """Turbotext's photo methods: image2image with a prompt, style mix and face swap."""

    id = "turbotext"
    label = "Turbotext"
    accepted_mimes = frozenset({JPEG, PNG, WEBP})
    requires_api_key = True
    operations = {
        "image_edit": Operation(
            id="image_edit",
            label="Edit the photo with a prompt",
            fields=(
                SettingField(
                    name="prompt",
                    kind="text",
                    label="Prompt",
                    required=True,
                    help_text="What to change in the guest's photo. " + PROMPT_HELP,
                ),
                SettingField(
                    name="strength",
                    kind="integer",
                    label="Strength",
                    minimum=0,
                    maximum=80,
                    help_text="How far the result may move away from the photo, 0-80. "
                    "Empty: Turbotext's default (40).",
                ),
                SettingField(
                    name="seed",
                    kind="integer",
                    label="Seed",
                    minimum=0,
                    maximum=10**10,
                    help_text="A fixed seed repeats the same result for the same photo. "
                    "Empty: random.",
                ),
                SettingField(
                    name="scale",
                    kind="number",
                    label="Guidance scale",
                    minimum=0.1,
                    maximum=20,
                    help_text="How closely the prompt is followed, 0.1-20. "
                    "Empty: Turbotext's default (7.5).",
                ),
                SettingField(
                    name="negative_prompt",
                    kind="text",
                    label="Negative prompt",
                    help_text="What the result must not show.",
                ),
            ),
        ),
        "style_transfer": Operation(
            id="style_transfer",
            label="Style transfer (mix with a style image)",
            fields=(
                SettingField(
                    name="style_media_id",
                    kind="template",
                    label="Style template",
                    required=True,
                    help_text="The image whose style is applied to the guest's photo.",
                ),
                SettingField(
                    name="prompt",
                    kind="text",
                    label="Prompt (optional)",
                    help_text="Describes the effect to strengthen it. " + PROMPT_HELP,
                ),
            ),
        ),
        "identity_transfer": Operation(
            id="identity_transfer",
            label="Face swap (the guest's face into a scene)",
            fields=(
                SettingField(
                    name="face_media_id",
                    kind="template",
                    label="Scene template",
                    required=True,
                    help_text="A picture of a person (costume, poster, scene): the result is this "
                    "picture with the guest's face in place of theirs.",
                ),
                SettingField(
                    name="face_restore",
                    kind="boolean",
                    label="Restore the face",
                    default=True,
                    help_text="Let Turbotext touch up the swapped face.",
                ),
            ),
        ),
    }

    def run(self, request: ProviderRequest) -> ProviderResult:
        operation = self.operation(request.operation_id)
        settings = self.clean_settings(operation.id, request.settings)
        api_key = request.require_api_key(self.id)
        request.ensure_time_left()
        self._check_input("the photo", request.photo)
        images = self._images(operation, settings, request)
        path = ENDPOINTS[operation.id]
        task = _Task(
            request=request,
            api_key=api_key,
            endpoint=f"{request.base_url.rstrip('/')}{path}",
            method=path.rsplit("/", 1)[-1],
        )
        fields = form_fields(operation.id, settings, self._publish(request, images))
        queueid = task.create(fields)
        _event(request, "queued", {"queueid": queueid, "method": task.method})
        image_url = task.wait_for_result(queueid)
        data, mime = download_result(request, image_url)
        return ProviderResult(data=data, mime=mime, provider_job_reference=queueid)

    def _check_input(self, what: str, image: InputImage) -> None:
        if image.mime not in self.accepted_mimes:
            raise ProviderError(
                f"{what} is {image.mime or 'of unknown type'}: Turbotext takes JPEG, PNG or WebP",
                code="unsupported_input",
            )

    def _images(
        self, operation: Operation, settings: Mapping[str, Any], request: ProviderRequest
    ) -> dict[str, InputImage]:
        """The photo (under "photo") and the operation's template images by setting key."""
        images = {"photo": request.photo}
        for key in operation.template_keys():
            if not settings.get(key):
                continue
            image = request.templates.get(key)
            if image is None:
                raise ProviderError(
                    f"the slot's template {key!r} is missing", code="invalid_settings"
                )
            self._check_input(f"the template {key!r}", image)
            images[key] = image
        return images

    @staticmethod
    def _publish(request: ProviderRequest, images: Mapping[str, InputImage]) -> dict[str, str]:
        """A temporary public URL for each image: Turbotext downloads its inputs itself."""
        if request.publish_temporary is None:
            raise ProviderError(
                "Turbotext needs public links to the images, and none can be made here",
                code="not_configured",
            )
        return {key: request.publish_temporary(image) for key, image in images.items()}


def form_fields(
    operation_id: str, settings: Mapping[str, Any], urls: Mapping[str, str]
) -> dict[str, str]:
    """The `create_queue` form fields for an operation (without `do`)."""
    fields: dict[str, str] = {}
    if operation_id == "image_edit":
        fields["url"] = urls["photo"]
        fields["content"] = settings["prompt"]
        if settings.get("strength") is not None:
            fields["strength"] = str(int(settings["strength"]))
        if settings.get("seed") is not None:
            fields["seed"] = str(int(settings["seed"]))
        if settings.get("scale") is not None:
            fields["scale"] = f"{float(settings['scale']):g}"
        if settings.get("negative_prompt"):
            fields["negative_prompt"] = settings["negative_prompt"]
    elif operation_id == "style_transfer":
        fields["url_image_target"] = urls["photo"]
        fields["url"] = urls["style_media_id"]
        if settings.get("prompt"):
            fields["content"] = settings["prompt"]
    elif operation_id == "identity_transfer":
        # The template's person gets the guest's face (see the module docstring).
        fields["url"] = urls["face_media_id"]
        fields["url_image_target"] = urls["photo"]
        fields["face_restore"] = "1" if settings.get("face_restore", True) else "0"
    else:  # pragma: no cover - operations are declared above
        raise ProviderError(f"unknown operation {operation_id!r}", code="invalid_settings")
    return fields


class _Task:
    """One Turbotext queue task: created once, then polled until done or the deadline."""

    def __init__(self, *, request: ProviderRequest, api_key: str, endpoint: str, method: str):
        self.request = request
        self.api_key = api_key
        self.endpoint = endpoint
        self.method = method

    def _post(self, form: Mapping[str, str], *, what: str) -> Any:
        response = http.call(
            self.request,
            "POST",
            self.endpoint,
            what=what,
            headers={"Authorization": f"Bearer {self.api_key}"},
            data=dict(form),
            secrets=(self.api_key,),
        )
        return http.json_of(response, what=what)

    def _refusal(self, answer: Mapping[str, Any], *, what: str, code: str) -> ProviderError:
        reason = answer.get("error")
        text = " ".join(str(reason).split()) if reason not in (None, "") else ""
        text = http.scrub(text, (self.api_key,))[: http.MAX_ERROR_MESSAGE]
        return ProviderError(
            f"{what}: Turbotext said: {text or 'failed (no reason given)'}", code=code
        )

    def create(self, fields: Mapping[str, str]) -> str:
        """Queue the task; returns Turbotext's queue id."""
        what = f"turbotext {self.method} create_queue"
        answer = self._post({"do": "create_queue", **fields}, what=what)
        if not isinstance(answer, dict):
            raise _malformed(what, "the answer is not a JSON object")
        if answer.get("success") is False:
            raise self._refusal(answer, what=what, code="rejected")
        queueid = answer.get("queueid")
        if answer.get("success") is not True or isinstance(queueid, bool):
            raise _malformed(what, "no queue id")
        if isinstance(queueid, int) or (
            isinstance(queueid, str) and 0 < len(queueid) <= MAX_QUEUEID_CHARS
        ):
            text = str(queueid).strip()
            if text and text.isprintable():
                return text
        raise _malformed(what, "no queue id")

    def wait_for_result(self, queueid: str) -> str:
        """Poll until the task is done; returns the absolute URL of the result image."""
        what = f"turbotext {self.method} get_result"
        interval = float(getattr(django_settings, "TURBOTEXT_POLL_SECONDS", DEFAULT_POLL_SECONDS))
        polls = 0
        errors_in_a_row = 0
        outcome = "error"
        try:
            while True:
                _sleep_until_next_poll(self.request, interval)
                polls += 1
                try:
                    answer = self._post({"do": "get_result", "queueid": queueid}, what=what)
                except ProviderDeadlineExceeded:
                    raise
                except ProviderError as error:
                    # The task exists and is billed: a glitch while asking about it is waited
                    # out (a few times in a row) rather than ending in a new task.
                    errors_in_a_row += 1
                    if not error.retryable or errors_in_a_row >= MAX_POLL_ERRORS:
                        raise
                    _event(
                        self.request,
                        "poll_error",
                        {"queueid": queueid, "code": error.code, "in_a_row": errors_in_a_row},
                    )
                    continue
                errors_in_a_row = 0
                if isinstance(answer, dict) and answer.get("action") == "reconnect":
                    continue
                url = self._result_url(answer, what=what)
                outcome = "ready"
                return url
        except ProviderDeadlineExceeded:
            outcome = "deadline"
            raise
        finally:
            metrics.observe_turbotext_polling(polls, outcome)
            _event(self.request, "polled", {"queueid": queueid, "polls": polls, "outcome": outcome})

    def _result_url(self, answer: Any, *, what: str) -> str:
        if not isinstance(answer, dict):
            raise _malformed(what, "the answer is not a JSON object")
        if answer.get("success") is False:
            raise self._refusal(answer, what=what, code="provider_failed")
        if answer.get("success") is not True:
            raise _malformed(what, "neither a result nor a request to reconnect")
        data = answer.get("data")
        data = data if isinstance(data, dict) else {}
        candidates: list[Any] = [answer.get("uploaded_image"), data.get("uploaded_image")]
        listed = data.get("image")
        if isinstance(listed, list) and listed:
            candidates.append(listed[0])
        for candidate in candidates:
            if isinstance(candidate, str) and candidate.strip():
                return absolute_url(self.request.base_url, candidate.strip(), what=what)
        raise _malformed(what, "the task finished without an image URL")


def absolute_url(base_url: str, url: str, *, what: str) -> str:
    """`url` as an absolute http(s) URL: relative ones are on the provider's own site."""
    base = urlsplit(base_url)
    origin = f"{base.scheme}://{base.netloc}/" if base.scheme and base.netloc else ""
    joined = urljoin(origin, url)
    parts = urlsplit(joined)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _malformed(what, "the result URL is not an http(s) URL")
    return joined


def download_result(request: ProviderRequest, url: str) -> tuple[bytes, str]:
    """The result image's bytes and type; transient failures are retried within the deadline."""
    what = "turbotext result download"
    interval = float(getattr(django_settings, "TURBOTEXT_POLL_SECONDS", DEFAULT_POLL_SECONDS))
    attempt = 0
    while True:
        attempt += 1
        try:
            data, _ = http.download(request, url, what=what)
            break
        except ProviderDeadlineExceeded:
            raise
        except ProviderError as error:
            if not error.retryable or attempt >= MAX_DOWNLOAD_ATTEMPTS:
                raise
            _event(request, "download_retry", {"code": error.code, "attempt": attempt})
            _sleep_until_next_poll(request, interval)
    return data, image_type(data, what=what)


def image_type(data: bytes, *, what: str) -> str:
    """The MIME type of a JPEG, PNG or WebP image, read from its bytes (not the headers)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            found = image.format or ""
    except (OSError, ValueError, Image.DecompressionBombError):
        found = ""
    mime = RESULT_FORMATS.get(found)
    if mime is None:
        raise _malformed(what, "the result is not a JPEG, PNG or WebP image")
    return mime


def _sleep_until_next_poll(request: ProviderRequest, interval: float) -> None:
    """Wait one poll interval, never past the deadline (then ProviderDeadlineExceeded)."""
    remaining = request.ensure_time_left()
    time.sleep(min(interval, remaining))
    if request.remaining_seconds() <= 0:
        raise ProviderDeadlineExceeded("Turbotext had not finished the task by the deadline")


def _event(request: ProviderRequest, name: str, details: Mapping[str, Any]) -> None:
    if request.record_event is not None:
        request.record_event(name, details)


def _malformed(what: str, why: str) -> ProviderError:
    return ProviderError(f"{what}: malformed answer: {why}", code="malformed_response")
