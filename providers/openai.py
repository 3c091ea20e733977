"""OpenAI image edits (GPT Image models): the guest's photo and any templates plus a prompt.

Every job is one `POST /v1/images/edits` multipart request: the prompt (which says what each
image is), the guest's photo as the first `image[]` file and the slot's template (a style or a
face reference) as the second. The edited image comes back base64-encoded in the JSON answer,
in the format the slot asks for (JPEG by default, what booths print).

An answer without an image is reported as a retryable "no_image" error, so the worker tries
again while the job's deadline allows. OpenAI repeats part of a refused key in its error message
("Incorrect API key provided: sk-ab***wxyz"); that fragment is masked before the message reaches
any log.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

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
    SettingsInvalid,
)
from providers.prompted import (
    TEMPLATE_ROLES,
    image_operations,
    prompt_text,
)

DEFAULT_MODEL = "gpt-image-1.5"
EDITS_PATH = "/v1/images/edits"
WHAT = "openai images/edits"
# A model name is sent as a form field; plain names only, so a typo is caught when the slot is
# saved rather than at the first guest's photo.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MODEL_NAME_RULE = "must be a model name made of letters, digits, '.', '-' and '_'"
# The API refuses longer prompts.
MAX_PROMPT_CHARS = 32000
# The API refuses input images of 50 MB or more.
MAX_INPUT_BYTES = 50 * 1024 * 1024

OUTPUT_MIMES = {"jpeg": JPEG, "png": PNG, "webp": WEBP}
SIZES = ("auto", "1024x1024", "1024x1536", "1536x1024")
QUALITIES = ("auto", "low", "medium", "high")
INPUT_FIDELITIES = ("auto", "low", "high")
EXTENSIONS = {JPEG: "jpg", PNG: "png", WEBP: "webp"}

DEFAULT_STYLE_PROMPT = (
    "Redraw the first image in the artistic style of the second image: its colours, textures "
    "and technique. Keep every person recognizable, with the same pose, expression and "
    "composition."
)
# A key OpenAI repeats with its middle masked: any word holding a run of asterisks.
MASKED_SECRET = re.compile(r"[A-Za-z0-9_-]*\*{3,}[A-Za-z0-9_-]*")


MODEL = SettingField(
    name="model",
    kind="string",
    label="Model",
    default=DEFAULT_MODEL,
    help_text="The GPT Image model, e.g. gpt-image-1.5, gpt-image-1 or gpt-image-1-mini.",
)
OUTPUT_FORMAT = SettingField(
    name="output_format",
    kind="choice",
    label="Result format",
    default="jpeg",
    choices=tuple(OUTPUT_MIMES),
    help_text="JPEG is what booths print; PNG and WebP are also offered.",
)
SIZE = SettingField(
    name="size",
    kind="choice",
    label="Result size",
    default="auto",
    choices=SIZES,
    help_text="1024x1536 is portrait, 1536x1024 landscape. auto: the model picks one that "
    "suits the photo.",
)
QUALITY = SettingField(
    name="quality",
    kind="choice",
    label="Quality",
    default="auto",
    choices=QUALITIES,
    help_text="Higher quality takes longer: 'high' may not finish before the booth's deadline.",
)
INPUT_FIDELITY = SettingField(
    name="input_fidelity",
    kind="choice",
    label="Input fidelity",
    default="auto",
    choices=INPUT_FIDELITIES,
    help_text="'high' keeps faces and details of the input images closer (not offered by "
    "gpt-image-1-mini). auto: the model's default.",
)
COMMON_FIELDS = (MODEL, OUTPUT_FORMAT, SIZE, QUALITY, INPUT_FIDELITY)


class OpenAIProvider(Provider):
    """OpenAI's GPT Image models through the Images API's edits endpoint."""

    id = "openai"
    label = "OpenAI image edits"
    accepted_mimes = frozenset({JPEG, PNG, WEBP})
    requires_api_key = True
    operations = image_operations(COMMON_FIELDS, style_prompt=DEFAULT_STYLE_PROMPT)

    def clean_settings(self, operation_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Settings validated for the operation; a plain model name and a prompt with words.

        Every problem is reported at once, each under its field.
        """
        try:
            cleaned = super().clean_settings(operation_id, settings)
        except SettingsInvalid as invalid:
            errors = dict(invalid.errors)
            if "operation_id" not in errors and isinstance(settings, Mapping):
                errors.update({k: v for k, v in _extra_errors(settings).items() if k not in errors})
            raise SettingsInvalid(errors) from None
        errors = _extra_errors(cleaned)
        if errors:
            raise SettingsInvalid(errors)
        return cleaned

    def run(self, request: ProviderRequest) -> ProviderResult:
        operation = self.operation(request.operation_id)
        settings = self.clean_settings(operation.id, request.settings)
        api_key = request.require_api_key(self.id)
        images = self._images(operation, settings, request)
        request.ensure_time_left()
        url = f"{request.base_url.rstrip('/')}{EDITS_PATH}"
        try:
            response = http.call(
                request,
                "POST",
                url,
                what=WHAT,
                headers={"Authorization": f"Bearer {api_key}"},
                data=form_fields(settings, [role for role, _, _ in images]),
                files=[
                    ("image[]", (file_name, image.data, image.mime))
                    for _, file_name, image in images
                ],
                secrets=(api_key,),
            )
        except ProviderError as error:
            raise _masked(error) from None
        answer = http.json_of(response, what=WHAT)
        result = read_answer(answer, output_format=settings["output_format"])
        reference = response.headers.get("x-request-id", "")[:128]
        return ProviderResult(data=result.data, mime=result.mime, provider_job_reference=reference)

    def _images(
        self, operation: Operation, settings: Mapping[str, Any], request: ProviderRequest
    ) -> list[tuple[str, str, InputImage]]:
        """(role, upload file name, image): the photo first, then the slot's templates."""
        images = [("the guest's photo", _file_name("photo", request.photo), request.photo)]
        for key in operation.template_keys():
            if not settings.get(key):
                continue
            image = request.templates.get(key)
            if image is None:
                raise ProviderError(
                    f"the slot's template {key!r} is missing", code="invalid_settings"
                )
            role = TEMPLATE_ROLES.get(key, "a template")
            stem = key.removesuffix("_media_id") if key != "face_media_id" else "scene"
            images.append((role, _file_name(stem, image), image))
        for role, _, image in images:
            if image.mime not in self.accepted_mimes:
                raise ProviderError(
                    f"OpenAI does not accept {image.mime} images ({role}): use JPEG, PNG or WebP",
                    code="invalid_image",
                )
            if len(image.data) >= MAX_INPUT_BYTES:
                raise ProviderError(
                    f"{role} is larger than OpenAI accepts (50 MB)", code="invalid_image"
                )
        return images


def form_fields(settings: Mapping[str, Any], roles: list[str]) -> dict[str, str]:
    """The multipart text fields: model, prompt, output format, n=1 and any chosen options."""
    fields = {
        "model": settings["model"],
        "prompt": prompt_text(settings["prompt"], roles),
        "output_format": settings["output_format"],
        "n": "1",
    }
    for name in ("size", "quality", "input_fidelity"):
        if settings.get(name, "auto") != "auto":
            fields[name] = settings[name]
    return fields


def read_answer(answer: Any, *, output_format: str) -> ProviderResult:
    """The image in an images/edits answer, checked to be in the format asked for."""
    if not isinstance(answer, dict):
        raise _malformed("the answer is not a JSON object")
    data = answer.get("data")
    if data == []:
        raise ProviderError(f"{WHAT}: the answer holds no image", code="no_image", retryable=True)
    if not isinstance(data, list) or not isinstance(data[0], dict):
        raise _malformed("data is not a list of images")
    encoded = data[0].get("b64_json")
    if not isinstance(encoded, str) or not encoded:
        raise _malformed("the image has no b64_json")
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("b64_json is not valid base64") from None
    expected = OUTPUT_MIMES.get(output_format, JPEG)
    found = sniff(decoded)
    if found != expected:
        raise _malformed(f"expected a {expected} image, got {found or 'something else'}")
    return ProviderResult(data=decoded, mime=expected)


def sniff(data: bytes) -> str:
    """The image type from its first bytes, or "" when it is none of JPEG, PNG and WebP."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return ""


def _extra_errors(settings: Mapping[str, Any]) -> dict[str, list[str]]:
    """What the generic checks let through but OpenAI would refuse."""
    errors: dict[str, list[str]] = {}
    model = settings.get("model")
    if isinstance(model, str) and model and not MODEL_NAME.fullmatch(model):
        errors["model"] = [MODEL_NAME_RULE]
    prompt = settings.get("prompt")
    if isinstance(prompt, str) and prompt:
        if not prompt.strip():
            errors["prompt"] = ["must not be blank"]
        elif len(prompt) > MAX_PROMPT_CHARS:
            errors["prompt"] = [f"must be at most {MAX_PROMPT_CHARS} characters"]
    return errors


def _file_name(stem: str, image: InputImage) -> str:
    return f"{stem}.{EXTENSIONS.get(image.mime, 'bin')}"


def _masked(error: ProviderError) -> ProviderError:
    """The same error with any partly masked key in OpenAI's message hidden entirely."""
    if isinstance(error, ProviderDeadlineExceeded) or not MASKED_SECRET.search(error.message):
        return error
    return ProviderError(
        MASKED_SECRET.sub("***", error.message), code=error.code, retryable=error.retryable
    )


def _malformed(why: str) -> ProviderError:
    return ProviderError(f"{WHAT}: malformed answer: {why}", code="malformed_response")
