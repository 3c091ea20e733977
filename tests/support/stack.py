"""Starting the real processes (uvicorn web server, run_workers) against the test database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests
from django.conf import settings
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[2]


def database_url() -> str:
    """A DATABASE_URL naming the test database this pytest process uses."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    credentials = db["USER"] or ""
    if db.get("PASSWORD"):
        credentials += f":{db['PASSWORD']}"
    host = db["HOST"] or "127.0.0.1"
    port = db["PORT"] or 5432
    return f"postgres://{credentials}@{host}:{port}/{db['NAME']}"


def process_environment(**overrides: str) -> dict[str, str]:
    """The environment for a product process sharing this test run's database and media."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "photobooth.settings",
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "SECRET_KEY": settings.SECRET_KEY,
        "PHOTOBOOTH_EXTRA_PROVIDERS": settings.TESTING_PROVIDER,
        "WORKER_POLL_SECONDS": "0.05",
        "INGEST_WAIT_POLL_SECONDS": "0.05",
        "WORKER_REAP_SECONDS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def all_at_once(count: int, send: Callable[[int], T]) -> list[T]:
    """Call `send(0)` … `send(count - 1)` from `count` threads released together (a burst of
    booths); their results in that order."""
    start_together = threading.Barrier(count)

    def released(number: int) -> T:
        start_together.wait(timeout=10)
        return send(number)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(released, range(count)))


def wait_until(
    condition: Callable[[], object], *, timeout: float, interval: float = 0.05
) -> object:
    """Poll `condition` until it returns something truthy; AssertionError after `timeout`."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@dataclass
class ManagedProcess:
    """A child process whose output goes to a log file, stopped with SIGTERM then SIGKILL."""

    name: str
    command: list[str]
    env: Mapping[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command, cwd=REPO_ROOT, env=dict(self.env), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_workers(
    log_dir: Path, *, concurrency: int = 2, name: str = "workers", **env: str
) -> ManagedProcess:
    """A real `manage.py run_workers` process."""
    return ManagedProcess(
        name=name,
        command=[sys.executable, "manage.py", "run_workers", "--concurrency", str(concurrency)],
        env=process_environment(**env),
        log_path=log_dir / f"{name}.log",
    ).start()


@dataclass
class WebServer:
    process: ManagedProcess
    base_url: str


def start_web(log_dir: Path, *, port: int | None = None, **env: str) -> WebServer:
    """A real uvicorn server running the product's ASGI application; returns once it answers."""
    port = port or free_port()
    process = ManagedProcess(
        name="web",
        command=[
            sys.executable,
            "-m",
            "uvicorn",
            "photobooth.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        env=process_environment(**env),
        log_path=log_dir / "web.log",
    ).start()
    base_url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if process.process is not None and process.process.poll() is not None:
            raise AssertionError(f"web server exited:\n{process.output()}")
        try:
            return requests.get(f"{base_url}/healthz", timeout=5).status_code == 200
        except (requests.ConnectionError, requests.Timeout):
            return False  # not listening yet, or a first answer slowed by a busy machine

    try:
        wait_until(answers, timeout=60)
    except BaseException:
        process.stop()
        raise
    return WebServer(process=process, base_url=base_url)
