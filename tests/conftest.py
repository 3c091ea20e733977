"""Shared fixtures: real rows, real files, real processes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from ingest.services import set_ingest_password
from jobqueue.selectors import any_live_worker
from tests.support.images import make_photo
from tests.support.stack import (
    ManagedProcess,
    WebServer,
    free_port,
    start_web,
    start_workers,
    wait_until,
)

INGEST_PASSWORD = "booth-secret-1234"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the temporary data and media folders tests/settings.py made for this run."""
    import shutil

    from django.conf import settings

    for folder in (settings.DATA_DIR, settings.TEST_MEDIA_BASE):
        shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked postgres_only are skipped when the suite runs on SQLite."""
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (set DATABASE_URL)")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    """Each test stores its files in its own folder (shared with the processes it starts)."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def photo_jpeg() -> bytes:
    return make_photo()


@pytest.fixture
def ingest_password(db: None) -> str:
    set_ingest_password(password=INGEST_PASSWORD, changed_by="tests")
    return INGEST_PASSWORD


@dataclass
class Stack:
    """A running web server and worker process sharing the test database and media folder."""

    web: WebServer
    workers: ManagedProcess
    log_dir: Path

    @property
    def base_url(self) -> str:
        return self.web.base_url

    def logs(self) -> str:
        return f"--- web ---\n{self.web.process.output()}\n--- workers ---\n{self.workers.output()}"


@pytest.fixture
def live_db(django_db_serialized_rollback: None, transactional_db: None) -> None:
    """Committed data (visible to other processes); the seeded slots are restored afterwards."""


@pytest.fixture
def stack_factory(live_db: None, tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Starts uvicorn + run_workers with extra environment (e.g. a provider's fake base URL)."""
    started: list[Stack] = []

    def start(*, concurrency: int = 2, **env: str) -> Stack:
        # Public links (temporary media for providers, guest pages) point at this web server.
        port = free_port()
        env.setdefault("PUBLIC_BASE_URL", f"http://127.0.0.1:{port}")
        workers = start_workers(tmp_path, concurrency=concurrency, **env)
        try:
            web = start_web(tmp_path, port=port, **env)
        except BaseException:
            workers.stop()
            raise
        running = Stack(web=web, workers=workers, log_dir=tmp_path)
        started.append(running)
        # Ingest refuses uploads until a worker is alive: wait for its first heartbeat.
        wait_until(lambda: any_live_worker(stale_after=timedelta(seconds=10)), timeout=30)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.web.process.stop()
            running.workers.stop()


@pytest.fixture
def stack(stack_factory: Callable[..., Stack]) -> Stack:
    """uvicorn + run_workers, started for one test and stopped after it."""
    return stack_factory()
