"""Probes for load balancers and supervisors: `/healthz` (alive) and `/readyz` (able to work).

Both are cheap, need no login and are never cached.

- `/healthz`: the process is up and answering. Nothing else is looked at, so a supervisor does
  not restart a web process because the database is down.
- `/readyz`: this process can take photos now. 200 `{"status": "ready", "checks": {...}}` when
  every check passes; 503 `{"status": "not_ready", "checks": {...}, "failing": [...]}` naming
  the checks that failed. Checks:
  - `database`: a connection answers `SELECT 1`;
  - `migrations`: no migration is left to apply (checked until it passes once, then remembered:
    migrations are not undone under a running process);
  - `media`: a file can be created and deleted in MEDIA_ROOT (through the storage API);
  - `worker`: a worker sent a heartbeat within WORKER_STALE_SECONDS and is not stopping (without
    one, ingest answers 503 anyway).
  `migrations` and `worker` need the database: while it is unreachable they are reported as
  skipped, not as failing. Reasons are short fixed texts; details go to the log, once per change
  of state.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse

from jobqueue.connections import release_connection
from jobqueue.selectors import any_live_worker

logger = logging.getLogger(__name__)

OK = "ok"
SKIPPED = "skipped: the database is unreachable"


class _State:
    """What one process remembers between probes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.migrations_applied = False
        self.last_failing: tuple[str, ...] | None = None


_state = _State()


def forget() -> None:
    """Forget what earlier probes found (tests)."""
    with _state.lock:
        _state.migrations_applied = False
        _state.last_failing = None


def healthz(request: HttpRequest) -> JsonResponse:
    """The process is up and serving requests."""
    return _no_store(JsonResponse({"status": "ok"}))


def readyz(request: HttpRequest) -> JsonResponse:
    """Whether this process can accept photos now: 200 ready, 503 naming what is not."""
    errors: dict[str, str] = {}
    try:
        checks = {"database": _run("database", _check_database, errors)}
        database_up = checks["database"] == OK
        checks["migrations"] = (
            _run("migrations", _check_migrations, errors) if database_up else SKIPPED
        )
        checks["media"] = _run("media", _check_media, errors)
        checks["worker"] = _run("worker", _check_worker, errors) if database_up else SKIPPED
    finally:
        release_connection()
    failing = [name for name, outcome in checks.items() if outcome not in (OK, SKIPPED)]
    _log_change(tuple(failing), checks, errors)
    if failing:
        body = {"status": "not_ready", "checks": checks, "failing": failing}
        return _no_store(JsonResponse(body, status=503))
    return _no_store(JsonResponse({"status": "ready", "checks": checks}))


def _run(name: str, check: Callable[[], str], errors: dict[str, str]) -> str:
    """The check's outcome; an exception is a failure (its text is for the log only)."""
    try:
        return check()
    except Exception as error:
        errors[name] = f"{type(error).__name__}: {error}"[:500]
        return _FAILURES[name]


_FAILURES = {
    "database": "the database is unreachable",
    "migrations": "the migrations cannot be read",
    "media": "MEDIA_ROOT is not writable",
    "worker": "no live worker",
}


def _check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return OK


def _check_migrations() -> str:
    if _state.migrations_applied:
        return OK
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    if plan:
        return f"{len(plan)} migration(s) not applied: run `manage.py migrate`"
    with _state.lock:
        _state.migrations_applied = True
    return OK


def _check_media() -> str:
    name = default_storage.save(f".readyz-{uuid.uuid4().hex}.probe", ContentFile(b"ready"))
    default_storage.delete(name)
    return OK


def _check_worker() -> str:
    stale_after = timedelta(seconds=settings.WORKER_STALE_SECONDS)
    return OK if any_live_worker(stale_after=stale_after) else _FAILURES["worker"]


def _log_change(failing: tuple[str, ...], checks: dict[str, str], errors: dict[str, str]) -> None:
    """One line when readiness changes, not one per probe."""
    with _state.lock:
        if failing == _state.last_failing:
            return
        _state.last_failing = failing
    if failing:
        logger.warning(
            "not ready", extra={"failing": list(failing), "checks": checks, "errors": errors}
        )
    else:
        logger.info("ready", extra={"checks": checks})


def _no_store(response: JsonResponse) -> JsonResponse:
    response["Cache-Control"] = "no-store"
    return response
