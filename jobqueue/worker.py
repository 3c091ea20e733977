"""The worker: takes jobs from the queue and runs them through their provider.

A plain class, separate from the `run_workers` command that parses options and installs signal
handlers. Jobs are claimed in one short transaction; provider calls run in a thread pool outside
any transaction; each job is finalized in its own conditional update.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from jobqueue import deadlines, files, services
from jobqueue.cleanup import run_cleanup
from jobqueue.connections import release_connection
from jobqueue.image_metadata import UnreadableImage, strip_metadata
from jobqueue.models import FailureReason, Job, MediaObject, ProcessingLog
from jobqueue.notifications import JOBS_CHANNEL, Listener, notifications_supported
from jobqueue.qr_stamp import stamp_qr_if_possible
from photobooth import links, metrics
from photobooth.links import guest_result_url
from photobooth.request_id import request_id_context
from providers.base import (
    InputImage,
    ProviderDeadlineExceeded,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    SettingsInvalid,
)
from providers.registry import get_provider
from providers.secrets import SecretsUnreadable, api_key_for

logger = logging.getLogger(__name__)

# Pause between attempts to record a finished job while the database is unavailable.
FINALIZE_RETRY_SECONDS = 0.5


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of retryable provider errors: at most `max_retries`, exponential backoff."""

    max_retries: int = 2
    backoff_seconds: float = 1.0

    def delay_before(self, retry_number: int) -> float:
        return self.backoff_seconds * (2 ** (retry_number - 1))


NO_RETRIES = RetryPolicy(max_retries=0)


@dataclass(frozen=True)
class WorkerConfig:
    """How a worker behaves; `from_settings()` reads the deployment's settings."""

    concurrency: int
    lease: timedelta = services.DEFAULT_LEASE
    heartbeat_seconds: float = 2.0
    poll_seconds: float = 0.2
    cleanup_seconds: float = 5.0
    orphan_sweep_seconds: float = 600.0
    shutdown_grace_seconds: float = 30.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limits: services.ConcurrencyLimits = services.NO_LIMITS

    @classmethod
    def from_settings(cls, *, concurrency: int | None = None) -> WorkerConfig:
        return cls(
            concurrency=concurrency or settings.WORKER_CONCURRENCY,
            lease=timedelta(seconds=settings.WORKER_LEASE_SECONDS),
            heartbeat_seconds=settings.WORKER_HEARTBEAT_SECONDS,
            poll_seconds=settings.WORKER_POLL_SECONDS,
            cleanup_seconds=settings.WORKER_REAP_SECONDS,
            orphan_sweep_seconds=settings.WORKER_ORPHAN_SWEEP_SECONDS,
            shutdown_grace_seconds=settings.WORKER_SHUTDOWN_GRACE_SECONDS,
            retry=RetryPolicy(
                max_retries=settings.PROVIDER_MAX_RETRIES,
                backoff_seconds=settings.PROVIDER_RETRY_BACKOFF_SECONDS,
            ),
            limits=services.ConcurrencyLimits(
                per_provider=dict(settings.PROVIDER_CONCURRENCY),
                total=settings.WORKER_GLOBAL_CONCURRENCY,
            ),
        )


class Worker:
    """Runs up to `concurrency` jobs at once until `stop()` is called.

    The main thread claims jobs and runs the periodic cleanup; a heartbeat thread records that
    the worker is alive and renews the leases of its running jobs; a pool of threads runs them.
    """

    def __init__(self, config: WorkerConfig, *, worker_id: str | None = None):
        if config.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.config = config
        self.concurrency = config.concurrency
        self.worker_id = worker_id or default_worker_id()
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="job")
        self._in_flight: dict[Future[None], Job] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._finished = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._last_cleanup = 0.0
        self._last_orphan_sweep = time.monotonic()  # not at start-up: a sweep walks the disk

    # --- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop taking new jobs; running jobs get the shutdown grace period to finish."""
        self._stopping.set()
        self._wake.set()

    def run_forever(self) -> bool:
        """Work until stop(). Returns True if every running job ended within the grace period."""
        logger.info(
            "worker started", extra={"worker_id": self.worker_id, "concurrency": self.concurrency}
        )
        self._heartbeat = threading.Thread(
            target=self._heartbeat_loop, name="heartbeat", daemon=True
        )
        self._beat()
        self._heartbeat.start()
        listener = None
        if notifications_supported():
            # New jobs wake the claim loop at once; the poll below remains the safety net.
            listener = Listener([JOBS_CHANNEL], on_notify=lambda *_: self._wake.set()).start()
        try:
            while not self._stopping.is_set():
                # Cleared before looking, so a wake-up that arrives meanwhile is not lost.
                self._wake.clear()
                try:
                    self.run_once()
                except Exception:  # keep serving: a database hiccup must not kill the worker
                    logger.exception("worker loop error", extra={"worker_id": self.worker_id})
                    close_old_connections()
                    self._stopping.wait(1.0)
                    continue
                self._wake.wait(self.config.poll_seconds)
            return self._shut_down()
        finally:
            self._finished.set()
            if listener is not None:
                listener.stop()
            close_old_connections()

    def _shut_down(self) -> bool:
        self._beat()
        all_done = self.wait_idle(self.config.shutdown_grace_seconds)
        with self._lock:
            unfinished = list(self._in_flight.values())
        if unfinished:
            released = services.release_jobs(jobs=unfinished)
            logger.warning(
                "grace period over: jobs released to the queue",
                extra={"worker_id": self.worker_id, "released": released},
            )
        self._pool.shutdown(wait=False, cancel_futures=True)
        # The heartbeat thread stops first, so that it cannot write the row back after this.
        self._finished.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=self.config.heartbeat_seconds + 5)
        services.forget_worker(worker_id=self.worker_id)
        logger.info("worker stopped", extra={"worker_id": self.worker_id})
        return all_done

    def run_once(self) -> int:
        """Claim as many jobs as there are free slots and start them. Returns how many."""
        self._cleanup_if_due()
        with self._lock:
            free = self.concurrency - len(self._in_flight)
        if free <= 0 or self._stopping.is_set():
            return 0
        jobs = services.acquire_jobs(
            worker_id=self.worker_id, limit=free, lease=self.config.lease, limits=self.config.limits
        )
        close_old_connections()
        for job in jobs:
            with self._lock:
                future = self._pool.submit(self._process_safely, job)
                self._in_flight[future] = job
            future.add_done_callback(self._job_done)
        return len(jobs)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is in flight. True if idle in time."""
        end = time.monotonic() + timeout
        while True:
            with self._lock:
                if not self._in_flight:
                    return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)

    def _job_done(self, future: Future[None]) -> None:
        with self._lock:
            self._in_flight.pop(future, None)
        self._wake.set()  # a slot is free: look for the next job at once

    def _cleanup_if_due(self) -> None:
        now = time.monotonic()
        if now - self._last_cleanup < self.config.cleanup_seconds:
            return
        self._last_cleanup = now
        sweep = now - self._last_orphan_sweep >= self.config.orphan_sweep_seconds
        if sweep:
            self._last_orphan_sweep = now
        run_cleanup(actor=f"reaper:{self.worker_id}", sweep_orphans=sweep)

    # --- heartbeat ---------------------------------------------------------------------------
    def _heartbeat_loop(self) -> None:
        while not self._finished.wait(self.config.heartbeat_seconds):
            try:
                self._beat()
            except Exception:
                logger.warning(
                    "heartbeat failed", extra={"worker_id": self.worker_id}, exc_info=True
                )
            finally:
                close_old_connections()

    def _beat(self) -> None:
        with self._lock:
            running = list(self._in_flight.values())
        held = services.renew_leases(jobs=running, lease=self.config.lease)
        lost = [job.id for job in running if job.id not in held]
        if lost:
            # Finalized meanwhile (e.g. timed out) or taken over: their results will be refused.
            logger.info(
                "jobs no longer held", extra={"worker_id": self.worker_id, "count": len(lost)}
            )
        services.record_heartbeat(
            worker_id=self.worker_id,
            concurrency=self.concurrency,
            job_ids=[job.id for job in running],
            is_stopping=self._stopping.is_set(),
        )

    # --- one job -----------------------------------------------------------------------------
    def _process_safely(self, job: Job) -> None:
        # The job's log lines (provider calls included) carry the id of the request that
        # queued it.
        with request_id_context(_queued_request_id(job)):
            logger.info(
                "job picked up",
                extra={
                    "job_id": str(job.id),
                    "slot_id": job.slot_id,
                    "provider": job.provider_id,
                    "worker_id": self.worker_id,
                    "attempt": job.attempt_count,
                },
            )
            self._process_in_context(job)

    def _process_in_context(self, job: Job) -> None:
        assert job.lease_token is not None, "only acquired jobs are processed"
        try:
            process_job(job, retry=self.config.retry)
        except DatabaseError:
            # Not the job's fault: leave it. Its lease lapses and another attempt (or the
            # reaper, past the deadline) takes it from there.
            logger.warning(
                "database unavailable while processing; the job will be taken over",
                extra={"job_id": str(job.id)},
                exc_info=True,
            )
        except Exception:
            logger.exception("job processing crashed", extra={"job_id": str(job.id)})
            try:
                services.finalize_failure(
                    job=job,
                    lease_token=job.lease_token,
                    reason=FailureReason.INTERNAL_ERROR,
                    detail="internal error while processing",
                )
            except Exception:
                logger.exception("could not finalize crashed job", extra={"job_id": str(job.id)})
        finally:
            close_old_connections()


def process_job(job: Job, *, retry: RetryPolicy = NO_RETRIES) -> None:
    """Run one acquired job through its provider (retrying what may succeed) and finalize it."""
    lease_token = job.lease_token
    assert lease_token is not None, "process_job needs an acquired job"
    try:
        api_key = api_key_for(job.provider_id)
    except SecretsUnreadable as unreadable:
        logger.error("provider key unreadable", extra={"job_id": str(job.id)})
        services.finalize_failure(
            job=job,
            lease_token=lease_token,
            reason=FailureReason.PROVIDER_ERROR,
            detail=f"not_configured: {unreadable}",
        )
        return
    request = ProviderRequest(
        operation_id=job.operation_id,
        settings=job.settings_snapshot,
        photo=InputImage(
            data=files.read_bytes(job.payload_path), mime=job.payload_mime, name="photo"
        ),
        templates={
            key: InputImage(data=files.read_bytes(ref["path"]), mime=ref["mime"], name=key)
            for key, ref in job.template_refs.items()
        },
        deadline=job.expires_at,
        publish_temporary=lambda image: publish_temporary_media(job=job, image=image),
        record_event=lambda event, details: services.record_event(
            job.id, ProcessingLog.Event.PROVIDER_EVENT, {"event": event, **details}
        ),
        base_url=settings.PROVIDER_BASE_URLS.get(job.provider_id, ""),
        api_key=api_key,
    )
    retries = 0
    while True:
        # A provider call takes seconds: hold no database connection meanwhile, so that hundreds
        # of running jobs need only a handful of connections.
        release_connection()
        started = time.monotonic()
        try:
            result = _run_provider(job, request)
        except ProviderDeadlineExceeded as error:
            _log_provider_call(job, started, outcome="timeout", detail=error.message)
            services.finalize_failure(
                job=job, lease_token=lease_token, reason=FailureReason.TIMEOUT, detail=error.message
            )
            return
        except ProviderError as error:
            delay = retry.delay_before(retries + 1)
            if (
                error.retryable
                and retries < retry.max_retries
                and (request.remaining_seconds() > delay)
            ):
                retries += 1
                _log_provider_call(
                    job,
                    started,
                    outcome="retry",
                    detail=error.message,
                    code=error.code,
                    retry=retries,
                    backoff_ms=int(delay * 1000),
                )
                time.sleep(delay)
                continue
            _log_provider_call(job, started, outcome="error", detail=error.message, code=error.code)
            services.finalize_failure(
                job=job,
                lease_token=lease_token,
                reason=FailureReason.PROVIDER_ERROR,
                detail=f"{error.code}: {error.message}",
            )
            return
        _log_provider_call(job, started, outcome="success", retries=retries)
        _store_and_finalize(job, lease_token, result)
        return


def _run_provider(job: Job, request: ProviderRequest) -> ProviderResult:
    metrics.set_current_provider(job.provider_id)
    try:
        return get_provider(job.provider_id).run(request)
    except SettingsInvalid as invalid:
        # The snapshot no longer fits the provider's declaration (e.g. the provider changed).
        raise ProviderError(str(invalid), code="invalid_settings") from invalid


def _store_and_finalize(job: Job, lease_token: uuid.UUID, result: ProviderResult) -> None:
    data = publishable(result.data, result.mime, job=job)
    if job.qr_stamp:
        data = stamp_qr_if_possible(data, result.mime, guest_result_url(job.id))
    stored = files.store_bytes(kind="results", stem=str(job.id), mime=result.mime, data=data)
    while True:
        try:
            won = services.finalize_success(
                job=job,
                lease_token=lease_token,
                result=stored,
                result_mime=result.mime,
                provider_job_reference=result.provider_job_reference,
            )
            break
        except DatabaseError:
            # The result is in hand: keep trying to record it while the deadline allows.
            release_connection()
            if timezone.now() >= job.expires_at:
                files.delete_quietly(stored.path)
                raise
            logger.warning(
                "database unavailable, retrying finalization", extra={"job_id": str(job.id)}
            )
            time.sleep(FINALIZE_RETRY_SECONDS)
    if not won:
        # Finalized meanwhile (timeout at the deadline): a late answer changes nothing.
        files.delete_quietly(stored.path)
        services.record_event(
            job.id, ProcessingLog.Event.LATE_RESULT_IGNORED, {"worker_id": job.worker_id}
        )
        logger.info("late provider result ignored", extra={"job_id": str(job.id)})


_PROVIDER_CALL_MESSAGES = {
    "success": "provider call succeeded",
    "retry": "provider call failed, retrying",
    "error": "provider call failed",
    "timeout": "provider call reached the deadline",
}


def _queued_request_id(job: Job) -> str | None:
    """The correlation id of the request that queued the job (kept in its `received` row)."""
    try:
        details = (
            ProcessingLog.objects.filter(job_id=job.id, event=ProcessingLog.Event.RECEIVED)
            .values_list("details", flat=True)
            .first()
        )
    except DatabaseError:
        release_connection()
        return None
    request_id = details.get("request_id") if isinstance(details, dict) else None
    return request_id if isinstance(request_id, str) else None


def _log_provider_call(job: Job, started: float, **details: Any) -> None:
    metrics.observe_provider_attempt(job.provider_id, time.monotonic() - started, details)
    outcome = details.get("outcome", "")
    logger.log(
        logging.WARNING if outcome in ("retry", "error") else logging.INFO,
        _PROVIDER_CALL_MESSAGES.get(outcome, "provider call"),
        extra={
            "job_id": str(job.id),
            "provider": job.provider_id,
            "operation": job.operation_id,
            "duration_ms": int((time.monotonic() - started) * 1000),
            **details,
        },
    )
    try:
        services.record_event(
            job.id,
            ProcessingLog.Event.PROVIDER_CALL,
            {
                "provider": job.provider_id,
                "operation": job.operation_id,
                "duration_ms": int((time.monotonic() - started) * 1000),
                **details,
            },
        )
    except DatabaseError:
        # A lost log row must not cost the job its result.
        release_connection()
        logger.warning("could not log a provider call", extra={"job_id": str(job.id)})


def publishable(data: bytes, mime: str, *, job: Job) -> bytes:
    """The image as it may be published: without camera metadata (GPS, serial numbers) unless
    PUBLISH_KEEP_METADATA is set. An image whose structure cannot be read is kept as it is."""
    if settings.PUBLISH_KEEP_METADATA:
        return data
    try:
        return strip_metadata(data, mime)
    except UnreadableImage:
        logger.warning("could not strip image metadata", extra={"job_id": str(job.id)})
        return data


def publish_temporary_media(*, job: Job, image: InputImage) -> str:
    """Store an image behind a temporary public URL that lives no longer than the job."""
    now = timezone.now()
    media_id = uuid.uuid4()
    data = publishable(image.data, image.mime, job=job)
    stored = files.store_bytes(kind="media", stem=str(media_id), mime=image.mime, data=data)
    MediaObject.objects.create(
        id=media_id,
        job_id=job.id,
        path=stored.path,
        mime=image.mime,
        size=stored.size,
        created_at=now,
        expires_at=deadlines.bounded_by_job(
            created_at=now,
            job_expires_at=job.expires_at,
            # T_public_link_ttl = T_sync_response, the job's own lifetime.
            ttl=job.expires_at - job.created_at,
        ),
    )
    return links.media_url(media_id)
