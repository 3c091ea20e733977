"""Queue figures: enqueue rate, acquire+finalize rate, pickup latency, and table-size effect.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/photobooth_bench \
        .venv/bin/python bench/queue_bench.py --jobs 3000 --workers 4

Targets (issue 4, PostgreSQL, 2 cores): enqueue >= 500 jobs/s with p95 <= 5 ms; acquire +
finalize with 4 workers >= 500 jobs/s; pickup latency p50 <= 10 ms, p95 <= 50 ms. The database
named in DATABASE_URL is dropped and created afresh; unset, a temporary SQLite file is used.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    database_label,
    describe_ms,
    prepare,
    start_workers,
    stop,
)

SYNC = timedelta(seconds=48)
RETENTION = timedelta(hours=72)


def configuration(seconds: float = 0.0):  # type: ignore[no-untyped-def]
    from jobqueue.services import JobConfiguration

    return JobConfiguration(
        slot_id="slot-001",
        provider_id="testing",
        operation_id="sleep",
        settings={"seconds": seconds},
        template_refs={},
    )


def enqueue_one(payload_path: str, config) -> object:  # type: ignore[no-untyped-def]
    from jobqueue.services import StoredPayload, enqueue_job

    return enqueue_job(
        configuration=config,
        payload=StoredPayload(path=payload_path, mime="image/jpeg", size=1, sha256="0" * 64),
        metadata={},
        received_at=datetime.now(UTC),
        sync_response=SYNC,
        result_retention=RETENTION,
    )


def bench_enqueue(jobs: int) -> None:
    config = configuration()
    latencies = []
    started = time.perf_counter()
    for _ in range(jobs):
        begin = time.perf_counter()
        enqueue_one("payloads/none.jpg", config)
        latencies.append((time.perf_counter() - begin) * 1000)
    elapsed = time.perf_counter() - started
    print(f"enqueue             {jobs / elapsed:.0f} jobs/s; {describe_ms(latencies)}")


def _set_up_process() -> None:
    import django

    django.setup()


def _ready(_: int) -> bool:
    return True


def _drain(worker_number: int) -> int:
    """A worker process's loop with an instant provider: acquire, finalize, until empty."""
    from jobqueue import services
    from jobqueue.files import StoredFile

    done = 0
    result = StoredFile(path="results/none.jpg", size=1, sha256="0" * 64)
    while True:
        jobs = services.acquire_jobs(worker_id=f"bench-{worker_number}", limit=4)
        if not jobs:
            return done
        for job in jobs:
            assert job.lease_token is not None
            services.finalize_success(
                job=job, lease_token=job.lease_token, result=result, result_mime="image/jpeg"
            )
            done += 1


def bench_acquire_finalize(jobs: int, workers: int, label: str) -> None:
    from django.db import connection

    from jobqueue.models import Job

    config = configuration()
    for _ in range(jobs):
        enqueue_one("payloads/none.jpg", config)
    connection.close()
    with multiprocessing.get_context("spawn").Pool(workers, initializer=_set_up_process) as pool:
        pool.map(_ready, range(workers))  # start-up is not part of the figure
        started = time.perf_counter()
        counts = pool.map(_drain, range(workers), chunksize=1)
        elapsed = time.perf_counter() - started
    left = Job.objects.filter(is_finalized=False).count()
    print(
        f"acquire+finalize    {sum(counts) / elapsed:.0f} jobs/s with {workers} worker processes"
        f" ({sum(counts)} jobs, {left} left){label}"
    )


def bench_pickup(samples: int, work_dir: Path, label: str) -> None:
    """Enqueue one job at a time while real run_workers processes wait; time to pick-up."""
    from jobqueue import files
    from jobqueue.models import Job, ProcessingLog
    from tests.support.images import make_photo

    photo = make_photo(width=32, height=32)
    config = configuration()
    workers = start_workers(1, 4, work_dir)
    try:
        from jobqueue.selectors import any_live_worker

        deadline = time.monotonic() + 30
        while not any_live_worker(stale_after=timedelta(seconds=10)):
            if time.monotonic() > deadline:
                raise SystemExit("no worker came up")
            time.sleep(0.05)
        ids = []
        for _ in range(samples):
            stored = files.store_bytes(
                kind="payloads", stem=str(uuid.uuid4()), mime="image/jpeg", data=photo
            )
            ids.append(enqueue_one(stored.path, config).id)  # type: ignore[attr-defined]
            # Let it be picked up before the next one (an idle worker is what we measure), then
            # wait a random while so arrivals fall at any moment of the worker's cycle.
            end = time.monotonic() + 5
            while (
                not ProcessingLog.objects.filter(
                    job_id=ids[-1], event=ProcessingLog.Event.PICKED_UP
                ).exists()
                and time.monotonic() < end
            ):
                time.sleep(0.002)
            time.sleep(random.uniform(0.0, 0.25))
        end = time.monotonic() + 30
        while Job.objects.filter(id__in=ids, is_finalized=False).exists():
            if time.monotonic() > end:
                break
            time.sleep(0.05)
    finally:
        stop(workers)
    latencies = []
    for job_id in ids:
        times = dict(
            ProcessingLog.objects.filter(
                job_id=job_id,
                event__in=[ProcessingLog.Event.QUEUED, ProcessingLog.Event.PICKED_UP],
            ).values_list("event", "created_at")
        )
        if len(times) == 2:
            delta = times[ProcessingLog.Event.PICKED_UP] - times[ProcessingLog.Event.QUEUED]
            latencies.append(delta.total_seconds() * 1000)
    print(f"pickup latency      {describe_ms(latencies)}{label}")


def add_finished_history(rows: int) -> None:
    """Bulk-insert finished jobs, as months of events would leave them."""
    from jobqueue.models import Job

    now = datetime.now(UTC)
    batch = []
    for number in range(rows):
        created = now - timedelta(days=30, seconds=number)
        batch.append(
            Job(
                slot_id=f"slot-{number % 15 + 1:03d}",
                provider_id="local",
                operation_id="photo_look",
                created_at=created,
                expires_at=created + SYNC,
                finalized_at=created + timedelta(seconds=3),
                is_finalized=True,
                status="processing",
                payload_mime="image/jpeg",
                payload_size=1,
                payload_sha256="0" * 64,
                payload_expires_at=created + SYNC,
                result_retention_seconds=int(RETENTION.total_seconds()),
            )
        )
        if len(batch) == 5000:
            Job.objects.bulk_create(batch)
            batch = []
    Job.objects.bulk_create(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--pickup-samples", type=int, default=200)
    parser.add_argument("--finished-rows", type=int, default=100_000)
    args = parser.parse_args()
    work_dir = prepare(
        database_url=os.environ.get("DATABASE_URL"),
        extra_env={"WORKER_POLL_SECONDS": os.environ.get("WORKER_POLL_SECONDS", "0.2")},
    )
    print(f"database            {database_label()}")
    bench_enqueue(args.jobs)
    bench_acquire_finalize(args.jobs, args.workers, "")
    bench_pickup(args.pickup_samples, work_dir, "")
    if args.finished_rows:
        add_finished_history(args.finished_rows)
        label = f" [with {args.finished_rows} finished jobs in the table]"
        bench_acquire_finalize(args.jobs, args.workers, label)
        bench_pickup(args.pickup_samples, work_dir, label)
    shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
