"""HTTP calls to AI providers: bounded by the job's deadline, errors mapped to ProviderError.

Every adapter talks to its provider through `call()`, so that all of them agree on what is
retryable (network errors, 429, 5xx), never wait past the job's deadline, record each call in the
job's processing log (method, path, status, duration: never bodies, headers or keys) and keep
provider error messages short and free of secrets.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from photobooth import metrics
from providers.base import ProviderDeadlineExceeded, ProviderError, ProviderRequest

# A connection that cannot be opened in this long will not be opened in time for a guest.
CONNECT_TIMEOUT_SECONDS = 5.0
# Results are images of a few MB; anything far larger is not an answer we want to hold in memory.
MAX_RESPONSE_BYTES = 60 * 1024 * 1024
MAX_ERROR_MESSAGE = 300

_sessions = threading.local()

logger = logging.getLogger(__name__)


def _session() -> requests.Session:
    """One connection-pooling session per worker thread (requests.Session is not thread-safe)."""
    session = getattr(_sessions, "session", None)
    if session is None:
        session = requests.Session()
        session.headers["User-Agent"] = "photobooth-ai-server"
        _sessions.session = session
    return session


def call(
    request: ProviderRequest,
    method: str,
    url: str,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    data: Any = None,
    files: Any = None,
    secrets: tuple[str, ...] = (),
) -> requests.Response:
    """One HTTP exchange with a provider, answered before the job's deadline or not at all.

    Returns the response for 2xx answers; raises ProviderError (retryable for network errors,
    429 and 5xx) or ProviderDeadlineExceeded. `what` names the call in the processing log;
    `secrets` are scrubbed from any error message kept.
    """
    remaining = request.ensure_time_left()
    started = time.monotonic()
    status: int | None = None
    try:
        response = _session().request(
            method,
            url,
            headers=dict(headers or {}),
            json=json_body,
            data=data,
            files=files,
            timeout=(min(CONNECT_TIMEOUT_SECONDS, remaining), remaining),
            stream=True,
        )
        status = response.status_code
        _read_bounded(request, response)
    except requests.Timeout:
        _record(request, what, method, url, started, status="timeout")
        if request.remaining_seconds() <= 0:
            raise ProviderDeadlineExceeded(f"{what}: no answer before the deadline") from None
        raise ProviderError(
            f"{what}: the provider did not answer in time", code="timeout", retryable=True
        ) from None
    except requests.RequestException as error:
        _record(request, what, method, url, started, status="network_error")
        raise ProviderError(
            f"{what}: cannot reach the provider ({type(error).__name__})",
            code="network_error",
            retryable=True,
        ) from None
    _record(request, what, method, url, started, status=status)
    if response.status_code < 300:
        return response
    detail = scrub(error_message(response), secrets)
    code = status_code_name(response.status_code)
    raise ProviderError(
        f"{what}: HTTP {response.status_code}{': ' + detail if detail else ''}",
        code=code,
        retryable=response.status_code == 429 or response.status_code >= 500,
    )


def download(request: ProviderRequest, url: str, *, what: str) -> tuple[bytes, str]:
    """The bytes and content type at a result URL, within the job's deadline."""
    response = call(request, "GET", url, what=what)
    mime = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
    return response.content, mime


def json_of(response: requests.Response, *, what: str) -> Any:
    """The response's JSON body, or a non-retryable ProviderError when it is not JSON."""
    try:
        return json.loads(response.content)
    except ValueError:
        raise ProviderError(
            f"{what}: the provider answered with a malformed body", code="malformed_response"
        ) from None


def status_code_name(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "unauthorized"
    if status >= 500:
        return "provider_unavailable"
    return "rejected"


def error_message(response: requests.Response) -> str:
    """The provider's own explanation of an error, short: JSON `error.message` or the text."""
    try:
        body = json.loads(response.content)
    except ValueError:
        text = response.content[:MAX_ERROR_MESSAGE].decode("utf-8", errors="replace")
        return " ".join(text.split())
    message: Any = body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            parts = [str(error[k]) for k in ("status", "code", "message") if error.get(k)]
            message = " ".join(parts) if parts else error
        else:
            message = error
    text = message if isinstance(message, str) else json.dumps(message)[:MAX_ERROR_MESSAGE]
    return text[:MAX_ERROR_MESSAGE]


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """`text` with every non-empty secret replaced by ***."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _read_bounded(request: ProviderRequest, response: requests.Response) -> None:
    """Read the body (so `.content` works), within the deadline and MAX_RESPONSE_BYTES."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=256 * 1024):
        if request.remaining_seconds() <= 0:
            response.close()
            raise ProviderDeadlineExceeded(
                "the provider's answer was still arriving at the deadline"
            )
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            response.close()
            raise ProviderError(
                "the provider's answer is larger than we accept", code="response_too_large"
            )
        chunks.append(chunk)
    response._content = b"".join(chunks)  # noqa: SLF001 - requests' own cache for .content


def _record(
    request: ProviderRequest, what: str, method: str, url: str, started: float, *, status: Any
) -> None:
    metrics.observe_provider_http(status, time.monotonic() - started)
    details = {
        "call": what,
        "method": method,
        # The path only: query strings may carry keys or tokens.
        "path": urlsplit(url).path,
        "status": status,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
    # Written in the job's thread: the line carries the job's correlation id.
    logger.info("provider http call", extra=details)
    if request.record_event is None:
        return
    request.record_event("http_call", details)
