"""Guards the ingest endpoint at the ASGI level: body size limit while streaming, arrival time."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RECEIVED_AT_SCOPE_KEY = "photobooth.received_at"


class IngestBodyGuard:
    """Refuses oversized ingest bodies while they stream in, and notes when each request arrived.

    The body may exceed the photo limit by `form_overhead_bytes` (multipart headers, text fields).
    A declared Content-Length above that is refused before a byte of the body is read (so a
    client sending `Expect: 100-continue` never gets the 100); a chunked body is counted as it
    arrives and cut off at the limit. Either way the answer is 413 in the usual JSON shape,
    naming the photo limit, and the body is never buffered whole.

    A body must also arrive within `body_timeout_seconds` of the request's headers: a client
    that stalls or trickles (slow-loris) gets 408 and its connection closed, instead of holding
    a connection and a request slot for ever. The job's deadline counts from the headers too, so
    a body slower than that could never be answered in time anyway.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_photo_bytes: Callable[[], int],
        form_overhead_bytes: int,
        body_timeout_seconds: float = 60.0,
        prefix: str = "/ingest/",
    ):
        self.app = app
        self.max_photo_bytes = max_photo_bytes
        self.form_overhead_bytes = form_overhead_bytes
        self.body_timeout_seconds = body_timeout_seconds
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        scope[RECEIVED_AT_SCOPE_KEY] = time.time()
        photo_limit = self.max_photo_bytes()
        limit = photo_limit + self.form_overhead_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _send_too_large(send, photo_limit)
            return

        received = 0
        too_large = False
        too_slow = False
        response_started = False
        body_deadline = time.monotonic() + self.body_timeout_seconds

        body_complete = False

        async def counting_receive() -> Message:
            nonlocal received, too_large, too_slow, body_complete
            if body_complete:
                # Django now only listens for a disconnect, and cancels that wait when it has
                # answered: no timeout here, so that its cancellation is never swallowed.
                return await receive()
            try:
                message = await asyncio.wait_for(
                    receive(), timeout=max(0.0, body_deadline - time.monotonic())
                )
            except TimeoutError:
                too_slow = True
                return {"type": "http.disconnect"}
            if message["type"] == "http.request" and not message.get("more_body", False):
                body_complete = True
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    too_large = True
                    # Django treats a disconnect as an aborted request and stops reading.
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, counting_receive, tracking_send)
        if response_started:
            return
        if too_large:
            await _send_too_large(send, photo_limit)
        elif too_slow:
            await _send_error(
                send,
                408,
                "request_timeout",
                f"The upload did not arrive within {self.body_timeout_seconds:g} s.",
                {"timeout_seconds": self.body_timeout_seconds},
            )


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_too_large(send: Send, limit: int) -> None:
    await _send_error(
        send,
        413,
        "payload_too_large",
        f"The photo is larger than {limit} bytes.",
        {"max_bytes": limit},
    )


async def _send_error(
    send: Send, status: int, code: str, message: str, details: dict[str, Any]
) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "details": details}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
