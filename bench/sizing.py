"""Sizing figures: how many worker threads a rate of photos needs, with a realistic provider.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/photobooth_bench \
        .venv/bin/python bench/sizing.py [--rates 1,2,4] [--worker-threads 8,16,32]

One web process; for each worker thread count one `run_workers` process with that many
threads; the simulated provider (lognormal delays around `--median` seconds, `--error-rate`
failures of which half retryable); bench/loadtest.py playing booths at a steady rate (open
loop, 2 MB photos). It prints, per pair: throughput, the
share of 200 / 502 / 504 / 429 answers, the photos in flight (rate x mean latency) and the
latency of the successful ones: the numbers behind the sizing guidance in Docs/deployment.md.
"served/s" counts the answers over the whole run, including the tail after the last photo.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import describe_ms, prepare, start_workers, stop  # noqa: E402
from bench.ingest_bench import start_web  # noqa: E402
from bench.loadtest import make_jpeg, run  # noqa: E402

PASSWORD = "bench-password"  # noqa: S105 (a throwaway benchmark database)
SLOT = "slot-001"


def configure(*, median: float, spread: float, error_rate: float, deadline: int) -> None:
    from ingest.models import IngestSettings
    from ingest.services import set_ingest_password, update_slot

    set_ingest_password(password=PASSWORD, changed_by="bench")
    IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=deadline)
    update_slot(
        slot_id=SLOT,
        provider_id="simulated",
        operation_id="simulate",
        settings={
            "distribution": "lognormal",
            "delay_seconds": median,
            "spread": spread,
            "error_rate": error_rate,
            "retryable_share": 0.5,
        },
        is_active=True,
    )


def wait_for_worker() -> None:
    """Until the new worker process has sent its first heartbeat (uploads get 503 before)."""
    from django.db import connection

    from jobqueue.selectors import any_live_worker

    end = time.monotonic() + 60
    while not any_live_worker(stale_after=timedelta(seconds=5)):
        if time.monotonic() > end:
            raise SystemExit("the worker did not start")
        time.sleep(0.2)
    connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="1,2,4", help="photos per second, comma-separated")
    parser.add_argument("--worker-threads", default="8,16,32", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each run")
    parser.add_argument("--median", type=float, default=8.0, help="provider delay median, s")
    parser.add_argument("--spread", type=float, default=0.4, help="lognormal shape")
    parser.add_argument("--error-rate", type=float, default=0.05)
    parser.add_argument("--deadline", type=int, default=48, help="T_sync_response, s")
    parser.add_argument("--image-mb", type=float, default=2.0)
    args = parser.parse_args()
    rates = [float(rate) for rate in args.rates.split(",")]
    thread_counts = [int(count) for count in args.worker_threads.split(",")]
    work_dir = prepare(
        database_url=os.environ.get("DATABASE_URL"),
        extra_env={"PHOTOBOOTH_EXTRA_PROVIDERS": "providers.simulated.SimulatedProvider"},
    )
    configure(
        median=args.median, spread=args.spread, error_rate=args.error_rate, deadline=args.deadline
    )
    from django.db import connection

    connection.close()
    photo = make_jpeg(args.image_mb)
    print(
        f"provider            simulated, lognormal median {args.median:g} s, shape "
        f"{args.spread:g}, {100 * args.error_rate:g} % errors (half retryable); deadline "
        f"{args.deadline} s; photo {len(photo) / 1024 / 1024:.1f} MB; {args.seconds:g} s per run"
    )
    print(
        "threads  rate/s  served/s  200 %   502 %   504 %   429 %   in flight (est.)  "
        "latency of the 200s"
    )
    web, base = start_web(1, work_dir)
    try:
        for threads in thread_counts:
            workers = start_workers(1, threads, work_dir)
            try:
                wait_for_worker()
                for rate in rates:
                    total = max(1, int(rate * args.seconds))
                    # Enough client threads for every photo that may be in flight at once.
                    clients = min(total, int(rate * (args.deadline + 5)) + 1)
                    report = run(
                        url=f"{base}/ingest/{SLOT}",
                        password=PASSWORD,
                        photo=photo,
                        clients=clients,
                        requests_total=total,
                        rate=rate,
                    )
                    statuses = Counter(outcome.status for outcome in report.outcomes)
                    count = len(report.outcomes) or 1
                    ok = [o.seconds * 1000 for o in report.outcomes if o.status == 200]
                    share = {code: 100 * statuses[code] / count for code in (200, 502, 504, 429)}
                    # Little's law: photos in flight = arrival rate x mean time in the system.
                    in_flight = rate * (statistics.mean(ok) / 1000 if ok else args.deadline)
                    served = len(report.outcomes) / report.wall_seconds
                    print(
                        f"{threads:7d}  {rate:6g}  {served:8.2f}"
                        f"  {share[200]:5.1f}   {share[502]:5.1f}   {share[504]:5.1f}   "
                        f"{share[429]:5.1f}   {in_flight:16.0f}  "
                        + (describe_ms(ok) if ok else "-"),
                        flush=True,
                    )
            finally:
                stop(workers)
    finally:
        web.terminate()
        web.wait(timeout=30)
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
