"""Guards the ingest endpoint at the ASGI level: body size limit while streaming, arrival time."""

from __future__ import annotations

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
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_photo_bytes: Callable[[], int],
        form_overhead_bytes: int,
        prefix: str = "/ingest/",
    ):
        self.app = app
        self.max_photo_bytes = max_photo_bytes
        self.form_overhead_bytes = form_overhead_bytes
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
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
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
        if too_large and not response_started:
            await _send_too_large(send, photo_limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "error": {
                "code": "payload_too_large",
                "message": f"The photo is larger than {limit} bytes.",
                "details": {"max_bytes": limit},
            }
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
