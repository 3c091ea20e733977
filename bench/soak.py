"""Soak run: thousands of jobs, random provider delays and errors, workers SIGKILLed at random.

Afterwards every job must be finalized exactly once and no file may be left behind. Prints its
figures; exits non-zero when an invariant is broken.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/photobooth_soak \
        .venv/bin/python bench/soak.py --jobs 3000 --workers 3 --kill-every 4

The database named in DATABASE_URL is dropped and created afresh (PostgreSQL), or a temporary
SQLite file is used when DATABASE_URL is unset.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import recreate_postgres_database  # noqa: E402

# Slot → (provider, operation, settings, weight): a mix of fast, slow, flaky, failing, real
# image work and providers that never answer in time.
MIX = {
    "slot-001": ("testing", "sleep", {"seconds": 0.05}, 50),
    "slot-002": ("testing", "sleep", {"seconds": 0.4}, 18),
    "slot-003": ("testing", "flaky", {"failures": 1}, 10),
    "slot-004": ("testing", "fail", {}, 8),
    "slot-005": ("local", "photo_look", {"look": "vintage"}, 12),
    "slot-006": ("testing", "hang", {"seconds": 7}, 2),
}
SYNC_RESPONSE_SECONDS = 5


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=3, help="run_workers processes")
    parser.add_argument("--concurrency", type=int, default=4, help="threads per process")
    parser.add_argument("--rate", type=float, default=60.0, help="jobs queued per second")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between SIGKILLs")
    parser.add_argument("--seed", type=int, default=7)
    return parser.parse_args()


def prepare_environment(media_root: Path, data_dir: Path) -> dict[str, str]:
    env = {
        "DJANGO_SETTINGS_MODULE": "photobooth.settings",
        "PHOTOBOOTH_DATA_DIR": str(data_dir),
        "MEDIA_ROOT": str(media_root),
        "PHOTOBOOTH_EXTRA_PROVIDERS": "tests.support.providers.TestingProvider",
        "WORKER_LEASE_SECONDS": "2",
        "WORKER_HEARTBEAT_SECONDS": "0.5",
        "WORKER_POLL_SECONDS": "0.05",
        "WORKER_REAP_SECONDS": "1",
        "WORKER_SHUTDOWN_GRACE_SECONDS": "10",
        "PROVIDER_RETRY_BACKOFF_SECONDS": "0.2",
        "INGEST_MAX_UNFINISHED_PER_SLOT": "100000",
        "INGEST_MAX_UNFINISHED_TOTAL": "100000",
        "LOG_LEVEL": "WARNING",
    }
    database_url = os.environ.get("DATABASE_URL", "")
    if database_url.startswith("postgres"):
        recreate_postgres_database(database_url)
        env["DATABASE_URL"] = database_url
    else:
        env["DATABASE_URL"] = f"sqlite:///{data_dir / 'soak.sqlite3'}"
    os.environ.update(env)
    return {**os.environ}


def unique_photo(rng: random.Random) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (96, 64), tuple(rng.randrange(256) for _ in range(3)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


class WorkerFleet:
    """run_workers processes; kill() SIGKILLs one at random and starts a replacement."""

    def __init__(self, count: int, concurrency: int, env: dict[str, str], log_dir: Path):
        self.concurrency = concurrency
        self.env = env
        self.log_dir = log_dir
        self.started = 0
        self.kills = 0
        self.processes: list[subprocess.Popen[bytes]] = [self._start() for _ in range(count)]

    def _start(self) -> subprocess.Popen[bytes]:
        self.started += 1
        log = (self.log_dir / f"worker-{self.started}.log").open("wb")
        command = [
            sys.executable,
            "manage.py",
            "run_workers",
            "--concurrency",
            str(self.concurrency),
        ]
        return subprocess.Popen(command, cwd=REPO, env=self.env, stdout=log, stderr=log)

    def kill_one(self, rng: random.Random) -> None:
        index = rng.randrange(len(self.processes))
        self.processes[index].send_signal(signal.SIGKILL)
        self.processes[index].wait()
        self.kills += 1
        self.processes[index] = self._start()

    def stop(self) -> None:
        for process in self.processes:
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    args = parse_args()
    rng = random.Random(args.seed)
    work_dir = Path(tempfile.mkdtemp(prefix="photobooth-soak-"))
    media_root = work_dir / "media"
    env = prepare_environment(media_root, work_dir)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db.models import Count, Q

    from ingest.models import IngestSettings
    from ingest.services import IngestUpload, accept_photo, set_ingest_password, update_slot
    from jobqueue import files
    from jobqueue.cleanup import sweep_orphan_files
    from jobqueue.models import Job, ProcessingLog

    call_command("migrate", verbosity=0)
    set_ingest_password(password="soak", changed_by="soak")
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=SYNC_RESPONSE_SECONDS)
    for slot_id, (provider, operation, settings, _) in MIX.items():
        update_slot(
            slot_id=slot_id,
            provider_id=provider,
            operation_id=operation,
            settings=settings,
            is_active=True,
        )
    slots = list(MIX)
    weights = [MIX[slot][3] for slot in slots]

    fleet = WorkerFleet(args.workers, args.concurrency, env, work_dir)
    from jobqueue.selectors import any_live_worker

    deadline = time.monotonic() + 30
    while not any_live_worker(stale_after=timedelta(seconds=10)):
        if time.monotonic() > deadline:
            print("no worker came up", file=sys.stderr)
            return 2
        time.sleep(0.1)

    stop_chaos = threading.Event()

    def chaos() -> None:
        chaos_rng = random.Random(args.seed + 1)
        while not stop_chaos.wait(args.kill_every):
            fleet.kill_one(chaos_rng)

    chaos_thread = threading.Thread(target=chaos, daemon=True)
    started = time.monotonic()
    chaos_thread.start()
    queued = 0
    for number in range(args.jobs):
        target = started + number / args.rate
        if (pause := target - time.monotonic()) > 0:
            time.sleep(pause)
        photo = io.BytesIO(unique_photo(rng))
        accept_photo(
            IngestUpload(
                slot_id=rng.choices(slots, weights)[0],
                password="soak",
                photo=photo,
                photo_size=len(photo.getvalue()),
                photo_name="IMG.JPG",
                fields={"n": str(number)},
                received_at=datetime.now(UTC),
            ),
            max_upload_bytes=15 * 1024 * 1024,
        )
        queued += 1
    enqueue_seconds = time.monotonic() - started

    # Every job must end by its deadline (+ lease takeover and reaper slack).
    settle_by = time.monotonic() + SYNC_RESPONSE_SECONDS + 15
    while Job.objects.filter(is_finalized=False).exists() and time.monotonic() < settle_by:
        time.sleep(0.2)
    stop_chaos.set()
    chaos_thread.join()
    fleet.stop()
    total_seconds = time.monotonic() - started

    problems: list[str] = []
    unfinalized = Job.objects.filter(is_finalized=False).count()
    if unfinalized:
        problems.append(f"{unfinalized} jobs not finalized")
    finalize_counts = Counter(
        ProcessingLog.objects.filter(event=ProcessingLog.Event.FINALIZED).values_list(
            "job_id", flat=True
        )
    )
    twice = sum(1 for count in finalize_counts.values() if count != 1)
    if twice:
        problems.append(f"{twice} jobs finalized more than once")
    if len(finalize_counts) != Job.objects.filter(is_finalized=True).count():
        problems.append("finalized jobs without exactly one finalized log row")
    leftover_payloads = list(files.walk("payloads"))
    leftover_media = list(files.walk("media"))
    succeeded = Job.objects.filter(is_finalized=True, failure_reason__isnull=True)
    result_files = set(files.walk("results"))
    referenced_results = set(succeeded.values_list("result_path", flat=True))
    if leftover_payloads:
        problems.append(f"{len(leftover_payloads)} payload files left")
    if leftover_media:
        problems.append(f"{len(leftover_media)} media files left")
    if not referenced_results <= result_files:
        problems.append("succeeded jobs whose result file is missing")
    orphans = len(result_files - referenced_results)
    swept = sweep_orphan_files(min_age=timedelta(0))

    outcomes = Job.objects.aggregate(
        succeeded=Count("id", filter=Q(is_finalized=True, failure_reason__isnull=True)),
        timeout=Count("id", filter=Q(failure_reason="timeout")),
        provider_error=Count("id", filter=Q(failure_reason="provider_error")),
        internal_error=Count("id", filter=Q(failure_reason="internal_error")),
        taken_over=Count("id", filter=Q(attempt_count__gt=1)),
    )
    by_slot = (
        Job.objects.values("slot_id")
        .annotate(
            jobs=Count("id"),
            ok=Count("id", filter=Q(failure_reason__isnull=True, is_finalized=True)),
            timeout=Count("id", filter=Q(failure_reason="timeout")),
            error=Count("id", filter=Q(failure_reason="provider_error")),
        )
        .order_by("slot_id")
    )
    latencies = sorted(
        (job.finalized_at - job.created_at).total_seconds() * 1000
        for job in succeeded.only("created_at", "finalized_at")
    )
    print(f"database            {os.environ['DATABASE_URL'].split('@')[-1]}")
    print(
        f"jobs queued         {queued} in {enqueue_seconds:.1f} s "
        f"({queued / enqueue_seconds:.0f}/s)"
    )
    print(f"workers             {args.workers} x {args.concurrency}, SIGKILLs: {fleet.kills}")
    print(f"wall time           {total_seconds:.1f} s")
    for name, value in outcomes.items():
        print(f"{name:<20}{value}")
    for row in by_slot:
        provider, operation, _, _ = MIX[row["slot_id"]]
        print(
            f"  {row['slot_id']} {provider}/{operation:<11} jobs {row['jobs']:>5}"
            f"  ok {row['ok']:>5}"
            f"  timeout {row['timeout']:>4}  provider_error {row['error']:>4}"
        )
    if latencies:
        p50 = statistics.median(latencies)
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        print(f"success latency     p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {latencies[-1]:.0f} ms")
    print(
        f"orphan result files {orphans} (left by kills between write and finalize; swept: {swept})"
    )
    print(f"invariants          {'OK' if not problems else 'BROKEN: ' + '; '.join(problems)}")
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
