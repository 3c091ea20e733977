"""Ingest figures through the real server: overhead, concurrency, held requests, deadlines.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/photobooth_bench \
        .venv/bin/python bench/ingest_bench.py [--web-processes 1] [--scenarios all]

Starts uvicorn and run_workers processes against a fresh database, with the `testing` provider
standing for an AI provider of known delay, and plays booths with bench/loadtest.py. Targets
(issue 4): overhead p50 <= 30 ms, p99 <= 100 ms for a 5 MB JPEG with 1 client; p99 <= 250 ms
with 50 clients; 300 held requests all 200 with <= 20 database connections; 300 requests to a
provider slower than the deadline all 504 within deadline + 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, database_label, describe_ms, prepare, start_workers, stop  # noqa: E402
from bench.loadtest import make_jpeg, run  # noqa: E402
from tests.support.stack import free_port  # noqa: E402

PASSWORD = "bench-password"  # noqa: S105 (a throwaway benchmark database)
DEADLINE_SECONDS = 45


def start_web(processes: int, log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (log_dir / "web.log").open("wb")
    command = [
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
        "--workers",
        str(processes),
    ]
    process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ), stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return process, base
        except requests.ConnectionError:
            time.sleep(0.1)
    raise SystemExit("web server did not start")


def rss_megabytes(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn --workers forks)."""
    total = 0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(child) for child in children]
    except OSError:
        pass
    for each in pids:
        try:
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class ConnectionSampler:
    """Samples the connections to our database (pg_stat_activity) in the background: the peak of
    those open, and of those in use (running a statement or inside a transaction, as opposed to
    idle in a pool or waiting for notifications)."""

    def __init__(self) -> None:
        self.peak = 0
        self.peak_in_use = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        from django.db import connection

        if connection.vendor != "postgresql":
            return
        name = connection.settings_dict["NAME"]
        while not self._stop.wait(0.05):
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*), count(*) FILTER (WHERE state <> 'idle') "
                    "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                    [name],
                )
                open_now, in_use = cursor.fetchone()
                self.peak = max(self.peak, open_now)
                self.peak_in_use = max(self.peak_in_use, in_use)
        connection.close()


def server_durations_ms(log_dir: Path, path: str, status: int) -> list[int]:
    """Durations the web processes logged ("request finished": from the request's arrival to
    the end of the answer) for one path and status."""
    durations = []
    for line in (log_dir / "web.log").read_text(errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if (
            entry.get("message") == "request finished"
            and entry.get("path") == path
            and entry.get("status") == status
        ):
            durations.append(int(entry["duration_ms"]))
    return durations


def print_served(log_dir: Path, path: str, provider_seconds: float) -> None:
    """The same overhead as the server measured it: without the client's own CPU time (the
    booth is another machine in production; here it shares the 2 cores)."""
    served = sorted(d - provider_seconds * 1000 for d in server_durations_ms(log_dir, path, 200))
    if served:
        print(f"overhead, server    {describe_ms(served)}")


def configure(concurrent_provider_seconds: float) -> None:
    from ingest.models import IngestSettings
    from ingest.services import set_ingest_password, update_slot

    set_ingest_password(password=PASSWORD, changed_by="bench")
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=DEADLINE_SECONDS)
    for slot_id, operation, settings in (
        ("slot-001", "sleep", {"seconds": 0}),
        ("slot-002", "sleep", {"seconds": 10}),
        ("slot-003", "hang", {"seconds": DEADLINE_SECONDS + 15}),
        ("slot-004", "sleep", {"seconds": concurrent_provider_seconds}),
    ):
        update_slot(
            slot_id=slot_id,
            provider_id="testing",
            operation_id=operation,
            settings=settings,
            is_active=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--web-processes", type=int, default=1)
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--worker-concurrency", type=int, default=160)
    parser.add_argument("--image-mb", type=float, default=5.0)
    parser.add_argument("--single-requests", type=int, default=100)
    parser.add_argument("--concurrent-requests", type=int, default=500)
    parser.add_argument("--concurrent-clients", type=int, default=50)
    parser.add_argument(
        "--concurrent-provider-seconds",
        type=float,
        default=0.0,
        help="provider delay in the concurrent scenario (0: clients send back to back)",
    )
    parser.add_argument(
        "--concurrent-image-mb", type=float, help="photo size there (default: --image-mb)"
    )
    parser.add_argument(
        "--concurrent-rate",
        type=float,
        help="uploads/s there, evenly spaced (open loop); default: each client sends its next "
        "photo as soon as it has its answer",
    )
    parser.add_argument(
        "--scenarios",
        default="single,concurrent,held,deadline",
        help="comma-separated: single, concurrent, held, deadline",
    )
    args = parser.parse_args()
    scenarios = set(args.scenarios.split(","))
    work_dir = prepare(
        database_url=os.environ.get("DATABASE_URL"),
        # INFO, as in production: the web processes' "request finished" lines give the
        # server-side durations.
        extra_env={"WORKER_POLL_SECONDS": "0.2", "LOG_LEVEL": "INFO"},
    )
    configure(args.concurrent_provider_seconds)
    from django.db import connection

    connection.close()
    workers = start_workers(args.worker_processes, args.worker_concurrency, work_dir)
    web, base = start_web(args.web_processes, work_dir)
    photo = make_jpeg(args.image_mb)
    print(f"database            {database_label()}")
    print(
        f"processes           web {args.web_processes}, workers {args.worker_processes} x "
        f"{args.worker_concurrency} threads; photo {len(photo) / 1024 / 1024:.1f} MB"
    )
    try:
        time.sleep(2)  # first heartbeats
        if "single" in scenarios:
            report = run(
                url=f"{base}/ingest/slot-001",
                password=PASSWORD,
                photo=photo,
                clients=1,
                requests_total=args.single_requests,
            )
            print("-- 1 client, instant provider (overhead = whole response time)")
            print("\n".join(report.lines(provider_delay=0.0)))
            print_served(work_dir, "/ingest/slot-001", 0.0)
        if "concurrent" in scenarios:
            concurrent_photo = (
                photo if args.concurrent_image_mb is None else make_jpeg(args.concurrent_image_mb)
            )
            report = run(
                url=f"{base}/ingest/slot-004",
                password=PASSWORD,
                photo=concurrent_photo,
                clients=args.concurrent_clients,
                requests_total=args.concurrent_requests,
                rate=args.concurrent_rate,
            )
            print(
                f"-- {args.concurrent_clients} concurrent clients, "
                f"{len(concurrent_photo) / 1024 / 1024:.1f} MB, "
                f"provider {args.concurrent_provider_seconds:g} s"
            )
            print("\n".join(report.lines(provider_delay=args.concurrent_provider_seconds)))
            print_served(work_dir, "/ingest/slot-004", args.concurrent_provider_seconds)
        small = make_jpeg(0.3)
        if "held" in scenarios:
            with ConnectionSampler() as sampler:
                report = run(
                    url=f"{base}/ingest/slot-002",
                    password=PASSWORD,
                    photo=small,
                    clients=300,
                    requests_total=300,
                )
            print("-- 300 concurrent uploads held while the provider takes 10 s")
            print("\n".join(report.lines(provider_delay=10.0)))
            print(
                f"db connections      peak {sampler.peak} open, {sampler.peak_in_use} in use "
                "(web + workers, all processes; sampled every 0.05 s)"
            )
            print(f"web RSS             {rss_megabytes(web.pid):.0f} MB after the run")
        if "deadline" in scenarios:
            report = run(
                url=f"{base}/ingest/slot-003",
                password=PASSWORD,
                photo=small,
                clients=300,
                requests_total=300,
            )
            slowest = max(outcome.seconds for outcome in report.outcomes)
            print(
                f"-- 300 concurrent uploads, provider slower than the {DEADLINE_SECONDS} s deadline"
            )
            print("\n".join(report.lines(provider_delay=None)))
            print(f"slowest answer      {slowest:.2f} s at the client")
            served = server_durations_ms(work_dir, "/ingest/slot-003", 504)
            if served:
                print(
                    f"server side         {len(served)} answers of 504, slowest "
                    f"{max(served) / 1000:.2f} s from the request's arrival"
                )
    finally:
        web.terminate()
        web.wait(timeout=30)
        stop(workers)
        if os.environ.get("BENCH_KEEP_LOGS"):
            print(f"logs kept in        {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
