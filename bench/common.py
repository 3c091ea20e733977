"""Shared set-up for the benchmarks: a fresh database, Django, worker processes, figures."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/photobooth_bench"


def prepare(*, database_url: str | None, extra_env: dict[str, str] | None = None) -> Path:
    """A fresh database and media folder; environment set for this process and its children.

    Returns the work folder. PostgreSQL databases are dropped and created afresh; without a
    PostgreSQL URL a temporary SQLite file is used.
    """
    work_dir = Path(tempfile.mkdtemp(prefix="photobooth-bench-"))
    env = {
        "DJANGO_SETTINGS_MODULE": "photobooth.settings",
        "PHOTOBOOTH_DATA_DIR": str(work_dir),
        "MEDIA_ROOT": str(work_dir / "media"),
        "PHOTOBOOTH_EXTRA_PROVIDERS": "tests.support.providers.TestingProvider",
        "INGEST_MAX_UNFINISHED_PER_SLOT": "1000000",
        "INGEST_MAX_UNFINISHED_TOTAL": "1000000",
        "LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    if database_url and database_url.startswith("postgres"):
        recreate_postgres_database(database_url)
        env["DATABASE_URL"] = database_url
    else:
        env["DATABASE_URL"] = f"sqlite:///{work_dir / 'bench.sqlite3'}"
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return work_dir


def recreate_postgres_database(url: str) -> None:
    import psycopg

    name = urlparse(url).path.lstrip("/")
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def start_workers(count: int, concurrency: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Real `manage.py run_workers` processes with this process's environment."""
    processes = []
    for number in range(count):
        log = (log_dir / f"worker-{number}.log").open("wb")
        processes.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "run_workers", "--concurrency", str(concurrency)],
                cwd=REPO,
                env=dict(os.environ),
                stdout=log,
                stderr=log,
            )
        )
    return processes


def stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def percentile(values: Sequence[float], share: float) -> float:
    """The `share` percentile (0–1) of `values`, nearest-rank."""
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(share * len(ordered))) - 1))
    return ordered[index]


def describe_ms(values: Sequence[float]) -> str:
    """p50 / p95 / p99 / max of millisecond figures."""
    return (
        f"p50 {statistics.median(values):.1f} ms, p95 {percentile(values, 0.95):.1f} ms, "
        f"p99 {percentile(values, 0.99):.1f} ms, max {max(values):.1f} ms (n={len(values)})"
    )


def database_label() -> str:
    return os.environ["DATABASE_URL"].split("@")[-1].split("://")[-1]
