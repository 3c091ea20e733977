"""Commands an operator runs by hand: bootstrap, set_ingest_password, cleanup, serve."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from ingest.models import IngestSettings
from ingest.services import IngestUpload, accept_photo, check_ingest_password
from jobqueue import files, services
from jobqueue.models import FailureReason, Job, JobStatus, MediaObject
from photobooth.errors import Unauthorized
from tests.support.images import make_photo
from tests.support.slots import configure_testing_slot
from tests.support.stack import REPO_ROOT, free_port, process_environment, wait_until


def run_command(name: str, *args: str) -> str:
    out = io.StringIO()
    call_command(name, *args, stdout=out)
    return out.getvalue()


def ingest_password_hash() -> str:
    return IngestSettings.load().ingest_password_hash


def accepts_ingest_password(candidate: str) -> bool:
    try:
        check_ingest_password(candidate)
    except Unauthorized:
        return False
    return True


# --- bootstrap -------------------------------------------------------------------------------
@pytest.fixture
def fresh_install(db: None, settings: Any) -> None:
    """No admin, no ingest password, nothing given in the environment."""
    settings.BOOTSTRAP_ADMIN_USERNAME = "admin"
    settings.BOOTSTRAP_ADMIN_PASSWORD = ""
    settings.BOOTSTRAP_INGEST_PASSWORD = ""
    IngestSettings.objects.filter(id=1).update(ingest_password_hash="")
    assert not get_user_model().objects.exists()


def test_bootstrap_creates_an_admin_and_an_ingest_password_and_prints_them(
    fresh_install: None,
) -> None:
    output = run_command("bootstrap")

    admin_match = re.search(r"Admin account created: admin / (\S+)", output)
    ingest_match = re.search(r"Ingest password: (\S+)", output)
    assert admin_match and ingest_match, output
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.is_staff
    assert admin.check_password(admin_match.group(1))
    assert accepts_ingest_password(ingest_match.group(1))
    assert IngestSettings.load().ingest_password_updated_by == "bootstrap"


def test_bootstrap_run_again_changes_nothing(fresh_install: None) -> None:
    first_output = run_command("bootstrap")
    admin = get_user_model().objects.get(username="admin")
    admin_password_hash, ingest_hash = admin.password, ingest_password_hash()

    second_output = run_command("bootstrap")

    assert "Admin account created" not in second_output
    assert "Ingest password" not in second_output
    ingest_match = re.search(r"Ingest password: (\S+)", first_output)
    assert ingest_match
    assert ingest_match.group(1) not in second_output
    assert ingest_password_hash() == ingest_hash
    assert accepts_ingest_password(ingest_match.group(1))
    assert get_user_model().objects.count() == 1
    admin.refresh_from_db()
    assert admin.password == admin_password_hash


def test_bootstrap_uses_the_admin_and_ingest_passwords_from_the_environment_without_printing_them(
    fresh_install: None, settings: Any
) -> None:
    settings.BOOTSTRAP_ADMIN_USERNAME = "operator"
    settings.BOOTSTRAP_ADMIN_PASSWORD = "operator-chose-this-1"
    settings.BOOTSTRAP_INGEST_PASSWORD = "booth-chose-this-2"

    output = run_command("bootstrap")

    admin = get_user_model().objects.get(username="operator")
    assert admin.is_superuser
    assert admin.check_password("operator-chose-this-1")
    assert accepts_ingest_password("booth-chose-this-2")
    assert "operator-chose-this-1" not in output
    assert "booth-chose-this-2" not in output


def test_bootstrap_keeps_an_existing_ingest_password(
    fresh_install: None, ingest_password: str, settings: Any
) -> None:
    settings.BOOTSTRAP_INGEST_PASSWORD = "would-replace-it"
    before = ingest_password_hash()

    run_command("bootstrap")

    assert ingest_password_hash() == before
    assert accepts_ingest_password(ingest_password)
    assert not accepts_ingest_password("would-replace-it")


# --- set_ingest_password ---------------------------------------------------------------------
def test_set_ingest_password_from_stdin_replaces_the_old_one(
    ingest_password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert accepts_ingest_password(ingest_password)
    monkeypatch.setattr(sys, "stdin", io.StringIO("rotated-booth-password\n"))

    output = run_command("set_ingest_password", "--stdin")

    assert "rotated-booth-password" not in output
    assert not accepts_ingest_password(ingest_password)
    assert accepts_ingest_password("rotated-booth-password")


def test_set_ingest_password_refuses_an_empty_password_and_keeps_the_old_one(
    ingest_password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = ingest_password_hash()
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))

    with pytest.raises(CommandError):
        call_command("set_ingest_password", "--stdin", stdout=io.StringIO())

    assert ingest_password_hash() == before
    assert accepts_ingest_password(ingest_password)


# --- cleanup ---------------------------------------------------------------------------------
def queue_photo(
    password: str, *, received_seconds_ago: float = 0, slot_id: str = "slot-001"
) -> Job:
    photo = make_photo()
    return accept_photo(
        IngestUpload(
            slot_id=slot_id,
            password=password,
            photo=io.BytesIO(photo),
            photo_size=len(photo),
            photo_name="IMG_0001.JPG",
            fields={},
            received_at=timezone.now() - timedelta(seconds=received_seconds_ago),
        ),
        max_upload_bytes=15 * 1024 * 1024,
    )


def temporary_media(*, expires_in: timedelta) -> MediaObject:
    media_id = uuid.uuid4()
    stored = files.store_bytes(kind="media", stem=str(media_id), mime="image/jpeg", data=b"x" * 10)
    now = timezone.now()
    return MediaObject.objects.create(
        id=media_id,
        path=stored.path,
        mime="image/jpeg",
        size=stored.size,
        created_at=now - timedelta(minutes=2),
        expires_at=now + expires_in,
    )


def test_cleanup_times_out_expired_jobs_and_removes_expired_results_and_media(
    live_db: None, ingest_password: str
) -> None:
    # A job whose deadline passed while no worker was running.
    expired = queue_photo(ingest_password, received_seconds_ago=120)
    assert expired.expires_at < timezone.now()
    expired_payload = expired.payload_path
    assert files.exists(expired_payload)
    # A job that succeeded and whose result is now past retention.
    done = queue_photo(ingest_password)
    (acquired,) = services.acquire_jobs(worker_id="test-worker", limit=5)
    assert acquired.id == done.id and acquired.lease_token is not None
    result = files.store_bytes(kind="results", stem=str(done.id), mime="image/jpeg", data=b"r")
    assert services.finalize_success(
        job=acquired, lease_token=acquired.lease_token, result=result, result_mime="image/jpeg"
    )
    Job.objects.filter(id=done.id).update(result_expires_at=timezone.now() - timedelta(seconds=1))
    old_media = temporary_media(expires_in=timedelta(seconds=-1))
    live_media = temporary_media(expires_in=timedelta(seconds=30))

    output = run_command("cleanup")

    assert "jobs timed out: 1, media removed: 1, results removed: 1" in output
    expired.refresh_from_db()
    assert expired.is_finalized and expired.failure_reason == FailureReason.TIMEOUT
    assert expired.payload_path == "" and not files.exists(expired_payload)
    done.refresh_from_db()
    assert done.succeeded  # the row and its history stay for the statistics
    assert done.result_path == "" and not files.exists(result.path)
    assert not MediaObject.objects.filter(id=old_media.id).exists()
    assert not files.exists(old_media.path)
    assert MediaObject.objects.filter(id=live_media.id).exists()
    assert files.exists(live_media.path)


def test_cleanup_leaves_a_job_before_its_deadline_alone(
    live_db: None, ingest_password: str
) -> None:
    waiting = queue_photo(ingest_password)

    output = run_command("cleanup")

    assert "jobs timed out: 0" in output
    waiting.refresh_from_db()
    assert not waiting.is_finalized
    assert files.exists(waiting.payload_path)


# --- serve -----------------------------------------------------------------------------------
def running_processes() -> Iterator[tuple[int, int, int, str]]:
    """(pid, parent pid, process group, command line) of each running process, from /proc."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        state, ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if state != "Z":
            yield int(entry), int(ppid), int(pgrp), command


def child_processes(parent_pid: int) -> dict[int, str]:
    """Running children of a process: pid → command line."""
    return {pid: command for pid, ppid, _, command in running_processes() if ppid == parent_pid}


def process_group(pgid: int) -> list[int]:
    """The running members of a process group."""
    return [pid for pid, _, pgrp, _ in running_processes() if pgrp == pgid]


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class Serve:
    """A running `manage.py serve` and the two children it started."""

    process: subprocess.Popen[bytes]
    base_url: str
    children: dict[int, str]
    log_path: Path

    def child(self, word: str) -> int:
        (pid,) = [pid for pid, command in self.children.items() if word in command]
        return pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def serve(live_db: None, tmp_path: Path) -> Iterator[Serve]:
    """`manage.py serve` as an operator starts it; whatever it left running is ended afterwards."""
    port = free_port()
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=process_environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group, like a command started from a shell prompt.
            start_new_session=True,
        )
    children: dict[int, str] = {}
    try:

        def both_children() -> dict[int, str] | None:
            found = child_processes(process.pid)
            return found if len(found) == 2 else None

        found = wait_until(both_children, timeout=15)
        assert isinstance(found, dict)
        children.update(found)
        running = Serve(process, f"http://127.0.0.1:{port}", children, log_path)

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"serve exited:\n{running.log()}")
            try:
                return requests.get(f"{running.base_url}/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_until(answers, timeout=30)
        wait_until(lambda: "workers running" in running.log(), timeout=15)
        yield running
    finally:
        for pid in [*children, process.pid]:
            if is_running(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)


def test_serve_runs_web_and_workers_and_ctrl_c_stops_both(
    serve: Serve, ingest_password: str
) -> None:
    assert requests.get(f"{serve.base_url}/healthz", timeout=5).json() == {"status": "ok"}
    # The workers are there too: a photo comes back processed.
    response = requests.post(
        f"{serve.base_url}/ingest/slot-001",
        data={"password": ingest_password},
        files={"fileToUpload": ("IMG_0001.JPG", make_photo(), "image/jpeg")},
        timeout=30,
    )
    assert response.status_code == 200, serve.log()

    started = time.monotonic()
    serve.process.send_signal(signal.SIGINT)
    returncode = serve.process.wait(timeout=20)

    assert returncode == 0, serve.log()
    assert time.monotonic() - started < 10
    for pid, command in serve.children.items():
        assert not is_running(pid), command


def test_serve_stops_the_workers_and_fails_when_the_web_server_dies(serve: Serve) -> None:
    workers = serve.child("run_workers")

    os.kill(serve.child("uvicorn"), signal.SIGKILL)
    returncode = serve.process.wait(timeout=20)

    assert returncode != 0
    assert "web process exited" in serve.log()
    assert not is_running(workers)


def test_ctrl_c_in_a_terminal_lets_the_workers_finish_the_job_in_flight(
    serve: Serve, ingest_password: str
) -> None:
    configure_testing_slot("slot-002", settings={"seconds": 1.5}, sync_response_seconds=20)
    job = queue_photo(ingest_password, slot_id="slot-002")
    wait_until(
        lambda: Job.objects.filter(id=job.id, status=JobStatus.PROCESSING).exists(), timeout=10
    )

    # Ctrl-C in a terminal signals every process in the foreground process group.
    members = process_group(serve.process.pid)
    assert serve.process.pid in members
    for pid in members:
        os.kill(pid, signal.SIGINT)
    serve.process.wait(timeout=20)

    job.refresh_from_db()
    assert job.succeeded, (job.status, job.failure_reason, serve.log())


def test_queue_status_shows_who_is_working_and_what_waits(db: None) -> None:
    from jobqueue.models import WorkerHeartbeat

    now = timezone.now()
    WorkerHeartbeat.objects.create(
        worker_id="booth-server:101",
        hostname="booth-server",
        pid=101,
        concurrency=4,
        started_at=now,
        last_seen_at=now,
        current_job_ids=["3f2c"],
    )
    WorkerHeartbeat.objects.create(
        worker_id="old-server:7",
        hostname="old-server",
        pid=7,
        concurrency=2,
        started_at=now - timedelta(hours=1),
        last_seen_at=now - timedelta(minutes=5),
    )
    out = io.StringIO()

    call_command("queue_status", stdout=out)

    text = out.getvalue()
    assert "workers: 2" in text
    assert "booth-server:101" in text and "alive" in text and "1/4 jobs: 3f2c" in text
    assert "old-server:7" in text and "gone" in text
    assert "unfinished jobs: 0 pending, 0 processing" in text
