"""Waiting for jobs to finalize without a database connection or a query per waiting request.

One waiter per event loop (that is, per web process) watches every job its requests wait for
and looks them all up with a single query per tick.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from jobqueue.models import Job

logger = logging.getLogger(__name__)


def _finalized_among(job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    try:
        return set(
            Job.objects.filter(id__in=job_ids, is_finalized=True).values_list("id", flat=True)
        )
    finally:
        close_old_connections()


class FinalizationWaiter:
    """Resolves waiting requests' futures as soon as their jobs are seen finalized."""

    def __init__(self, poll_seconds: float):
        self.poll_seconds = poll_seconds
        self._waiting: dict[uuid.UUID, set[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def wait(self, job_id: uuid.UUID, timeout: float) -> bool:
        """True once the job is finalized; False if `timeout` seconds pass first."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, set()).add(future)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._watch())
        try:
            await asyncio.wait_for(future, timeout=max(0.0, timeout))
            return True
        except TimeoutError:
            return False
        finally:
            futures = self._waiting.get(job_id)
            if futures is not None:
                futures.discard(future)
                if not futures:
                    del self._waiting[job_id]
            if not self._waiting and self._task is not None:
                self._task.cancel()
                self._task = None

    async def _watch(self) -> None:
        while self._waiting:
            try:
                finished = await sync_to_async(_finalized_among)(list(self._waiting))
            except Exception:  # the database may be briefly away; keep waiting until deadlines
                logger.warning("waiter could not read job states", exc_info=True)
                finished = set()
            for job_id in finished:
                for future in self._waiting.get(job_id, ()):
                    if not future.done():
                        future.set_result(None)
            await asyncio.sleep(self.poll_seconds)


_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FinalizationWaiter] = (
    weakref.WeakKeyDictionary()
)


def waiter_for_this_loop() -> FinalizationWaiter:
    """The waiter of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    waiter = _waiters.get(loop)
    if waiter is None:
        waiter = _waiters[loop] = FinalizationWaiter(settings.INGEST_WAIT_POLL_SECONDS)
    return waiter
