"""The correlation id that follows a request through its job and provider calls.

Every HTTP request gets an id: the client's `X-Request-Id` when it is a plain token (at most 128
characters of `A-Z a-z 0-9 . _ -`), a new one otherwise. It is sent back in `X-Request-Id` on
every response and kept in a context variable while the request is handled, so every log line
written meanwhile carries it (`photobooth.logging_config`). A queued job remembers the id of the
request that created it (its `received` log row), and the worker sets it again while it runs the
job, so the web's and the worker's lines for one photo share one id.

Only the standard library is imported here: the logging configuration imports this module while
Django's settings are still being read.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from typing import Any

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEADER = "X-Request-Id"
MAX_LENGTH = 128
SCOPE_KEY = "photobooth.request_id"
_VALID = re.compile(rf"[A-Za-z0-9._-]{{1,{MAX_LENGTH}}}")
# Probes answered 2xx are logged at DEBUG: a load balancer asks every few seconds.
QUIET_PATHS = frozenset({"/healthz", "/readyz"})

_current: ContextVar[str | None] = ContextVar("photobooth_request_id", default=None)

logger = logging.getLogger("photobooth.requests")


def current_request_id() -> str | None:
    """The correlation id of the request or job being handled here, if any."""
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(candidate: str | bytes | None) -> str | None:
    """`candidate` if it is an acceptable correlation id, else None."""
    if isinstance(candidate, bytes):
        try:
            candidate = candidate.decode("ascii")
        except UnicodeDecodeError:
            return None
    if candidate is None or not _VALID.fullmatch(candidate):
        return None
    return candidate


@contextlib.contextmanager
def request_id_context(request_id: str | None) -> Iterator[None]:
    """Log lines written inside carry `request_id` (nothing changes for None)."""
    token = _current.set(request_id)
    try:
        yield
    finally:
        _current.reset(token)


class RequestIdMiddleware:
    """ASGI middleware: assigns the correlation id, returns it, and logs each request once.

    Outermost, so that answers given before Django (the body guard's 413) carry the id too. The
    log line names method, path (never the query string), status, duration and the job the
    request created (`X-Job-Id`), if any.
    """

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(_header(scope, b"x-request-id")) or new_request_id()
        scope = dict(scope)
        scope[SCOPE_KEY] = request_id
        started = time.monotonic()
        status: int | None = None
        job_id: str | None = None
        encoded = request_id.encode("ascii")

        async def send_with_id(message: Message) -> None:
            nonlocal status, job_id
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"x-request-id"
                ]
                for name, value in headers:
                    if name.lower() == b"x-job-id":
                        job_id = value.decode("latin-1")
                headers.append((b"x-request-id", encoded))
                message = {**message, "headers": headers}
            await send(message)

        with request_id_context(request_id):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                _log_request(scope, status, job_id, started)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value)
    return None


def _log_request(scope: Scope, status: int | None, job_id: str | None, started: float) -> None:
    path = str(scope.get("path", ""))
    quiet = path in QUIET_PATHS and status is not None and status < 400
    extra: dict[str, Any] = {
        "method": scope.get("method", ""),
        "path": path,
        # None: the client went away (or the application failed) before an answer started.
        "status": status,
        "duration_ms": int((time.monotonic() - started) * 1000),
    }
    if job_id:
        extra["job_id"] = job_id
    client = scope.get("client")
    if client:
        extra["client_address"] = client[0]
    logger.log(logging.DEBUG if quiet else logging.INFO, "request finished", extra=extra)
