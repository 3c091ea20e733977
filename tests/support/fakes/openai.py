"""A fake OpenAI Images API: `POST /v1/images/edits` on loopback, checking requests like OpenAI.

Modes (set `fake.mode`):
- `success`: a small solid purple image (`RESULT_COLOR`) in the requested `output_format`
  (PNG when none is given), base64 in `data[0].b64_json`, with an `x-request-id` header.
- `slow`: the same answer after `slow_seconds` (30 s, longer than any test deadline).
- `bad_request` (400 `invalid_request_error`), `moderation_blocked` (400, the safety refusal),
  `server_error` (`server_error_status`, 500 by default; 503 works too), `rate_limited`
  (429 `rate_limit_exceeded`).
- `malformed`: 200 with a body that is not JSON; `empty_data`: 200 with `data: []`;
  `bad_base64`: 200 with `b64_json` that is not base64; `wrong_format`: 200 with a PNG whatever
  format was asked for.
- `flaky`: 503 for the first `flaky_failures` requests, then success.

Whatever the mode, a request the real API would refuse is refused first: no or a wrong
`Authorization: Bearer` key (401, the wrong key repeated with its middle masked, like OpenAI
does), a body that is not multipart, a missing or unknown model, a missing prompt, no `image[]`
file, an image that is not PNG/JPEG/WebP, an unknown output format, size, quality or fidelity
(400 `invalid_request_error`).
"""

from __future__ import annotations

import base64
import io
import itertools
import threading
import time
from collections.abc import Mapping
from typing import Any

from PIL import Image

from tests.support.fake_http import FakeProvider, Recorded, Reply

EDITS_PATH = "/v1/images/edits"
RESULT_COLOR = (150, 40, 210)
RESULT_SIZE = (64, 96)
KNOWN_MODELS = frozenset(
    {"gpt-image-1.5", "gpt-image-1", "gpt-image-1-mini", "chatgpt-image-latest"}
)
FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
SIZES = frozenset({"auto", "1024x1024", "1024x1536", "1536x1024"})
QUALITIES = frozenset({"auto", "low", "medium", "high"})
FIDELITIES = frozenset({"low", "high"})
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
MAX_IMAGES = 16

Part = tuple[str, str | None, str, bytes]


def solid_image(
    fmt: str = "jpeg",
    color: tuple[int, int, int] = RESULT_COLOR,
    size: tuple[int, int] = RESULT_SIZE,
) -> bytes:
    """A one-colour image encoded as `fmt` (png, jpeg or webp)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=FORMATS[fmt])
    return buffer.getvalue()


def error(
    status: int, message: str, *, type_: str, code: str | None = None, param: str | None = None
) -> Reply:
    """An error in OpenAI's JSON shape."""
    return Reply(
        status, {"error": {"message": message, "type": type_, "param": param, "code": code}}
    )


def invalid(message: str, *, param: str | None = None, code: str | None = None) -> Reply:
    return error(400, message, type_="invalid_request_error", param=param, code=code)


def masked(key: str) -> str:
    """A key as OpenAI repeats it in errors: a few first and the last four characters."""
    return f"{key[:3]}{'*' * max(4, len(key) - 7)}{key[-4:]}"


class FakeOpenAI(FakeProvider):
    """OpenAI's image edits endpoint, for GPT Image models."""

    def __init__(self, *, expected_key: str = "sk-fake-openai-key", flaky_failures: int = 1):
        super().__init__()
        self.expected_key = expected_key
        self.flaky_failures = flaky_failures
        self.server_error_status = 500
        self.slow_seconds = 30.0
        self._answered = 0
        self._count_lock = threading.Lock()
        self._request_ids = itertools.count(1)
        # Stop within 50 ms rather than the default half-second poll (tests start one each).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- what tests read -----------------------------------------------------------------------
    def edit_calls(self) -> list[Recorded]:
        return self.received(EDITS_PATH)

    @staticmethod
    def fields_of(recorded: Recorded) -> dict[str, str]:
        """The text fields of a request (the last value of each)."""
        return {
            name: data.decode()
            for name, file_name, _, data in recorded.multipart()
            if file_name is None
        }

    @staticmethod
    def images_of(recorded: Recorded) -> list[tuple[str, str, bytes]]:
        """The (file name, content type, bytes) of each `image[]` file sent, in order."""
        return [
            (file_name or "", content_type, data)
            for name, file_name, content_type, data in recorded.multipart()
            if name == "image[]" and file_name is not None
        ]

    # --- the API -------------------------------------------------------------------------------
    def handle(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != EDITS_PATH:
            return invalid(f"Invalid URL ({request.method} {request.path})")
        authorization = request.headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            return error(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                type_="invalid_request_error",
            )
        key = authorization[7:].strip()
        if key != self.expected_key:
            return error(
                401,
                f"Incorrect API key provided: {masked(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                type_="invalid_request_error",
                code="invalid_api_key",
            )
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return invalid(
                "Invalid Content-Type header (application/json), expected multipart/form-data."
            )
        try:
            parts: list[Part] = request.multipart()
        except Exception:  # any parse failure is the client's
            return invalid("Could not parse multipart form")
        problem = self._invalid(parts)
        if problem is not None:
            return problem
        fields = {name: data.decode() for name, file_name, _, data in parts if file_name is None}
        return self._answer(fields)

    def _invalid(self, parts: list[Part]) -> Reply | None:
        """Why the real API would refuse this form, or None."""
        fields: dict[str, str] = {}
        images: list[Part] = []
        for part in parts:
            name, file_name, _, data = part
            if name in ("image", "image[]") and file_name is not None:
                images.append(part)
            elif file_name is None:
                try:
                    fields[name] = data.decode()
                except UnicodeDecodeError:
                    return invalid(f"Invalid value for '{name}'.", param=name)
        model = fields.get("model", "")
        if not model:
            # Without a model the endpoint falls back to dall-e-2, which our adapter never wants.
            return invalid("Missing required parameter: 'model'.", param="model")
        if model not in KNOWN_MODELS:
            return invalid(
                f"Invalid value: '{model}'. Supported values are: "
                + ", ".join(f"'{m}'" for m in sorted(KNOWN_MODELS))
                + ".",
                param="model",
                code="invalid_value",
            )
        if not fields.get("prompt", "").strip():
            return invalid("Missing required parameter: 'prompt'.", param="prompt")
        if not images:
            return invalid("Missing required parameter: 'image'.", param="image")
        if len(images) > MAX_IMAGES:
            return invalid(f"Too many images: at most {MAX_IMAGES}.", param="image")
        for index, (_, file_name, content_type, data) in enumerate(images):
            if content_type not in IMAGE_TYPES or not data or not file_name:
                return invalid(
                    f"Invalid file 'image[{index}]': unsupported mimetype ('{content_type}'). "
                    "Supported file formats are 'image/jpeg', 'image/png', and 'image/webp'.",
                    param="image",
                    code="invalid_image_format",
                )
            if not _is_image(data):
                return invalid(
                    f"Invalid image file 'image[{index}]': the file could not be decoded.",
                    param="image",
                    code="invalid_image_file",
                )
        checks: Mapping[str, frozenset[str]] = {
            "output_format": frozenset(FORMATS),
            "size": SIZES,
            "quality": QUALITIES,
            "input_fidelity": FIDELITIES,
        }
        for name, allowed in checks.items():
            if name in fields and fields[name] not in allowed:
                return invalid(
                    f"Invalid value: '{fields[name]}'. Supported values are: "
                    + ", ".join(f"'{v}'" for v in sorted(allowed))
                    + ".",
                    param=name,
                    code="invalid_value",
                )
        if fields.get("n", "1") not in {str(n) for n in range(1, 11)}:
            return invalid("Invalid value for 'n'.", param="n", code="invalid_value")
        return None

    def _answer(self, fields: Mapping[str, str]) -> Reply:
        with self._count_lock:
            self._answered += 1
            number = self._answered
        mode = self.mode
        if mode == "flaky":
            mode = "flaky_failure" if number <= self.flaky_failures else "success"
        fmt = fields.get("output_format", "png")
        if mode == "success":
            return self._image_reply(fmt, solid_image(fmt))
        if mode == "slow":
            return self._image_reply(fmt, solid_image(fmt), delay=self.slow_seconds)
        if mode == "bad_request":
            return invalid(
                "Invalid image file or mode for image 1, please check your image file.",
                param="image",
                code="invalid_image_file",
            )
        if mode == "moderation_blocked":
            return error(
                400,
                "Your request was rejected by the safety system.",
                type_="image_generation_user_error",
                code="moderation_blocked",
            )
        if mode == "server_error":
            return error(
                self.server_error_status,
                "The server had an error while processing your request. Sorry about that!",
                type_="server_error",
            )
        if mode == "flaky_failure":
            return error(
                503,
                "The engine is currently overloaded, please try again later.",
                type_="server_error",
            )
        if mode == "rate_limited":
            return error(
                429,
                "Rate limit reached for gpt-image-1.5 on images per minute (IPM): Limit 5, "
                "Used 5, Requested 1. Please try again in 12s.",
                type_="requests",
                code="rate_limit_exceeded",
            )
        if mode == "malformed":
            return Reply(200, "<html>upstream hiccup</html>", {"Content-Type": "application/json"})
        if mode == "empty_data":
            return Reply(200, {"created": int(time.time()), "data": [], "usage": _usage()})
        if mode == "bad_base64":
            return Reply(200, {"created": int(time.time()), "data": [{"b64_json": "@@not!"}]})
        if mode == "wrong_format":
            return self._image_reply(fmt, solid_image("png"))
        raise AssertionError(f"unknown FakeOpenAI mode {self.mode!r}")

    def _image_reply(self, fmt: str, data: bytes, *, delay: float = 0.0) -> Reply:
        body: dict[str, Any] = {
            "created": int(time.time()),
            "background": "opaque",
            "data": [{"b64_json": base64.b64encode(data).decode("ascii")}],
            "output_format": fmt,
            "quality": "medium",
            "size": "1024x1536",
            "usage": _usage(),
        }
        headers = {"x-request-id": f"req_fake{next(self._request_ids):04d}"}
        return Reply(200, body, headers, delay=delay)


def _usage() -> dict[str, Any]:
    return {
        "input_tokens": 1342,
        "input_tokens_details": {"image_tokens": 1290, "text_tokens": 52},
        "output_tokens": 1056,
        "total_tokens": 2398,
    }


def _is_image(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except Exception:  # anything Pillow cannot read is not an image
        return False
    return True
