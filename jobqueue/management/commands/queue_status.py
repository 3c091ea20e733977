"""`python manage.py queue_status`: who is working and how much is waiting."""

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Count, Q
from django.utils import timezone

from jobqueue.models import Job, WorkerHeartbeat


class Command(BaseCommand):
    help = "Show worker processes (alive or not, what each holds) and the queue's depth."

    def handle(self, *args: Any, **options: Any) -> None:
        now = timezone.now()
        stale_after = timedelta(seconds=settings.WORKER_STALE_SECONDS)
        workers = list(WorkerHeartbeat.objects.order_by("worker_id"))
        self.stdout.write(f"workers: {len(workers)}")
        for worker in workers:
            age = (now - worker.last_seen_at).total_seconds()
            state = "stopping" if worker.is_stopping else "alive"
            if now - worker.last_seen_at > stale_after:
                state = "gone"
            self.stdout.write(
                f"  {worker.worker_id:<40} {state:<8} seen {age:5.1f} s ago, "
                f"{len(worker.current_job_ids)}/{worker.concurrency} jobs"
                + (f": {', '.join(worker.current_job_ids)}" if worker.current_job_ids else "")
            )
        counts = Job.objects.filter(is_finalized=False).aggregate(
            pending=Count("id", filter=Q(status="pending")),
            processing=Count("id", filter=Q(status="processing")),
            overdue=Count("id", filter=Q(expires_at__lte=now)),
        )
        self.stdout.write(
            f"unfinished jobs: {counts['pending']} pending, {counts['processing']} processing, "
            f"{counts['overdue']} past their deadline (the reaper finalizes them)"
        )
