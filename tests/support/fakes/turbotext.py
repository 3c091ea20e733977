"""A fake Turbotext photo API on loopback: queue tasks, poll them, download the results.

It speaks Turbotext's protocol: `POST /api_ai/{generate_image2image,mix_images,deepfake_photo}`,
form-urlencoded, `Authorization: Bearer <key>`; `do=create_queue` + the method's fields answers
`{"success": true, "queueid": N}` (N increasing); `do=get_result&queueid=N` answers
`{"action": "reconnect"}` `reconnects` times, then `{"success": true, "error": "", "data": {...},
"uploaded_image": "<url>"}`. The result is a real PNG (solid purple, `fake.result_png`) that the
fake serves itself at `GET /uploads/<queueid>.png`.

Like the real service, `create_queue` downloads the input images it is given (with `requests`,
before answering) and refuses the task (`success: false`, `url_error`) when one cannot be
fetched or is not an image. `fake.fetched` records every download (field, URL, status, content
type, bytes), so tests can check that the public media links worked.

A wrong or missing key is answered HTTP 401 `{"success": false, "error": "..."}` (our choice:
Turbotext does not document it; `auth_failure_status = 200` makes it a 200 with the same body).
Missing or invalid fields are answered 200 `{"success": false, "error": "params_error: ..."}`.

Modes (`fake.mode`):
- `success`: as above.
- `slow`: get_result always answers reconnect; `slow_answer`: get_result answers after
  `slow_seconds` (30 s).
- `4xx` (HTTP 400), `5xx` (HTTP 503 HTML page), `429` (HTTP 429): on create_queue.
- `malformed`: create_queue answers 200 with an HTML page; `malformed_result`: get_result answers
  `{"success": true}` with no image.
- `rejected`: create_queue answers `success: false` (`failure_message`); `failed`: the task fails
  (get_result answers `success: false` with `failure_message`) after the reconnects.
- `not_an_image`: the result URL serves an HTML page.

Options: `relative_url` (uploaded_image is `/uploads/N.png`), `nest_in_data` (it is inside
`data`), `image_list_only` (only `data.image: [<relative path>]`, like Turbotext's image2image
example), `result_content_type` (what the result download says it is), `poll_errors` (the first
N get_result calls answer HTTP 503), `download_errors` (the first N result downloads answer 503).

`fake.publish(image)` serves bytes at `/inputs/<n>` on the fake itself: adapter-level tests use it
as the worker's `publish_temporary`.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass
from typing import Any

import requests
from PIL import Image

from providers.base import InputImage
from tests.support.fake_http import FakeProvider, Recorded, Reply

PURPLE = (150, 40, 210)
FIRST_QUEUEID = 4101
# The fields each method requires and the ones that carry image URLs.
REQUIRED = {
    "generate_image2image": ("url", "content"),
    "mix_images": ("url_image_target", "url"),
    "deepfake_photo": ("url", "url_image_target"),
}
URL_FIELDS = ("url", "url_image_target")
FACE_RESTORE_VALUES = frozenset({"1", "0", "true", "false", "True", "False"})
METHOD_PATH = re.compile(r"^/api_ai/(?P<method>[a-z0-9_]+)$")
UPLOAD_PATH = re.compile(r"^/uploads/(?P<queueid>\d+)\.png$")
INPUT_PATH = re.compile(r"^/inputs/(?P<number>\d+)$")
IMAGE_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
HTML_PAGE = "<html><body><h1>Service Temporarily Unavailable</h1></body></html>"


def solid_png(color: tuple[int, int, int] = PURPLE, size: tuple[int, int] = (80, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def failure(message: str, status: int = 200) -> Reply:
    return Reply(status, {"success": False, "error": message})


@dataclass
class Fetched:
    """An input image the fake downloaded for a create_queue call."""

    method: str
    field: str
    url: str
    status: int | None
    content_type: str
    body: bytes
    error: str = ""


@dataclass
class Task:
    queueid: int
    method: str
    fields: dict[str, str]
    polls: int = 0
    finished: bool = False


class FakeTurbotext(FakeProvider):
    """Turbotext's queue-based photo methods."""

    def __init__(self, *, expected_key: str = "fake-turbotext-key", reconnects: int = 2) -> None:
        super().__init__()
        self.expected_key = expected_key
        self.reconnects = reconnects
        self.relative_url = False
        self.nest_in_data = False
        self.image_list_only = False
        self.result_content_type = "image/png"
        self.poll_errors = 0
        self.download_errors = 0
        self.auth_failure_status = 401
        self.slow_seconds = 30.0
        self.failure_message = "face_not_detected: no face found on the image"
        self.result_png = solid_png()
        self.fetched: list[Fetched] = []
        self.tasks: dict[int, Task] = {}
        self._inputs: dict[int, tuple[bytes, str]] = {}
        self._next_queueid = FIRST_QUEUEID
        self._polls_answered = 0
        self._downloads_answered = 0
        self._state = threading.Lock()
        # Stop within 50 ms rather than the default half-second poll (tests start one each).
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    # --- what tests use ------------------------------------------------------------------------
    def publish(self, image: InputImage) -> str:
        """Serve an image at a URL on this fake (a stand-in for the worker's public media)."""
        with self._state:
            number = len(self._inputs) + 1
            self._inputs[number] = (image.data, image.mime)
        return f"{self.base_url}/inputs/{number}"

    def calls(self, do: str, method: str = "") -> list[Recorded]:
        """The POSTs with this `do` (create_queue / get_result), optionally to one method."""
        return [
            r
            for r in self.received("/api_ai/")
            if r.method == "POST"
            and r.path.endswith(f"/{method}" if method else "")
            and _form(r).get("do") == do
        ]

    def create_calls(self, method: str = "") -> list[Recorded]:
        return self.calls("create_queue", method)

    def poll_calls(self, method: str = "") -> list[Recorded]:
        return self.calls("get_result", method)

    def fetched_for(self, field_name: str) -> list[Fetched]:
        with self._state:
            return [f for f in self.fetched if f.field == field_name]

    # --- the API -------------------------------------------------------------------------------
    def handle(self, request: Recorded) -> Reply:
        if request.method == "GET":
            return self._serve_file(request.path)
        match = METHOD_PATH.match(request.path)
        if request.method != "POST" or match is None or match["method"] not in REQUIRED:
            return Reply(404, {"success": False, "error": "method not found"})
        if request.headers.get("authorization", "") != f"Bearer {self.expected_key}":
            return failure("Invalid API key", self.auth_failure_status)
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            return failure("params_error: the body must be form-urlencoded")
        form = _form(request)
        method = match["method"]
        if form.get("do") == "create_queue":
            return self._create_queue(method, form)
        if form.get("do") == "get_result":
            return self._get_result(method, form)
        return failure("params_error: unknown do")

    def _create_queue(self, method: str, form: dict[str, str]) -> Reply:
        if self.mode == "4xx":
            return failure("Bad Request", 400)
        if self.mode == "5xx":
            return Reply(503, HTML_PAGE, {"Content-Type": "text/html"})
        if self.mode == "429":
            return failure("Too Many Requests", 429)
        if self.mode == "malformed":
            return Reply(200, HTML_PAGE, {"Content-Type": "text/html"})
        problem = _invalid_fields(method, form)
        if problem:
            return failure(f"params_error: {problem}")
        for name in URL_FIELDS:
            if name in form and not self._download_input(method, name, form[name]):
                return failure(f"url_error: cannot download the image in {name}")
        if self.mode == "rejected":
            return failure(self.failure_message)
        with self._state:
            queueid = self._next_queueid
            self._next_queueid += 1
            self.tasks[queueid] = Task(queueid=queueid, method=method, fields=dict(form))
        return Reply(200, {"success": True, "queueid": queueid})

    def _download_input(self, method: str, name: str, url: str) -> bool:
        """Fetch an input like Turbotext does; True when it is an image."""
        try:
            response = requests.get(url, timeout=5)
        except requests.RequestException as error:
            self._fetched(Fetched(method, name, url, None, "", b"", type(error).__name__))
            return False
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        self._fetched(
            Fetched(method, name, url, response.status_code, content_type, response.content)
        )
        if response.status_code != 200:
            return False
        try:
            with Image.open(io.BytesIO(response.content)) as image:
                return image.format in IMAGE_FORMATS
        except (OSError, ValueError):
            return False

    def _fetched(self, fetched: Fetched) -> None:
        with self._state:
            self.fetched.append(fetched)

    def _get_result(self, method: str, form: dict[str, str]) -> Reply:
        with self._state:
            self._polls_answered += 1
            if self._polls_answered <= self.poll_errors:
                return Reply(503, HTML_PAGE, {"Content-Type": "text/html"})
            raw = form.get("queueid", "")
            task = self.tasks.get(int(raw)) if raw.isdigit() else None
            if task is None or task.method != method:
                return failure("queue not found")
            task.polls += 1
            polls = task.polls
        if self.mode == "slow":
            return Reply(200, {"action": "reconnect"})
        if self.mode == "slow_answer":
            return Reply(200, {"action": "reconnect"}, delay=self.slow_seconds)
        if polls <= self.reconnects:
            return Reply(200, {"action": "reconnect"})
        if self.mode == "failed":
            return failure(self.failure_message)
        if self.mode == "malformed_result":
            return Reply(200, {"success": True, "error": ""})
        task.finished = True
        return Reply(200, self._finished_answer(task))

    def _finished_answer(self, task: Task) -> dict[str, Any]:
        relative = f"/uploads/{task.queueid}.png"
        image_url = relative if self.relative_url else f"{self.base_url}{relative}"
        data: dict[str, Any] = {"width": 80, "height": 60, "image": [relative.lstrip("/")]}
        if self.image_list_only:
            return {"success": True, "error": "", "data": data}
        if self.nest_in_data:
            return {"success": True, "error": "", "data": {**data, "uploaded_image": image_url}}
        return {"success": True, "error": "", "data": data, "uploaded_image": image_url}

    def _serve_file(self, path: str) -> Reply:
        upload = UPLOAD_PATH.match(path)
        if upload is not None:
            with self._state:
                task = self.tasks.get(int(upload["queueid"]))
                self._downloads_answered += 1
                if self._downloads_answered <= self.download_errors:
                    return Reply(503, HTML_PAGE, {"Content-Type": "text/html"})
            if task is None or not task.finished:
                return Reply(404, "Not Found")
            if self.mode == "not_an_image":
                return Reply(200, "<html>Your image is ready</html>", {"Content-Type": "text/html"})
            return Reply(200, self.result_png, {"Content-Type": self.result_content_type})
        served = INPUT_PATH.match(path)
        if served is not None:
            with self._state:
                image = self._inputs.get(int(served["number"]))
            if image is not None:
                return Reply(200, image[0], {"Content-Type": image[1]})
        return Reply(404, "Not Found")


def _form(recorded: Recorded) -> dict[str, str]:
    try:
        return recorded.form()
    except UnicodeDecodeError:
        return {}


def _invalid_fields(method: str, form: dict[str, str]) -> str:
    """Why Turbotext would refuse these fields, or ""."""
    for name in REQUIRED[method]:
        if not form.get(name, "").strip():
            return f"{name} is required"
    if "strength" in form and not (form["strength"].isdigit() and int(form["strength"]) <= 80):
        return "strength must be an integer from 0 to 80"
    if "seed" in form and not form["seed"].isdigit():
        return "seed must be a whole number"
    if "scale" in form:
        try:
            scale = float(form["scale"])
        except ValueError:
            return "scale must be a number"
        if not 0.1 <= scale <= 20:
            return "scale must be from 0.1 to 20"
    if "face_restore" in form and form["face_restore"] not in FACE_RESTORE_VALUES:
        return "face_restore must be a boolean"
    return ""
