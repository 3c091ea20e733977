"""A fake Gemini API: `generateContent` on loopback, checking requests like the real one does.

Modes (set `fake.mode`):
- `success`: a small solid green PNG (`fake.result_png`) in a camelCase `inlineData` part, after
  a short text part; `snake_case`: the same with `inline_data` / `mime_type`.
- `slow`: answers after 30 s (longer than any test deadline).
- `bad_request` (400 INVALID_ARGUMENT), `unauthorized` (403 PERMISSION_DENIED),
  `server_error` (503 UNAVAILABLE), `rate_limited` (429 RESOURCE_EXHAUSTED).
- `malformed`: 200 with a body that is not JSON; `bad_base64`: 200 with image data that is not
  base64.
- `no_image`: 200, `finishReason: NO_IMAGE` and no parts (seen in production);
  `no_image_then_success`: that for the first `no_image_count` answers, then success.
- `text_only`: 200 with only a text part; `blocked`: 200 with `promptFeedback.blockReason`.

Whatever the mode, a request the real API would refuse is refused first: a wrong key (400 "API
key not valid"), no key (403), an unknown model (404), a body that is not valid JSON, no
contents/parts, image data that does not decode, `responseMimeType` in generationConfig, an
unknown aspect ratio or image size (400 INVALID_ARGUMENT).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import threading
from typing import Any

from PIL import Image

from tests.support.fake_http import FakeProvider, Recorded, Reply

GREEN = (20, 200, 60)
PATH = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):generateContent$")
KNOWN_MODELS = frozenset(
    {
        "gemini-2.5-flash-image",
        "gemini-2.5-flash-image-preview",
        "gemini-3-pro-image-preview",
    }
)
IMAGE_SIZE_MODELS = frozenset({"gemini-3-pro-image-preview"})
ASPECT_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
IMAGE_SIZES = frozenset({"1K", "2K", "4K"})
MODALITIES = frozenset({"TEXT", "IMAGE"})


def solid_png(color: tuple[int, int, int] = GREEN, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def error(code: int, status: str, message: str) -> Reply:
    """An error in Google's JSON shape."""
    return Reply(code, {"error": {"code": code, "message": message, "status": status}})


class FakeGemini(FakeProvider):
    """The Gemini REST API's `generateContent`, for image models."""

    def __init__(self, *, expected_key: str = "fake-gemini-key", no_image_count: int = 2) -> None:
        super().__init__()
        self.expected_key = expected_key
        self.no_image_count = no_image_count
        self.result_png = solid_png()
        self.slow_seconds = 30.0
        self._answered = 0
        self._count_lock = threading.Lock()
        # Stop within 50 ms rather than the default half-second poll (tests start one each).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- what tests read -----------------------------------------------------------------------
    def generate_calls(self) -> list[Recorded]:
        return self.received(":generateContent")

    @staticmethod
    def parts_of(recorded: Recorded) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = recorded.json()["contents"][0]["parts"]
        return parts

    @classmethod
    def prompt_of(cls, recorded: Recorded) -> str:
        return " ".join(p["text"] for p in cls.parts_of(recorded) if "text" in p)

    @classmethod
    def images_of(cls, recorded: Recorded) -> list[tuple[str, bytes]]:
        """The (mime type, bytes) of each inline image sent, in order."""
        images = []
        for part in cls.parts_of(recorded):
            inline = part.get("inline_data", part.get("inlineData"))
            if inline is not None:
                mime = inline.get("mime_type", inline.get("mimeType"))
                images.append((mime, base64.b64decode(inline["data"])))
        return images

    # --- the API -------------------------------------------------------------------------------
    def handle(self, request: Recorded) -> Reply:
        match = PATH.match(request.path)
        if request.method != "POST" or match is None:
            return error(404, "NOT_FOUND", "Requested entity was not found.")
        key = request.headers.get("x-goog-api-key", "")
        if not key:
            return error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        if key != self.expected_key:
            return error(400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.")
        model = match.group("model")
        if model not in KNOWN_MODELS:
            return error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, or is not supported for "
                "generateContent.",
            )
        invalid = self._invalid(request, model)
        if invalid:
            return error(400, "INVALID_ARGUMENT", invalid)
        return self._answer(model)

    def _invalid(self, request: Recorded, model: str) -> str:
        """Why the real API would refuse this body, or ""."""
        try:
            body = json.loads(request.body)
        except ValueError:
            return "Invalid JSON payload received."
        if not isinstance(body, dict):
            return "Invalid JSON payload received. Root element must be a message."
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            return "* GenerateContentRequest.contents: contents is not specified"
        for content in contents:
            parts = content.get("parts") if isinstance(content, dict) else None
            if not isinstance(parts, list) or not parts:
                return (
                    "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty."
                )
            for part in parts:
                problem = self._invalid_part(part)
                if problem:
                    return problem
        config = body.get("generationConfig", body.get("generation_config", {}))
        if not isinstance(config, dict):
            return "Invalid value at 'generation_config'"
        if "responseMimeType" in config or "response_mime_type" in config:
            return (
                "* GenerateContentRequest.generation_config.response_mime_type: allowed "
                "mimetypes are `text/plain`, `application/json`, `application/xml`, "
                "`application/yaml` and `text/x.enum`."
            )
        modalities = config.get("responseModalities", config.get("response_modalities", []))
        if not isinstance(modalities, list) or not set(modalities) <= MODALITIES:
            return "Invalid value at 'generation_config.response_modalities'"
        image_config = config.get("imageConfig", config.get("image_config", {}))
        if not isinstance(image_config, dict):
            return "Invalid value at 'generation_config.image_config'"
        ratio = image_config.get("aspectRatio", image_config.get("aspect_ratio"))
        if ratio is not None and ratio not in ASPECT_RATIOS:
            return f"Unsupported aspect ratio: {ratio}"
        size = image_config.get("imageSize", image_config.get("image_size"))
        if size is not None and (size not in IMAGE_SIZES or model not in IMAGE_SIZE_MODELS):
            return f"Unsupported image size: {size}"
        return ""

    @staticmethod
    def _invalid_part(part: Any) -> str:
        if not isinstance(part, dict) or not part:
            return "* GenerateContentRequest.contents.parts: part must have one data field"
        if "text" in part:
            return "" if isinstance(part["text"], str) else "Invalid value at 'parts.text'"
        inline = part.get("inline_data", part.get("inlineData"))
        if not isinstance(inline, dict):
            return "* GenerateContentRequest.contents.parts: unknown part kind"
        mime = inline.get("mime_type", inline.get("mimeType"))
        if not isinstance(mime, str) or not mime.startswith("image/"):
            return f"Unsupported MIME type: {mime}"
        try:
            data = base64.b64decode(inline.get("data", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            return (
                "Invalid value at 'contents.parts.inline_data.data' (TYPE_BYTES), "
                "Base64 decoding failed"
            )
        if not data:
            return "* GenerateContentRequest.contents.parts.inline_data.data: empty data"
        return ""

    def _answer(self, model: str) -> Reply:
        with self._count_lock:
            self._answered += 1
            number = self._answered
        mode = self.mode
        if mode == "no_image_then_success":
            mode = "no_image" if number <= self.no_image_count else "success"
        if mode == "slow":
            return Reply(
                200, self._image_answer(model, number, camel=True), delay=self.slow_seconds
            )
        if mode in ("success", "snake_case"):
            return Reply(200, self._image_answer(model, number, camel=mode == "success"))
        if mode == "bad_request":
            return error(400, "INVALID_ARGUMENT", "Request contains an invalid argument.")
        if mode == "unauthorized":
            return error(
                403,
                "PERMISSION_DENIED",
                "Permission denied: Consumer has been suspended.",
            )
        if mode == "server_error":
            return error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if mode == "rate_limited":
            return error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing details.",
            )
        if mode == "malformed":
            return Reply(200, "<html>upstream hiccup</html>", {"Content-Type": "application/json"})
        if mode == "bad_base64":
            return Reply(
                200,
                self._with_parts(
                    model, number, [{"inlineData": {"mimeType": "image/png", "data": "@@not!"}}]
                ),
            )
        if mode == "no_image":
            return Reply(
                200,
                {
                    "candidates": [{"content": {}, "finishReason": "NO_IMAGE", "index": 0}],
                    "modelVersion": model,
                    "responseId": f"fake-response-{number}",
                },
            )
        if mode == "text_only":
            text = "I can't edit this photo as requested, but here is a description instead."
            return Reply(200, self._with_parts(model, number, [{"text": text}]))
        if mode == "blocked":
            return Reply(
                200,
                {
                    "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
                    "modelVersion": model,
                    "responseId": f"fake-response-{number}",
                },
            )
        raise AssertionError(f"unknown FakeGemini mode {self.mode!r}")

    def _image_answer(self, model: str, number: int, *, camel: bool) -> dict[str, Any]:
        data = base64.b64encode(self.result_png).decode("ascii")
        inline = (
            {"inlineData": {"mimeType": "image/png", "data": data}}
            if camel
            else {"inline_data": {"mime_type": "image/png", "data": data}}
        )
        return self._with_parts(model, number, [{"text": "Here is your edited photo."}, inline])

    @staticmethod
    def _with_parts(model: str, number: int, parts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "candidates": [
                {
                    "content": {"role": "model", "parts": parts},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": {"promptTokenCount": 1290, "totalTokenCount": 2580},
            "modelVersion": model,
            "responseId": f"fake-response-{number}",
        }
