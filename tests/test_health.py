"""/healthz (the process answers) and /readyz (database, migrations, media folder, a worker).

The views are routed here by this module's own URLs (pytest's `urls` mark), the way
photobooth/urls.py routes them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.test import Client
from django.urls import path

from jobqueue import services
from photobooth import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

ALL_OK = {"database": "ok", "migrations": "ok", "media": "ok", "worker": "ok"}


@pytest.fixture(autouse=True)
def fresh_probe_memory() -> Iterator[None]:
    health.forget()
    yield
    health.forget()


@pytest.fixture
def live_worker() -> None:
    services.record_heartbeat(worker_id="host:4242", concurrency=2, job_ids=[], is_stopping=False)


def latest_migration(app_label: str) -> tuple[str, str]:
    """The app's newest migration (what a deployment without `migrate` would lack)."""
    graph = MigrationExecutor(connection).loader.graph
    [leaf] = [node for node in graph.leaf_nodes() if node[0] == app_label]
    return leaf


def readyz(client: Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/readyz")
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    return response.status_code, response.json()


def test_healthz_says_the_process_is_up_whatever_else_is_down(client: Client) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


def test_ready_when_every_check_passes(client: Client, live_worker: None) -> None:
    status, body = readyz(client)

    assert status == 200
    assert body == {"status": "ready", "checks": ALL_OK}


def test_no_worker_heartbeat_is_503_naming_the_worker(client: Client) -> None:
    status, body = readyz(client)

    assert status == 503
    assert body == {
        "status": "not_ready",
        "checks": {**ALL_OK, "worker": "no live worker"},
        "failing": ["worker"],
    }


def test_a_stopping_or_silent_worker_does_not_count(client: Client, settings: Any) -> None:
    services.record_heartbeat(worker_id="host:1", concurrency=2, job_ids=[], is_stopping=True)
    assert readyz(client)[1]["failing"] == ["worker"]

    settings.WORKER_STALE_SECONDS = 0
    services.record_heartbeat(worker_id="host:2", concurrency=2, job_ids=[], is_stopping=False)
    assert readyz(client)[1]["failing"] == ["worker"]


def test_a_media_folder_that_cannot_be_written_is_503_naming_media(
    client: Client, live_worker: None, settings: Any, tmp_path: Path
) -> None:
    # Below a regular file nothing can be created, even by root (whom permissions do not stop).
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings.MEDIA_ROOT = blocker / "media"

    status, body = readyz(client)

    assert status == 503
    assert body["failing"] == ["media"]
    assert body["checks"] == {**ALL_OK, "media": "MEDIA_ROOT is not writable"}


def test_a_read_only_media_folder_is_503(
    client: Client, live_worker: None, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def read_only(*args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(health.default_storage, "save", read_only)

    status, body = readyz(client)

    assert status == 503 and body["failing"] == ["media"]


def test_the_media_check_leaves_nothing_behind(
    client: Client, live_worker: None, media_root: Path
) -> None:
    assert readyz(client)[0] == 200
    assert not [p for p in media_root.rglob("*") if p.is_file()]


def test_an_unapplied_migration_is_503_naming_migrations(client: Client, live_worker: None) -> None:
    latest = latest_migration("jobqueue")
    MigrationRecorder(connection).record_unapplied(*latest)

    status, body = readyz(client)

    assert status == 503
    assert body["failing"] == ["migrations"]
    assert body["checks"]["migrations"].endswith("not applied: run `manage.py migrate`")
    assert body["checks"]["database"] == body["checks"]["worker"] == "ok"

    # Not remembered while failing: applied again, the next probe sees it.
    MigrationRecorder(connection).record_applied(*latest)
    assert readyz(client) == (200, {"status": "ready", "checks": ALL_OK})


def test_applied_migrations_are_checked_once_then_remembered(
    client: Client, live_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert readyz(client)[0] == 200

    def no_more_checks(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the migration plan is read again")

    monkeypatch.setattr(MigrationExecutor, "__init__", no_more_checks)
    assert readyz(client)[0] == 200


def test_an_unreachable_database_is_503_and_skips_what_needs_it(
    client: Client, live_worker: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", refuse)

    status, body = readyz(client)

    assert status == 503
    assert body["failing"] == ["database"]
    assert body["checks"] == {
        "database": "the database is unreachable",
        "migrations": "skipped: the database is unreachable",
        "media": "ok",
        "worker": "skipped: the database is unreachable",
    }


def test_every_failing_check_is_named(
    client: Client, monkeypatch: pytest.MonkeyPatch, settings: Any, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")
    settings.MEDIA_ROOT = tmp_path / "file" / "media"
    MigrationRecorder(connection).record_unapplied(*latest_migration("ingest"))

    status, body = readyz(client)

    assert status == 503
    assert body["failing"] == ["migrations", "media", "worker"]


def test_no_login_is_needed_and_nothing_is_cached(client: Client, live_worker: None) -> None:
    for url in ("/healthz", "/readyz"):
        response = client.get(url, HTTP_AUTHORIZATION="")
        assert response.status_code == 200
        assert response["Cache-Control"] == "no-store"


def test_readiness_changes_are_logged_once_each(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="photobooth.health")
    readyz(client)
    readyz(client)
    services.record_heartbeat(worker_id="host:9", concurrency=1, job_ids=[], is_stopping=False)
    readyz(client)
    readyz(client)

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "photobooth.health"]
    assert lines == [("WARNING", "not ready"), ("INFO", "ready")]
    assert caplog.records[0].failing == ["worker"]  # type: ignore[attr-defined]
