"""Scale-out: two web processes and two worker processes on one database and one media store.

The shape of a multi-machine installation (Docs/deployment.md, "Scale-out"), on one machine: each
process is a separate uvicorn or run_workers, sharing only the database and MEDIA_ROOT. Runs on
SQLite (WAL) as well as PostgreSQL; the concurrency stays moderate for SQLite's single writer.
"""

from __future__ import annotations

import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.utils import timezone
from PIL import ImageStat

from ingest.services import update_slot
from jobqueue.models import Job, ProcessingLog, WorkerHeartbeat
from tests.support.images import make_photo, open_image
from tests.support.stack import ManagedProcess, WebServer, start_web, start_workers, wait_until

UPLOADS = 20
CLIENT_THREADS = 8
# Each booth is answered as soon as its job is done (a second or two here), never at the deadline
# (48 s): a web process must notice jobs finished by any worker process.
PROMPT_ANSWER_SECONDS = 30


@dataclass
class Cluster:
    webs: list[WebServer]
    workers: list[ManagedProcess]

    def logs(self) -> str:
        parts = [f"--- web {i} ---\n{web.process.output()}" for i, web in enumerate(self.webs)]
        parts += [f"--- {w.name} ---\n{w.output()}" for w in self.workers]
        return "\n".join(parts)


@pytest.fixture
def cluster(live_db: None, tmp_path: Path) -> Iterator[Cluster]:
    """Two run_workers and two uvicorn processes (own log folders), same database and media."""
    workers: list[ManagedProcess] = []
    webs: list[WebServer] = []
    try:
        for name in ("workers-a", "workers-b"):
            workers.append(start_workers(tmp_path, concurrency=2, name=name))
        for name in ("web-a", "web-b"):
            log_dir = tmp_path / name
            log_dir.mkdir()
            webs.append(start_web(log_dir))
        # Both worker processes are alive (their first heartbeats) before any upload.
        wait_until(lambda: _live_worker_count() == 2, timeout=30)
        yield Cluster(webs=webs, workers=workers)
    finally:
        for web in webs:
            web.process.stop()
        for worker in workers:
            worker.stop()


def _live_worker_count() -> int:
    since = timezone.now() - timedelta(seconds=10)
    return WorkerHeartbeat.objects.filter(last_seen_at__gte=since, is_stopping=False).count()


def _job_states() -> dict[str, int]:
    return dict(
        Counter(
            "finalized" if finalized else status
            for status, finalized in Job.objects.values_list("status", "is_finalized")
        )
    )


def _post(base_url: str, photo: bytes, password: str) -> requests.Response | None:
    """The booth's upload; None when it was not answered within PROMPT_ANSWER_SECONDS."""
    try:
        return requests.post(
            f"{base_url}/ingest/slot-001",
            data={"password": password},
            files={"fileToUpload": ("IMG_0003.JPG", photo, "image/jpeg")},
            timeout=(5, PROMPT_ANSWER_SECONDS),
        )
    except requests.Timeout:
        return None


def test_two_web_and_two_worker_processes_share_one_queue(
    cluster: Cluster, ingest_password: str
) -> None:
    update_slot(
        slot_id="slot-001",
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "black_and_white"},
        is_active=True,
    )
    # Large enough that a job keeps its worker busy for a moment, so that one process cannot
    # drain the queue alone.
    photo = make_photo(width=1600, height=1200)
    targets = [cluster.webs[i % 2].base_url for i in range(UPLOADS)]
    with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
        answers = list(pool.map(lambda url: _post(url, photo, ingest_password), targets))

    # Every booth got its processed photo, promptly.
    late = [target for target, answer in zip(targets, answers, strict=True) if answer is None]
    assert not late, (
        f"{len(late)} of {UPLOADS} uploads not answered within {PROMPT_ANSWER_SECONDS} s "
        f"(their jobs: {_job_states()})\n{cluster.logs()[-5000:]}"
    )
    responses = [answer for answer in answers if answer is not None]
    for response in responses:
        assert response.status_code == 200, f"{response.status_code} {response.text[:300]}\n" + (
            cluster.logs()
        )
        assert response.headers["Content-Type"] == "image/jpeg"
    red, green, blue = ImageStat.Stat(open_image(responses[0].content)).mean
    assert abs(red - green) < 2 and abs(green - blue) < 2

    # One job per upload, each finalized exactly once, successfully.
    job_ids = [uuid.UUID(response.headers["X-Job-Id"]) for response in responses]
    assert len(set(job_ids)) == UPLOADS
    jobs = {job.id: job for job in Job.objects.filter(id__in=job_ids)}
    assert len(jobs) == UPLOADS
    assert all(job.is_finalized and job.succeeded for job in jobs.values())
    finalized = Counter(
        ProcessingLog.objects.filter(
            job_id__in=job_ids, event=ProcessingLog.Event.FINALIZED
        ).values_list("job_id", flat=True)
    )
    assert finalized == Counter(dict.fromkeys(job_ids, 1))

    # Both worker processes took part: jobs name the worker that ran them (host:pid).
    host = socket.gethostname()
    worker_ids = {f"{host}:{worker.process.pid}" for worker in cluster.workers}
    assert set(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == worker_ids
    ran_by = Counter(job.worker_id for job in jobs.values())
    assert set(ran_by) == worker_ids, ran_by

    # A result uploaded through one web process is downloaded through the other.
    for target, job_id, response in zip(targets, job_ids, responses, strict=True):
        other = next(web.base_url for web in cluster.webs if web.base_url != target)
        download = requests.get(f"{other}/public/results/{job_id}", timeout=10)
        assert download.status_code == 200, download.text[:300]
        assert download.content == response.content
