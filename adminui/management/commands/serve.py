"""`python manage.py serve`: the web server and the workers together, stopped together.

What `make run` starts. Ctrl-C (SIGINT) or SIGTERM stops both; if either exits on its own, the
other is stopped too and the command exits with an error.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

STOP_GRACE_SECONDS = 30


class Command(BaseCommand):
    help = "Run the web server (uvicorn, ASGI) and run_workers until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=settings.SERVE_HOST)
        parser.add_argument("--port", type=int, default=settings.SERVE_PORT)
        parser.add_argument("--concurrency", type=int, default=settings.WORKER_CONCURRENCY)

    def handle(self, *args: Any, **options: Any) -> None:
        manage_py = str(Path(settings.BASE_DIR) / "manage.py")
        commands = {
            "web": [
                sys.executable,
                "-m",
                "uvicorn",
                "photobooth.asgi:application",
                "--host",
                options["host"],
                "--port",
                str(options["port"]),
                "--timeout-graceful-shutdown",
                "5",
            ],
            "workers": [
                sys.executable,
                manage_py,
                "run_workers",
                "--concurrency",
                str(options["concurrency"]),
            ],
        }
        children = {
            # Own sessions: a terminal's Ctrl-C reaches only this command, which then sends each
            # child exactly one SIGTERM (a second signal would make them quit without finishing).
            name: subprocess.Popen(command, cwd=settings.BASE_DIR, start_new_session=True)  # noqa: S603
            for name, command in commands.items()
        }
        stopping = False

        def on_signal(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        self.stdout.write(
            f"Serving on http://{options['host']}:{options['port']} with workers "
            f"(concurrency {options['concurrency']}). Ctrl-C stops both."
        )
        self.stdout.flush()
        exited: str | None = None
        while not stopping and exited is None:
            for name, child in children.items():
                if child.poll() is not None:
                    exited = name
            time.sleep(0.2)
        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        if exited is not None and not stopping:
            raise CommandError(
                f"the {exited} process exited (code {children[exited].returncode}); stopped all"
            )
