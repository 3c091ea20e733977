"""Prometheus metrics: our own (`photobooth_*`), the web's /metrics view, the workers' endpoint.

Three kinds of figures, documented one by one in Docs/metrics.md:

- **Events counted where they happen**, in the process they happen in: ingest latency (web),
  job finalization (web and workers), provider attempts and HTTP calls, Turbotext polls
  (workers). The code paths call the small `observe_*` functions below, which never raise.
- **State read from the database at scrape time** by collectors (`JobsCollector`,
  `WorkersCollector`, `StorageCollector`): the queue by state, live workers, stored bytes. One
  aggregate query each, its answer reused for a few seconds. Only the web's /metrics serves them,
  so that several scrape targets never report the same rows twice.
- **django-prometheus**: its middleware pair (request metrics) and its `django_db_*` query
  metrics, fed here by an execute wrapper on every connection instead of its database engines
  (which would change `ENGINE`, a value the settings and tests compare).

The web process serves everything on `/metrics` (loopback / `METRICS_ALLOWED_NETWORKS`, or the
`METRICS_TOKEN` bearer token). Under several uvicorn processes set `PROMETHEUS_MULTIPROC_DIR`:
each process then writes its values to files there and the view adds them all up.
`run_workers --metrics-port` serves the worker's process-local metrics (`start_worker_server`).
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec

from django.conf import settings
from django.db import DatabaseError
from django.db.backends.signals import connection_created
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from photobooth import metrics_settings
from photobooth.body_guard import RECEIVED_AT_SCOPE_KEY
from photobooth.errors import Forbidden, MethodNotAllowed, error_response

if TYPE_CHECKING:
    from jobqueue.models import Job

logger = logging.getLogger(__name__)

P = ParamSpec("P")

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def setting(name: str) -> Any:
    """A metrics setting: Django's settings if they define it, else photobooth.metrics_settings."""
    return getattr(settings, name, getattr(metrics_settings, name))


# --- Buckets (seconds) ----------------------------------------------------------------------------
# Ingest: a refused upload takes milliseconds, a processed one seconds, a timeout 45-60 s.
INGEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 40, 45, 50, 55, 60)
QUEUE_WAIT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 45, 60)
PROCESSING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60)
PROVIDER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60)

# --- Process-local metrics ------------------------------------------------------------------------
INGEST_DURATION = Histogram(
    "photobooth_ingest_duration_seconds",
    "POST /ingest/<slot>: from the request's arrival to its answer, by slot and outcome "
    "(the HTTP status, or 'disconnected' when the booth hung up).",
    ["slot", "outcome"],
    buckets=INGEST_BUCKETS,
)
JOBS_FINALIZED = Counter(
    "photobooth_jobs_finalized",
    "Jobs finalized, by provider and outcome (success, timeout, provider_error, ...).",
    ["provider", "outcome"],
)
QUEUE_WAIT = Histogram(
    "photobooth_job_queue_wait_seconds",
    "From a job's arrival to its (last) pick-up by a worker; observed when it is finalized.",
    ["provider"],
    buckets=QUEUE_WAIT_BUCKETS,
)
PROCESSING = Histogram(
    "photobooth_job_processing_seconds",
    "From a job's (last) pick-up to its finalization, by provider and outcome.",
    ["provider", "outcome"],
    buckets=PROCESSING_BUCKETS,
)
PROVIDER_ATTEMPTS = Counter(
    "photobooth_provider_attempts",
    "Provider runs (one per attempt at a job), by outcome: success, retry (a retryable error "
    "that will be retried), error (the job fails), timeout (the deadline came first).",
    ["provider", "outcome"],
)
PROVIDER_ATTEMPT_DURATION = Histogram(
    "photobooth_provider_attempt_duration_seconds",
    "Duration of one provider run (all its HTTP calls and polls), by outcome.",
    ["provider", "outcome"],
    buckets=PROVIDER_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "photobooth_provider_errors",
    "Failed provider runs (retried or not, and deadline overruns), by error code.",
    ["provider", "code"],
)
PROVIDER_RETRIES = Counter(
    "photobooth_provider_retries",
    "Provider runs repeated after a retryable error, by the error's code.",
    ["provider", "code"],
)
PROVIDER_HTTP_REQUESTS = Counter(
    "photobooth_provider_http_requests",
    "HTTP exchanges with providers (providers/http.py), by status class (2xx, 4xx, 429, 5xx) "
    "or failure (timeout, network_error).",
    ["provider", "status"],
)
PROVIDER_HTTP_DURATION = Histogram(
    "photobooth_provider_http_request_duration_seconds",
    "Duration of one HTTP exchange with a provider, body included.",
    ["provider"],
    buckets=PROVIDER_BUCKETS,
)
TURBOTEXT_POLLS = Counter(
    "photobooth_turbotext_polls",
    "Turbotext get_result requests, by how the task's polling ended (ready, error, deadline).",
    ["outcome"],
)
TURBOTEXT_POLLED_TASKS = Counter(
    "photobooth_turbotext_polled_tasks",
    "Turbotext tasks polled to the end, by how the polling ended.",
    ["outcome"],
)

# The provider a worker thread is running: names the provider of HTTP calls in providers/http.py.
_current_provider: ContextVar[str] = ContextVar("photobooth_metrics_provider", default="unknown")

SLOT_ID = re.compile(r"slot-\d{3}")


def _never_raises(function: Callable[P, None]) -> Callable[P, None]:
    """Metrics must never cost a job or an answer: failures are logged and swallowed."""

    @functools.wraps(function)
    def safe(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            function(*args, **kwargs)
        except Exception:
            logger.warning("metrics update failed", exc_info=True)

    return safe


# --- Observations ---------------------------------------------------------------------------------
IngestView = Callable[[HttpRequest, str], Coroutine[Any, Any, HttpResponse]]


def observe_ingest(view: IngestView) -> IngestView:
    """Decorates the ingest view: its latency, by slot and outcome, into INGEST_DURATION.

    Measured from the arrival of the request's headers (noted by the ASGI body guard, so the
    upload counts too, as it does for the booth) or from the view's start without it.
    """

    @functools.wraps(view)
    async def observed(request: HttpRequest, slot_id: str) -> HttpResponse:
        arrived = _arrival(request)
        started = time.monotonic()
        outcome = "500"
        try:
            response = await view(request, slot_id)
            outcome = str(response.status_code)
            return response
        except asyncio.CancelledError:
            outcome = "disconnected"
            raise
        finally:
            elapsed = time.time() - arrived if arrived is not None else time.monotonic() - started
            _observe_ingest(slot_id, outcome, elapsed)

    return observed


def _arrival(request: HttpRequest) -> float | None:
    scope = getattr(request, "scope", None) or {}
    arrived = scope.get(RECEIVED_AT_SCOPE_KEY)
    return float(arrived) if arrived is not None else None


def slot_label(slot_id: str, outcome: str) -> str:
    """The slot as a label: the path is the client's, so only `slot-NNN` ids are kept, and not
    for 401 (the password is checked before the slot: anyone may send any id)."""
    if outcome == "401" or not SLOT_ID.fullmatch(slot_id):
        return "unknown"
    return slot_id


@_never_raises
def _observe_ingest(slot_id: str, outcome: str, seconds: float) -> None:
    INGEST_DURATION.labels(slot_label(slot_id, outcome), outcome).observe(max(0.0, seconds))


@_never_raises
def observe_finalized(job: Job, *, outcome: str, finalized_at: datetime) -> None:
    """A job was finalized (by this process): count it; queue wait and processing time when it
    had been picked up."""
    provider = job.provider_id or "unknown"
    JOBS_FINALIZED.labels(provider, outcome).inc()
    if job.started_at is not None:
        waited = (job.started_at - job.created_at).total_seconds()
        QUEUE_WAIT.labels(provider).observe(max(0.0, waited))
        worked = (finalized_at - job.started_at).total_seconds()
        PROCESSING.labels(provider, outcome).observe(max(0.0, worked))


@_never_raises
def set_current_provider(provider_id: str) -> None:
    """The provider this thread runs from now on (labels its HTTP calls)."""
    _current_provider.set(provider_id or "unknown")


@_never_raises
def observe_provider_attempt(provider_id: str, seconds: float, details: Mapping[str, Any]) -> None:
    """One provider run ended; `details` are the worker's log details (outcome, code)."""
    provider = provider_id or "unknown"
    outcome = str(details.get("outcome", "unknown"))
    PROVIDER_ATTEMPTS.labels(provider, outcome).inc()
    PROVIDER_ATTEMPT_DURATION.labels(provider, outcome).observe(max(0.0, seconds))
    if outcome == "success":
        return
    code = "deadline" if outcome == "timeout" else str(details.get("code") or "unknown")
    PROVIDER_ERRORS.labels(provider, code).inc()
    if outcome == "retry":
        PROVIDER_RETRIES.labels(provider, code).inc()


def http_status_label(status: object) -> str:
    """2xx/3xx/4xx/5xx, 429 on its own (rate limiting), or the failure's name."""
    if isinstance(status, int) and not isinstance(status, bool):
        return "429" if status == 429 else f"{status // 100}xx"
    return str(status) if status in ("timeout", "network_error") else "unknown"


@_never_raises
def observe_provider_http(status: object, seconds: float) -> None:
    """One HTTP exchange with the provider this thread runs."""
    provider = _current_provider.get()
    PROVIDER_HTTP_REQUESTS.labels(provider, http_status_label(status)).inc()
    PROVIDER_HTTP_DURATION.labels(provider).observe(max(0.0, seconds))


@_never_raises
def observe_turbotext_polling(polls: int, outcome: str) -> None:
    """A Turbotext task's polling ended after `polls` get_result requests."""
    TURBOTEXT_POLLS.labels(outcome).inc(polls)
    TURBOTEXT_POLLED_TASKS.labels(outcome).inc()


# --- django-prometheus database metrics -----------------------------------------------------------
def _query_wrapper(
    execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Mapping[str, Any]
) -> Any:
    from django_prometheus.db import metrics as db

    connection = context["connection"]
    alias, vendor = connection.alias, connection.vendor
    count = 1
    if many:
        try:
            count = len(params)
        except TypeError:
            count = 1
        db.execute_many_total.labels(alias, vendor).inc(count)
    db.execute_total.labels(alias, vendor).inc(count)
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    except Exception as error:
        db.errors_total.labels(alias, vendor, type(error).__name__).inc()
        raise
    finally:
        db.query_duration_seconds.labels(alias, vendor).observe(time.perf_counter() - started)


def _instrument_connection(sender: object, connection: Any, **kwargs: object) -> None:
    """Each new connection: counted, and its queries measured (django-prometheus's metrics)."""
    try:
        from django_prometheus.db import metrics as db

        db.connections_total.labels(connection.alias, connection.vendor).inc()
        if not any(wrapper is _query_wrapper for wrapper in connection.execute_wrappers):
            # First, so that Django's own `execute_wrapper()` blocks (append/pop) keep working.
            connection.execute_wrappers.insert(0, _query_wrapper)
    except Exception:
        logger.warning("could not instrument a database connection", exc_info=True)


connection_created.connect(_instrument_connection, dispatch_uid="photobooth.metrics.database")


# --- State read from the database at scrape time --------------------------------------------------
class DatabaseCollector:
    """Families computed by `read()` from the database, reused for `cache_setting` seconds.

    A failed read yields `failed()` (and is logged); it is cached too, so that a database that
    is down is not asked again at every scrape.
    """

    cache_setting = "METRICS_DB_CACHE_SECONDS"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._families: list[Metric] = []
        self._read_at: float | None = None

    def describe(self) -> Iterable[Metric]:
        """The families without samples, read nothing (lets a registry check names)."""
        return self.empty()

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            now = time.monotonic()
            max_age = float(setting(self.cache_setting))
            if self._read_at is None or now - self._read_at >= max_age:
                try:
                    self._families = self.read()
                except DatabaseError:
                    logger.warning("metrics: database unavailable", exc_info=True)
                    self._families = self.failed()
                self._read_at = now
            return list(self._families)

    def reset(self) -> None:
        with self._lock:
            self._read_at = None
            self._families = []

    def empty(self) -> list[GaugeMetricFamily]:
        raise NotImplementedError

    def read(self) -> list[Metric]:
        raise NotImplementedError

    def failed(self) -> list[Metric]:
        return []


class JobsCollector(DatabaseCollector):
    """The queue: unfinalized jobs by state, the oldest pending job's age, database reachable."""

    STATES = ("pending", "processing")

    def empty(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "photobooth_jobs",
                "Unfinalized jobs by state (pending: waiting for a worker; processing: held by "
                "one), read from the database at scrape time.",
                labels=["state"],
            ),
            GaugeMetricFamily(
                "photobooth_jobs_oldest_pending_age_seconds",
                "Age of the oldest pending job (0 when none is pending).",
            ),
            GaugeMetricFamily(
                "photobooth_database_up",
                "1 when the last metrics query to the database succeeded, else 0.",
            ),
        ]

    def read(self) -> list[Metric]:
        from django.db.models import Count, Min, Q

        from jobqueue.models import Job, JobStatus

        now = timezone.now()
        counts = Job.objects.filter(is_finalized=False).aggregate(
            pending=Count("id", filter=Q(status=JobStatus.PENDING)),
            processing=Count("id", filter=Q(status=JobStatus.PROCESSING)),
            oldest=Min("created_at", filter=Q(status=JobStatus.PENDING)),
        )
        jobs, oldest, up = self.empty()
        for state in self.STATES:
            jobs.add_metric([state], counts[state] or 0)
        age = (now - counts["oldest"]).total_seconds() if counts["oldest"] else 0.0
        oldest.add_metric([], max(0.0, age))
        up.add_metric([], 1)
        return [jobs, oldest, up]

    def failed(self) -> list[Metric]:
        up = self.empty()[2]
        up.add_metric([], 0)
        return [up]


class WorkersCollector(DatabaseCollector):
    """Workers from their heartbeat rows: live ones, their capacity, each one's heartbeat age."""

    def empty(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "photobooth_workers_live",
                "run_workers processes with a heartbeat within WORKER_STALE_SECONDS that are not "
                "stopping (ingest answers 503 while this is 0).",
            ),
            GaugeMetricFamily(
                "photobooth_workers_stopping",
                "Workers with a recent heartbeat that are shutting down.",
            ),
            GaugeMetricFamily(
                "photobooth_workers_capacity",
                "Jobs the live workers can run at once (sum of their concurrency).",
            ),
            GaugeMetricFamily(
                "photobooth_workers_running_jobs",
                "Jobs the live workers held at their last heartbeat.",
            ),
            GaugeMetricFamily(
                "photobooth_workers_last_heartbeat_age_seconds",
                "Age of the most recent heartbeat of any worker (absent when no worker row).",
            ),
            GaugeMetricFamily(
                "photobooth_worker_heartbeat_age_seconds",
                "Age of each worker's last heartbeat (rows of vanished workers are kept a day).",
                labels=["worker"],
            ),
        ]

    def read(self) -> list[Metric]:
        from jobqueue.models import WorkerHeartbeat

        now = timezone.now()
        stale = timedelta(seconds=float(settings.WORKER_STALE_SECONDS))
        rows = list(
            WorkerHeartbeat.objects.values_list(
                "worker_id", "last_seen_at", "is_stopping", "concurrency", "current_job_ids"
            )
        )
        live, stopping, capacity, running, newest, each = self.empty()
        counts = {"live": 0, "stopping": 0, "capacity": 0, "running": 0}
        ages: list[float] = []
        for worker_id, last_seen_at, is_stopping, concurrency, job_ids in rows:
            age = max(0.0, (now - last_seen_at).total_seconds())
            ages.append(age)
            each.add_metric([worker_id], age)
            if now - last_seen_at > stale:
                continue
            if is_stopping:
                counts["stopping"] += 1
                continue
            counts["live"] += 1
            counts["capacity"] += concurrency
            counts["running"] += len(job_ids or [])
        live.add_metric([], counts["live"])
        stopping.add_metric([], counts["stopping"])
        capacity.add_metric([], counts["capacity"])
        running.add_metric([], counts["running"])
        families: list[Metric] = [live, stopping, capacity, running]
        if ages:
            newest.add_metric([], min(ages))
            families.append(newest)
        families.append(each)
        return families


class StorageCollector(DatabaseCollector):
    """Stored files by kind, summed from the rows that own them (not by walking the disk)."""

    cache_setting = "METRICS_STORAGE_CACHE_SECONDS"
    KINDS = ("payloads", "results", "media", "templates")

    def empty(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "photobooth_media_storage_bytes",
                "Bytes stored under MEDIA_ROOT by kind: payloads (uploads of unfinished jobs), "
                "results (kept for retention), media (temporary public copies), templates.",
                labels=["kind"],
            ),
            GaugeMetricFamily(
                "photobooth_media_storage_files", "Files stored by kind.", labels=["kind"]
            ),
        ]

    def read(self) -> list[Metric]:
        from django.db.models import Count, Q, Sum

        from ingest.models import TemplateMedia
        from jobqueue.models import Job, MediaObject

        jobs = Job.objects.aggregate(
            payloads_bytes=Sum("payload_size", filter=~Q(payload_path="")),
            payloads_files=Count("id", filter=~Q(payload_path="")),
            results_bytes=Sum("result_size", filter=~Q(result_path="")),
            results_files=Count("id", filter=~Q(result_path="")),
        )
        media = MediaObject.objects.aggregate(bytes=Sum("size"), files=Count("id"))
        templates = TemplateMedia.objects.aggregate(bytes=Sum("size"), files=Count("id"))
        figures = {
            "payloads": (jobs["payloads_bytes"], jobs["payloads_files"]),
            "results": (jobs["results_bytes"], jobs["results_files"]),
            "media": (media["bytes"], media["files"]),
            "templates": (templates["bytes"], templates["files"]),
        }
        size, count = self.empty()
        for kind in self.KINDS:
            stored, files = figures[kind]
            size.add_metric([kind], stored or 0)
            count.add_metric([kind], files or 0)
        return [size, count]


DATABASE_COLLECTORS: tuple[DatabaseCollector, ...] = (
    JobsCollector(),
    WorkersCollector(),
    StorageCollector(),
)


def reset_caches() -> None:
    """Forget the database figures read so far (tests; a new scrape reads them again)."""
    for collector in DATABASE_COLLECTORS:
        collector.reset()


class WebMetrics:
    """What the web's /metrics serves: this process's metrics, or every process's in
    multiprocess mode, plus the database collectors."""

    def collect(self) -> Iterator[Metric]:
        directory = os.environ.get(MULTIPROCESS_ENV)
        if directory:
            yield from MultiProcessCollector(None, path=directory).collect()
        else:
            yield from REGISTRY.collect()
        for collector in DATABASE_COLLECTORS:
            yield from collector.collect()


WEB_METRICS = WebMetrics()


def exported_metric_names() -> set[str]:
    """Every sample name the web and the workers can export (with _total, _bucket, ... forms)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
        "info": ("_info",),
    }
    # The metrics django-prometheus registers on first use (middleware) or import (database).
    from django_prometheus.db import metrics as _database_metrics  # noqa: F401
    from django_prometheus.middleware import Metrics as RequestMetrics

    RequestMetrics.get_instance()
    families = [*REGISTRY.collect()]
    for collector in DATABASE_COLLECTORS:
        families.extend(collector.describe())
    names: set[str] = set()
    for family in families:
        for suffix in suffixes.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


# --- Serving --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _networks(
    spec: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in spec if item.strip())


def client_allowed(request: HttpRequest) -> bool:
    """From an allowed network (the client address as uvicorn reports it), or with the token."""
    token = str(setting("METRICS_TOKEN") or "")
    if token:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), token.encode()
        ):
            return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR") or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    networks = _networks(tuple(setting("METRICS_ALLOWED_NETWORKS") or ()))
    return any(address in network for network in networks)


def metrics_view(request: HttpRequest) -> HttpResponse:
    """GET /metrics: Prometheus text format, for allowed networks or with the metrics token."""
    if request.method not in ("GET", "HEAD"):
        return error_response(
            MethodNotAllowed("Read the metrics with GET.", headers={"Allow": "GET, HEAD"})
        )
    if not client_allowed(request):
        return error_response(
            Forbidden(
                "Metrics are served to allowed networks, or with the metrics token.",
                code="metrics_forbidden",
            )
        )
    # Negotiated like prometheus_client's own server: OpenMetrics when asked, else text 0.0.4.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    response = HttpResponse(encode(WEB_METRICS), content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response


def start_worker_server(*, host: str, port: int) -> int:
    """Serve this process's metrics (plain prometheus_client HTTP server, a daemon thread).

    Returns the port. Unauthenticated: bind it to loopback or a private interface.
    """
    if os.environ.get(MULTIPROCESS_ENV):
        logger.warning(
            "%s is set for run_workers: its metrics also land in that directory, and the web's "
            "/metrics would count them a second time. Set it for the web process only.",
            MULTIPROCESS_ENV,
        )
    server, _ = start_http_server(port, addr=host)
    return int(server.server_port)
