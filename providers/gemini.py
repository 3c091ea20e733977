"""Google Gemini image editing: the guest's photo (and any templates) plus a prompt, one call.

Every job is one `generateContent` request carrying the prompt and the images inline (base64).
Gemini sometimes answers HTTP 200 without an image (`finishReason: NO_IMAGE`, a safety block, or
only text); that answer is reported as a retryable "no_image" error, so the worker tries again
while the job's deadline allows and, failing that, the job's log says why.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from providers import http
from providers.base import (
    HEIC,
    JPEG,
    PNG,
    WEBP,
    InputImage,
    Operation,
    Provider,
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

DEFAULT_MODEL = "gemini-2.5-flash-image"
# Only this model takes an output size; the others always answer at their own resolution.
IMAGE_SIZE_MODELS = frozenset({"gemini-3-pro-image-preview"})
ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
IMAGE_SIZES = ("1K", "2K", "4K")
# A model name goes into the URL path: plain names only (no "/", "?", "%", spaces...).
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
MODEL_NAME_RULE = "must be a model name made of letters, digits, '.', '-' and '_'"
# How much of a text-only answer is kept in the error message.
TEXT_EXCERPT_CHARS = 160

DEFAULT_STYLE_PROMPT = (
    "Apply the style of the second image to the first photo, keep the people recognizable."
)


class ModelNameField(SettingField):
    """A `string` setting holding a Gemini model name, refused unless it is a plain name."""

    def clean(self, value: Any) -> Any:
        cleaned = super().clean(value)
        if not MODEL_NAME.fullmatch(cleaned):
            raise ValueError(MODEL_NAME_RULE)
        return cleaned


MODEL = ModelNameField(
    name="model",
    kind="string",
    label="Model",
    default=DEFAULT_MODEL,
    help_text="The Gemini image model, e.g. gemini-2.5-flash-image or gemini-3-pro-image-preview.",
)
ASPECT_RATIO = SettingField(
    name="aspect_ratio",
    kind="choice",
    label="Aspect ratio",
    default="",
    choices=("", *ASPECT_RATIOS),
    help_text="Shape of the result. Empty: the model's default (usually the photo's shape).",
)
IMAGE_SIZE = SettingField(
    name="image_size",
    kind="choice",
    label="Image size",
    default="",
    choices=("", *IMAGE_SIZES),
    help_text="Resolution of the result (1K, 2K or 4K). Only gemini-3-pro-image-preview "
    "takes it; other models ignore it. Empty: the model's default.",
)
COMMON_FIELDS = (MODEL, ASPECT_RATIO, IMAGE_SIZE)


class GeminiProvider(Provider):
    """Google Gemini ("Nano Banana") image models through the Generative Language REST API."""

    id = "gemini"
    label = "Google Gemini"
    accepted_mimes = frozenset({JPEG, PNG, WEBP, HEIC})
    requires_api_key = True
    operations = image_operations(COMMON_FIELDS, style_prompt=DEFAULT_STYLE_PROMPT)

    def clean_settings(self, operation_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Settings validated for the operation; the model must be a plain model name."""
        cleaned = super().clean_settings(operation_id, settings)
        model = cleaned.get("model", DEFAULT_MODEL)
        if not isinstance(model, str) or not MODEL_NAME.fullmatch(model):
            raise SettingsInvalid({"model": [MODEL_NAME_RULE]})
        return cleaned

    def run(self, request: ProviderRequest) -> ProviderResult:
        operation = self.operation(request.operation_id)
        settings = self.clean_settings(operation.id, request.settings)
        api_key = request.require_api_key(self.id)
        request.ensure_time_left()
        templates = self._templates(operation, settings, request)
        model = settings["model"]
        url = f"{request.base_url.rstrip('/')}/v1beta/models/{model}:generateContent"
        response = http.call(
            request,
            "POST",
            url,
            what="gemini generateContent",
            headers={"x-goog-api-key": api_key},
            json_body=request_body(settings, request.photo, templates),
            secrets=(api_key,),
        )
        answer = http.json_of(response, what="gemini generateContent")
        return read_answer(answer, request=request, model=model)

    def _templates(
        self, operation: Operation, settings: Mapping[str, Any], request: ProviderRequest
    ) -> list[tuple[str, InputImage]]:
        """The slot's template images by setting key, in the order the operation declares them."""
        images = []
        for key in operation.template_keys():
            if not settings.get(key):
                continue
            image = request.templates.get(key)
            if image is None:
                raise ProviderError(
                    f"the slot's template {key!r} is missing", code="invalid_settings"
                )
            images.append((key, image))
        return images


def request_body(
    settings: Mapping[str, Any], photo: InputImage, templates: list[tuple[str, InputImage]]
) -> dict[str, Any]:
    """The generateContent JSON: the prompt (with the images' roles), the photo, the templates."""
    roles = ["the guest's photo", *(TEMPLATE_ROLES.get(key, "a template") for key, _ in templates)]
    parts: list[dict[str, Any]] = [{"text": prompt_text(settings["prompt"], roles)}]
    for image in [photo, *(image for _, image in templates)]:
        parts.append(
            {
                "inline_data": {
                    "mime_type": image.mime,
                    "data": base64.b64encode(image.data).decode("ascii"),
                }
            }
        )
    generation: dict[str, Any] = {"responseModalities": ["IMAGE"]}
    image_config: dict[str, str] = {}
    if settings.get("aspect_ratio"):
        image_config["aspectRatio"] = settings["aspect_ratio"]
    if settings.get("image_size") and settings["model"] in IMAGE_SIZE_MODELS:
        image_config["imageSize"] = settings["image_size"]
    if image_config:
        generation["imageConfig"] = image_config
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": generation}


def read_answer(answer: Any, *, request: ProviderRequest, model: str) -> ProviderResult:
    """The first image in a generateContent answer, or a ProviderError saying why there is none."""
    if not isinstance(answer, dict):
        raise _malformed("the answer is not a JSON object")
    candidates = answer.get("candidates") or []
    if not isinstance(candidates, list):
        raise _malformed("candidates is not a list")
    image_parts: list[Mapping[str, Any]] = []
    texts: list[str] = []
    finish_reasons: list[str] = []
    for candidate in candidates:
        if not isinstance(candidate, dict):
            continue
        if candidate.get("finishReason"):
            finish_reasons.append(str(candidate["finishReason"]))
        content = candidate.get("content")
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else []:
            if not isinstance(part, dict):
                continue
            inline = part.get("inlineData", part.get("inline_data"))
            if isinstance(inline, dict):
                # Thinking models may show draft images (`thought: true`); the final one wins.
                image_parts.append({**inline, "_thought": bool(part.get("thought"))})
            elif isinstance(part.get("text"), str) and not part.get("thought"):
                texts.append(part["text"])
    final = [part for part in image_parts if not part["_thought"]] or image_parts
    if final:
        return _decode(final[0], reference=str(answer.get("responseId") or ""))
    raise _no_image(
        answer, request=request, model=model, finish_reasons=finish_reasons, texts=texts
    )


def _decode(inline: Mapping[str, Any], *, reference: str) -> ProviderResult:
    data = inline.get("data")
    mime = inline.get("mimeType", inline.get("mime_type"))
    if not isinstance(data, str) or not data:
        raise _malformed("the image part has no data")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed("the image data is not valid base64") from None
    if not decoded:
        raise _malformed("the image is empty")
    mime = mime.lower() if isinstance(mime, str) else ""
    if not mime.startswith("image/"):
        mime = _sniff(decoded)
    return ProviderResult(data=decoded, mime=mime, provider_job_reference=reference[:128])


def _sniff(data: bytes) -> str:
    """The image type from its first bytes, for answers that do not say (PNG when unsure)."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    return PNG


def _no_image(
    answer: Mapping[str, Any],
    *,
    request: ProviderRequest,
    model: str,
    finish_reasons: list[str],
    texts: list[str],
) -> ProviderError:
    feedback = answer.get("promptFeedback")
    block_reason = ""
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        block_reason = str(feedback["blockReason"])
    finish_reason = ", ".join(dict.fromkeys(finish_reasons))
    reasons = []
    if finish_reason:
        reasons.append(f"finishReason {finish_reason}")
    if block_reason:
        reasons.append(f"blockReason {block_reason}")
    if not reasons:
        reasons.append("no candidates" if not answer.get("candidates") else "no image part")
    text = " ".join(" ".join(texts).split())
    if len(text) > TEXT_EXCERPT_CHARS:
        text = text[: TEXT_EXCERPT_CHARS - 1] + "…"
    if request.record_event is not None:
        request.record_event(
            "no_image",
            {
                "model": model,
                "finish_reason": finish_reason,
                "block_reason": block_reason,
                "text": text,
            },
        )
    message = f"gemini answered without an image ({'; '.join(reasons)})"
    if text:
        message += f': "{text}"'
    return ProviderError(message, code="no_image", retryable=True)


def _malformed(why: str) -> ProviderError:
    return ProviderError(
        f"gemini generateContent: malformed answer: {why}", code="malformed_response"
    )
