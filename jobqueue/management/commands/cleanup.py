"""`python manage.py cleanup`: remove what has expired now (run_workers also does it regularly)."""

from typing import Any

from django.core.management.base import BaseCommand

from jobqueue.cleanup import run_cleanup


class Command(BaseCommand):
    help = (
        "Finalize expired jobs as timeout; delete expired temporary media, result files past "
        "retention and orphaned files (older than 10 minutes, referenced by no row)."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        report = run_cleanup(actor="cleanup-command", sweep_orphans=True)
        self.stdout.write(
            f"jobs timed out: {report.jobs_timed_out}, media removed: {report.media_removed}, "
            f"results removed: {report.results_removed}, orphaned files removed: "
            f"{report.orphans_removed}"
        )
