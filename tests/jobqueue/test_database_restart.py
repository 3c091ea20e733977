"""A PostgreSQL restart under a running web server and workers: refused at once, then recovered.

The test owns a throw-away PostgreSQL cluster (initdb in a temporary folder, its own port and
socket folder) so that it can stop and start it without touching the shared server. The product
processes talk to that cluster; this test reads it with psycopg directly (pytest's own Django
connection stays on the shared test database and is not used here).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from tests.support.stack import (
    REPO_ROOT,
    ManagedProcess,
    WebServer,
    free_port,
    process_environment,
    start_web,
    start_workers,
    wait_until,
)

pytestmark = pytest.mark.postgres_only

INGEST_PASSWORD = "restart-secret-5678"
SYNC_RESPONSE_SECONDS = 12
PROVIDER_SECONDS = 2
# Short leases, so that a job whose worker lost the database is taken over well within the
# deadline.
WORKER_LEASE_SECONDS = 3
DATABASE_NAME = "photobooth"


# --- a PostgreSQL cluster of our own --------------------------------------------------------------
def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout), else wherever initdb is."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")

    def version(path: str) -> float:
        try:
            return float(Path(path).parts[-3])
        except ValueError:
            return 0.0

    if found:
        return Path(max(found, key=version)).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class Cluster:
    """A private PostgreSQL cluster, run as the `postgres` OS user when the tests run as root."""

    bin_dir: Path
    base: Path
    port: int
    as_postgres_user: bool

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def log_path(self) -> Path:
        return self.base / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{DATABASE_NAME}"

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / tool), *args]
        if self.as_postgres_user:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(
            command, cwd=self.base, capture_output=True, text=True, timeout=60, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{tool} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n"
                f"{self.log()}"
            )
        return result

    def init(self) -> None:
        self.run(
            "initdb",
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1"
            " -c fsync=off -c shared_buffers=32MB"
        )
        self.run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "-t",
            "30",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")

    def is_running(self) -> bool:
        return self.run("pg_ctl", "-D", str(self.data_dir), "status", check=False).returncode == 0

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def connect(self, dbname: str = DATABASE_NAME) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=dbname,
            connect_timeout=3,
            autocommit=True,
        )

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(sql, params).fetchall()

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> int:
        with self.connect() as conn:
            return conn.execute(sql, params).rowcount

    def scalar(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.query(sql, params)[0][0]


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    """initdb + start on a free port; always stopped and removed afterwards."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None or not (bin_dir / "pg_ctl").exists():
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Not under pytest's tmp_path: its parents are private to the user running the tests,
    # and the cluster runs as `postgres` when that user is root.
    base = Path(tempfile.mkdtemp(prefix="pb-pg-"))
    as_postgres_user = os.geteuid() == 0
    if as_postgres_user:
        shutil.chown(base, user="postgres", group="postgres")
    cluster = Cluster(
        bin_dir=bin_dir, base=base, port=free_port(), as_postgres_user=as_postgres_user
    )
    try:
        cluster.init()
        cluster.start()
        with cluster.connect(dbname="postgres") as conn:
            conn.execute(f"CREATE DATABASE {DATABASE_NAME}")
        yield cluster
    finally:
        if cluster.data_dir.exists() and cluster.is_running():
            try:
                cluster.stop("fast")
            except (AssertionError, subprocess.TimeoutExpired):
                cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def manage(cluster: Cluster, *args: str, stdin: str | None = None) -> None:
    """Run a management command against the cluster, as an operator would."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=process_environment(DATABASE_URL=cluster.url),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}{result.stderr}"


@dataclass
class ClusterStack:
    cluster: Cluster
    web: WebServer
    workers: ManagedProcess

    @property
    def base_url(self) -> str:
        return self.web.base_url

    def logs(self) -> str:
        return (
            f"--- web ---\n{self.web.process.output()}\n"
            f"--- workers ---\n{self.workers.output()}\n"
            f"--- postgres ---\n{self.cluster.log()}"
        )

    def live_workers(self) -> int:
        return int(
            self.cluster.scalar(
                "SELECT count(*) FROM jobqueue_workerheartbeat"
                " WHERE NOT is_stopping AND last_seen_at > now() - interval '10 seconds'"
            )
        )


@pytest.fixture
def cluster_stack(own_cluster: Cluster, tmp_path: Path) -> Iterator[ClusterStack]:
    """A migrated database with an ingest password, a web server and a worker process on it."""
    manage(own_cluster, "migrate", "--noinput")
    manage(own_cluster, "set_ingest_password", "--stdin", stdin=f"{INGEST_PASSWORD}\n")
    own_cluster.execute(
        "UPDATE ingest_ingestsettings SET sync_response_timeout_sec = %s",
        (SYNC_RESPONSE_SECONDS,),
    )
    # slot-002: a provider call long enough to straddle the restart.
    own_cluster.execute(
        "UPDATE ingest_slot SET provider_id = 'testing', operation_id = 'sleep',"
        " settings_json = jsonb_build_object('seconds', %s), is_active = true"
        " WHERE id = 'slot-002'",
        (PROVIDER_SECONDS,),
    )
    workers = start_workers(
        tmp_path,
        concurrency=2,
        DATABASE_URL=own_cluster.url,
        WORKER_LEASE_SECONDS=str(WORKER_LEASE_SECONDS),
        WORKER_HEARTBEAT_SECONDS="1",
    )
    web: WebServer | None = None
    try:
        web = start_web(tmp_path, DATABASE_URL=own_cluster.url)
        running = ClusterStack(cluster=own_cluster, web=web, workers=workers)
        wait_until(running.live_workers, timeout=30)
        yield running
    finally:
        if web is not None:
            web.process.stop()
        workers.stop()


def post_photo(base_url: str, slot_id: str, photo: bytes) -> requests.Response:
    return requests.post(
        f"{base_url}/ingest/{slot_id}",
        data={"password": INGEST_PASSWORD},
        files={"fileToUpload": ("IMG_0003.JPG", photo, "image/jpeg")},
        timeout=SYNC_RESPONSE_SECONDS + 30,
    )


def job_ids_of(responses: list[requests.Response]) -> set[str]:
    """Ids of the jobs these answers report (successes and deadline answers)."""
    ids = set()
    for response in responses:
        if response.status_code == 200:
            ids.add(response.headers["X-Job-Id"])
        elif response.status_code == 504:
            ids.add(response.json()["error"]["details"]["job_id"])
    return ids


def payload_files(media_root: Path) -> list[str]:
    folder = media_root / "payloads"
    return [os.path.join(d, name) for d, _, names in os.walk(folder) for name in names]


def assert_refused_at_once(stack: ClusterStack, photo: bytes) -> requests.Response:
    """While the database is down: 503 at once, in the JSON error shape — never held, no 500."""
    started = time.monotonic()
    refused = post_photo(stack.base_url, "slot-001", photo)
    elapsed = time.monotonic() - started
    assert refused.status_code == 503, (refused.status_code, refused.text, stack.logs())
    assert refused.headers["Cache-Control"] == "no-store"
    assert int(refused.headers["Retry-After"]) > 0  # the booth knows when to try again
    assert refused.json()["error"]["code"] in {"database_unavailable", "no_workers"}
    # A connection pool may wait a moment for a connection before giving up (1.5 s); that is
    # all: far from being held until the 12 s deadline (bound loose for a busy CI machine).
    assert elapsed < 6.0, elapsed
    return refused


def test_ingest_and_workers_recover_from_a_database_restart_without_being_restarted(
    cluster_stack: ClusterStack, photo_jpeg: bytes, media_root: Path
) -> None:
    stack, cluster = cluster_stack, cluster_stack.cluster
    assert stack.web.process.process is not None and stack.workers.process is not None
    web_pid, worker_pid = stack.web.process.process.pid, stack.workers.process.pid
    answered: list[requests.Response] = []

    before = post_photo(stack.base_url, "slot-001", photo_jpeg)
    answered.append(before)
    assert before.status_code == 200, stack.logs()

    with ThreadPoolExecutor(max_workers=2) as pool:
        # A photo in the hands of a worker while the database goes away.
        in_flight_started = time.monotonic()
        in_flight = pool.submit(post_photo, stack.base_url, "slot-002", photo_jpeg)
        wait_until(
            lambda: cluster.scalar(
                "SELECT count(*) FROM jobqueue_job WHERE slot_id = 'slot-002'"
                " AND status = 'processing'"
            ),
            timeout=10,
        )
        picked_up = time.monotonic()

        cluster.stop("fast")

        # The outage outlasts the provider call: the worker has its answer while the database
        # is away. All the while every upload is refused at once.
        while True:
            answered.append(assert_refused_at_once(stack, photo_jpeg))
            if time.monotonic() > picked_up + PROVIDER_SECONDS + 1:
                break
            time.sleep(0.2)  # pace the probes

        cluster.start()

        # Back up: uploads succeed again, with the same web and worker processes.
        def upload_succeeds() -> bool:
            response = post_photo(stack.base_url, "slot-001", photo_jpeg)
            answered.append(response)
            assert response.status_code in {200, 503}, (response.status_code, stack.logs())
            return response.status_code == 200

        wait_until(upload_succeeds, timeout=30, interval=0.2)

        # The interrupted job still makes its deadline: recorded by its worker once the
        # database is back, or taken over by another attempt after its lease lapsed.
        straddling = in_flight.result(timeout=SYNC_RESPONSE_SECONDS + 10)
        straddling_elapsed = time.monotonic() - in_flight_started
        answered.append(straddling)
        assert straddling.status_code == 200, (straddling.text, stack.logs())
        assert straddling_elapsed < SYNC_RESPONSE_SECONDS + 1, straddling_elapsed

        # Two photos at once (both worker threads busy) are processed too.
        together = list(
            pool.map(lambda _: post_photo(stack.base_url, "slot-001", photo_jpeg), [1, 2])
        )
        answered.extend(together)
        assert [response.status_code for response in together] == [200, 200], stack.logs()

    assert stack.web.process.process.poll() is None, stack.logs()
    assert stack.workers.process.poll() is None, stack.logs()
    assert (stack.web.process.process.pid, stack.workers.process.pid) == (web_pid, worker_pid)

    # No job left unfinalized past its deadline; every job finalized exactly once; a refused
    # upload left no job behind.
    wait_until(
        lambda: (
            cluster.scalar(
                "SELECT count(*) FROM jobqueue_job WHERE NOT is_finalized AND expires_at <= now()"
            )
            == 0
        ),
        timeout=10,
    )
    rows = cluster.query(
        "SELECT j.id::text, j.is_finalized, j.failure_reason,"
        " count(l.id) FILTER (WHERE l.event = 'finalized')"
        " FROM jobqueue_job j LEFT JOIN jobqueue_processinglog l ON l.job_id = j.id"
        " GROUP BY j.id"
    )
    assert {row[0] for row in rows} == job_ids_of(answered), stack.logs()
    for job_id, is_finalized, failure_reason, finalized_logs in rows:
        assert is_finalized, (job_id, stack.logs())
        assert finalized_logs == 1, (job_id, failure_reason, finalized_logs)
        assert failure_reason is None, (job_id, failure_reason)
    wait_until(lambda: payload_files(media_root) == [], timeout=10)
