"""`python manage.py run_workers`: run the job workers until SIGTERM or SIGINT."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobqueue.worker import Worker, WorkerConfig
from photobooth import metrics


class Command(BaseCommand):
    help = (
        "Run the job workers. SIGTERM/SIGINT: stop taking jobs, give running ones the grace "
        "period (WORKER_SHUTDOWN_GRACE_SECONDS), release the rest; a second signal exits at once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.WORKER_CONCURRENCY,
            help="Jobs run at once by this process (default: WORKER_CONCURRENCY, 4).",
        )
        parser.add_argument("--worker-id", default=None, help="Name shown in logs and job rows.")
        parser.add_argument(
            "--metrics-port",
            type=int,
            default=metrics.setting("WORKER_METRICS_PORT"),
            help="Serve this process's Prometheus metrics on this port (default: "
            "WORKER_METRICS_PORT; 0: off), at WORKER_METRICS_HOST (127.0.0.1).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        worker = Worker(
            WorkerConfig.from_settings(concurrency=options["concurrency"]),
            worker_id=options["worker_id"],
        )
        signals_seen = 0

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal signals_seen
            signals_seen += 1
            if signals_seen > 1:
                # A second signal: the operator wants out now.
                sys.stderr.write("second signal, exiting at once\n")
                os._exit(1)
            sys.stderr.write("stopping: finishing jobs in flight (signal again to quit now)\n")
            worker.stop()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if options["metrics_port"]:
            host = metrics.setting("WORKER_METRICS_HOST")
            try:
                port = metrics.start_worker_server(host=host, port=options["metrics_port"])
            except OSError as error:
                raise CommandError(
                    f"cannot serve metrics on {host}:{options['metrics_port']}: {error}"
                ) from None
            self.stdout.write(f"metrics on http://{host}:{port}/metrics")
        self.stdout.write(
            f"workers running: id={worker.worker_id} concurrency={worker.concurrency}"
        )
        self.stdout.flush()
        if not worker.run_forever():
            # Jobs still running after the grace period were released to the queue; their
            # threads cannot be interrupted, so leave without waiting for them.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
