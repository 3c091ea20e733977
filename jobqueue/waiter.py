"""Waiting for jobs to finalize without a database connection or a query per waiting request.

Each waiting ingest request registers a future for its job id (before the job is even
committed, so no finalization can slip past). Two things resolve those futures:

- on PostgreSQL, one listener thread per process (one connection) receives the
  `photobooth_finalized` notifications sent in finalizing transactions;
- one poller task per event loop looks up all its waiting jobs with a single query per tick —
  every INGEST_WAIT_POLL_SECONDS on SQLite or while the listener is down, and only as a slow
  safety net (INGEST_WAIT_FALLBACK_POLL_SECONDS) while the listener is up.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import uuid
import weakref

from django.conf import settings

from jobqueue.connections import in_thread
from jobqueue.models import Job
from jobqueue.notifications import FINALIZED_CHANNEL, Listener, notifications_supported
from jobqueue.services import finalize_expired_many
from photobooth.request_id import current_request_id

logger = logging.getLogger(__name__)


def _finalized_among(job_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    return set(Job.objects.filter(id__in=job_ids, is_finalized=True).values_list("id", flat=True))


class Registration:
    """A request's claim on news about one job; await `wait()` for it."""

    def __init__(self, waiter: FinalizationWaiter, job_id: uuid.UUID):
        self.waiter = waiter
        self.job_id = job_id
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def wait(self, timeout: float) -> bool:
        """True once the job is finalized; False if `timeout` seconds pass first."""
        if self.future.done():
            return True
        self.waiter.ensure_polling()
        try:
            await asyncio.wait_for(asyncio.shield(self.future), timeout=max(0.0, timeout))
            return True
        except TimeoutError:
            return False

    def cancel(self) -> None:
        """Stop watching the job (the request is answered or refused)."""
        self.waiter.unregister(self)


class FinalizationWaiter:
    """The waiting requests of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._waiting: dict[uuid.UUID, set[Registration]] = {}
        self._lock = threading.Lock()  # the listener thread resolves registrations too
        self._poller: asyncio.Task[None] | None = None
        # Jobs whose waiting request reached the deadline, finalized together (see expire()).
        self._expiring: dict[uuid.UUID, tuple[asyncio.Future[bool], str | None]] = {}
        self._expirer: asyncio.Task[None] | None = None

    async def expire(self, job_id: uuid.UUID) -> bool:
        """Finalize a job whose deadline has passed as `timeout`: True if this did it, False if
        it was finalized otherwise (its result, or someone else's timeout).

        Every request of this loop reaching its deadline meanwhile joins one batch: one
        transaction for all of them (jobqueue.services.finalize_expired_many), so that a burst
        of booths timing out together is answered at the deadline, not one transaction after
        another. Raises DatabaseError when the database cannot be reached.
        """
        entry = self._expiring.get(job_id)
        if entry is None:
            future: asyncio.Future[bool] = self.loop.create_future()
            # Its request may be gone (client disconnected) by the time a failure is set.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
            entry = self._expiring[job_id] = (future, current_request_id())
        if self._expirer is None or self._expirer.done():
            self._expirer = self.loop.create_task(
                self._expire_batches(), context=contextvars.Context()
            )
        return await asyncio.shield(entry[0])

    async def _expire_batches(self) -> None:
        while self._expiring:
            batch, self._expiring = self._expiring, {}
            try:
                ours = await in_thread(finalize_expired_many)(
                    job_ids=list(batch),
                    finalized_by="ingest",
                    request_ids={job_id: request_id for job_id, (_, request_id) in batch.items()},
                )
            except Exception as error:  # each request answers 504 anyway (see ingest.views)
                for future, _ in batch.values():
                    if not future.done():
                        future.set_exception(error)
                continue
            for job_id, (future, _) in batch.items():
                if not future.done():
                    future.set_result(job_id in ours)

    def register(self, job_id: uuid.UUID) -> Registration:
        registration = Registration(self, job_id)
        with self._lock:
            self._waiting.setdefault(job_id, set()).add(registration)
        _ensure_listener()
        return registration

    def unregister(self, registration: Registration) -> None:
        with self._lock:
            registrations = self._waiting.get(registration.job_id)
            if registrations is not None:
                registrations.discard(registration)
                if not registrations:
                    del self._waiting[registration.job_id]
            idle = not self._waiting
        if idle and self._poller is not None:
            self._poller.cancel()
            self._poller = None

    def ensure_polling(self) -> None:
        if self._poller is None or self._poller.done():
            # A fresh context: not the thread or request id of the request that started it.
            self._poller = self.loop.create_task(self._poll(), context=contextvars.Context())

    def resolve(self, job_id: uuid.UUID) -> None:
        """Wake every request waiting for `job_id` (call in this waiter's loop)."""
        with self._lock:
            registrations = list(self._waiting.get(job_id, ()))
        for registration in registrations:
            if not registration.future.done():
                registration.future.set_result(None)

    def resolve_from_any_thread(self, job_id: uuid.UUID) -> None:
        with self._lock:
            interested = job_id in self._waiting
        if interested:
            self.loop.call_soon_threadsafe(self.resolve, job_id)

    def poll_now_from_any_thread(self) -> None:
        """After the listener reconnects: notifications may have been missed, look now."""
        self.loop.call_soon_threadsafe(self._restart_polling)

    def _restart_polling(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        with self._lock:
            anyone_waiting = bool(self._waiting)
        if anyone_waiting:
            self.ensure_polling()

    async def _poll(self) -> None:
        while True:
            with self._lock:
                job_ids = list(self._waiting)
            if not job_ids:
                return
            try:
                finished = await in_thread(_finalized_among)(job_ids)
            except Exception:  # the database may be briefly away; keep waiting until deadlines
                logger.warning("waiter could not read job states", exc_info=True)
                finished = set()
            for job_id in finished:
                self.resolve(job_id)
            await asyncio.sleep(_poll_interval())


def _poll_interval() -> float:
    listener = _listener
    if listener is not None and listener.healthy.is_set():
        return float(settings.INGEST_WAIT_FALLBACK_POLL_SECONDS)
    return float(settings.INGEST_WAIT_POLL_SECONDS)


_waiters: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FinalizationWaiter] = (
    weakref.WeakKeyDictionary()
)
_listener: Listener | None = None
_listener_lock = threading.Lock()


def waiter_for_this_loop() -> FinalizationWaiter:
    """The waiter of the running event loop, created on first use."""
    loop = asyncio.get_running_loop()
    waiter = _waiters.get(loop)
    if waiter is None:
        waiter = _waiters[loop] = FinalizationWaiter(loop)
    return waiter


def _on_notification(channel: str, payload: str) -> None:
    try:
        job_id = uuid.UUID(payload)
    except ValueError:
        return
    for waiter in list(_waiters.values()):
        if not waiter.loop.is_closed():
            waiter.resolve_from_any_thread(job_id)


def _on_reconnect() -> None:
    for waiter in list(_waiters.values()):
        if not waiter.loop.is_closed():
            waiter.poll_now_from_any_thread()


def _ensure_listener() -> None:
    global _listener
    if _listener is not None or not settings.INGEST_WAIT_LISTEN:
        return
    with _listener_lock:
        if _listener is None and notifications_supported():
            _listener = Listener(
                [FINALIZED_CHANNEL], on_notify=_on_notification, on_reconnect=_on_reconnect
            ).start()
