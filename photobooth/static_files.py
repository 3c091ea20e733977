"""WhiteNoise's static file serving, in a middleware that stays asynchronous.

WhiteNoise's own middleware is synchronous only. Django then runs every request below it —
including the ingest view that waits up to 60 s — in a thread of its own, so hundreds of waiting
booths would hold hundreds of threads. This wrapper keeps the chain asynchronous: only requests
for a static file are served (from WhiteNoise's in-memory index, with its caching headers and
compressed variants); everything else passes straight through.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


def _not_static(request: HttpRequest) -> HttpResponseBase:
    raise AssertionError("only used to index files")  # pragma: no cover


class StaticFilesMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]):
        self.get_response = get_response
        self.whitenoise = WhiteNoiseMiddleware(_not_static)
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def _static_file(self, request: HttpRequest) -> Any:
        if self.whitenoise.autorefresh:
            return self.whitenoise.find_file(request.path_info)
        return self.whitenoise.files.get(request.path_info)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        static_file = self._static_file(request)
        if static_file is not None:
            return self.whitenoise.serve(static_file, request)
        return self.get_response(request)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        static_file = self._static_file(request)
        if static_file is not None:
            return await sync_to_async(self.whitenoise.serve)(static_file, request)
        return await self.get_response(request)
