"""The queue's tables. The Job table is the queue; ProcessingLog is each job's history."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class JobStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"


class FailureReason(models.TextChoices):
    TIMEOUT = "timeout", "Timeout"
    PROVIDER_ERROR = "provider_error", "Provider error"
    CANCELLED = "cancelled", "Cancelled"
    INTERNAL_ERROR = "internal_error", "Internal error"


class Job(models.Model):
    """One ingest. Knows its slot only by id and by the configuration snapshot taken at ingest."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    slot_id = models.CharField(max_length=32, db_index=True)

    # Snapshot of the slot at ingest: editing the slot never changes a queued job.
    provider_id = models.CharField(max_length=64)
    operation_id = models.CharField(max_length=64)
    settings_snapshot = models.JSONField(default=dict)
    # Template images the operation needs: {setting_key: {"path", "mime", "name"}}.
    template_refs = models.JSONField(default=dict)
    # Part of the snapshot: stamp a QR code of the guest page onto the result.
    qr_stamp = models.BooleanField(default=False)
    # Extra multipart fields sent with the photo (DSLR Remote Pro's time, id, hash, …).
    metadata = models.JSONField(default=dict)

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.PENDING)
    is_finalized = models.BooleanField(default=False)
    failure_reason = models.CharField(  # noqa: DJ001 (null = success, per SPEC)
        max_length=32, choices=FailureReason.choices, null=True, blank=True
    )
    failure_detail = models.TextField(blank=True, default="")

    created_at = models.DateTimeField()
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField()
    started_at = models.DateTimeField(null=True, blank=True)
    finalized_at = models.DateTimeField(null=True, blank=True)

    # The uploaded photo, stored through the storage API; emptied when deleted.
    payload_path = models.CharField(max_length=255, blank=True, default="")
    payload_mime = models.CharField(max_length=64)
    payload_size = models.PositiveIntegerField()
    payload_sha256 = models.CharField(max_length=64)
    payload_expires_at = models.DateTimeField()

    provider_job_reference = models.CharField(max_length=128, blank=True, default="")

    result_path = models.CharField(max_length=255, blank=True, default="")
    result_mime = models.CharField(max_length=64, blank=True, default="")
    result_size = models.PositiveIntegerField(null=True, blank=True)
    result_sha256 = models.CharField(max_length=64, blank=True, default="")
    result_expires_at = models.DateTimeField(null=True, blank=True)
    # T_result_retention in force when the job was created.
    result_retention_seconds = models.PositiveIntegerField()

    attempt_count = models.PositiveSmallIntegerField(default=0)
    # Fencing: each acquisition gets a new token; only its holder may finalize the job.
    lease_token = models.UUIDField(null=True, blank=True)
    # The holder renews the lease while it works; a lapsed lease means the worker is gone and
    # another one may take the job over (with a new token).
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker_id = models.CharField(max_length=128, blank=True, default="")

    class Meta:
        indexes = [
            # The acquire query: oldest pending, unfinalized jobs.
            models.Index(
                fields=["created_at"],
                name="job_ready_idx",
                condition=Q(status="pending", is_finalized=False),
            ),
            # Taking over jobs whose worker vanished: processing, unfinalized, by lease expiry.
            models.Index(
                fields=["lease_expires_at"],
                name="job_leased_idx",
                condition=Q(status="processing", is_finalized=False),
            ),
            # The reaper: unfinalized jobs by deadline.
            models.Index(
                fields=["expires_at"], name="job_unfinalized_idx", condition=Q(is_finalized=False)
            ),
            models.Index(fields=["slot_id", "created_at"], name="job_slot_created_idx"),
            # The jobs list (newest first, or by expiry) and global statistics by time range.
            models.Index(fields=["created_at"], name="job_created_idx"),
            models.Index(fields=["expires_at"], name="job_expires_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_finalized=False) | Q(finalized_at__isnull=False),
                name="job_finalized_has_time",
            ),
            models.CheckConstraint(
                condition=Q(is_finalized=True) | Q(failure_reason__isnull=True),
                name="job_failure_only_when_finalized",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=models.F("created_at")), name="job_expires_after_create"
            ),
        ]

    def __str__(self) -> str:
        return f"job {self.id} ({self.slot_id})"

    @property
    def succeeded(self) -> bool:
        return self.is_finalized and self.failure_reason is None


class ProcessingLog(models.Model):
    """Append-only history of a job. No image bytes, no secrets."""

    class Event(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued", "Queued"
        PICKED_UP = "picked_up", "Picked up"
        PROVIDER_CALL = "provider_call", "Provider call"
        PROVIDER_EVENT = "provider_event", "Provider event"
        FINALIZED = "finalized", "Finalized"
        LATE_RESULT_IGNORED = "late_result_ignored", "Late result ignored"
        RELEASED = "released", "Released to the queue"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="logs")
    event = models.CharField(max_length=32, choices=Event.choices)
    created_at = models.DateTimeField()
    details = models.JSONField(default=dict)

    class Meta:
        indexes = [models.Index(fields=["job", "created_at"], name="log_job_created_idx")]

    def __str__(self) -> str:
        return f"{self.event} for {self.job_id}"


class MediaObject(models.Model):
    """A temporary file behind a public URL, for providers that read inputs by URL."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    job = models.ForeignKey(
        Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="media_objects"
    )
    path = models.CharField(max_length=255)
    mime = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"media {self.id}"


class WorkerHeartbeat(models.Model):
    """One row per run_workers process: alive while `last_seen_at` is recent."""

    worker_id = models.CharField(primary_key=True, max_length=128)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    concurrency = models.PositiveSmallIntegerField()
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    # What it is doing right now: ids of the jobs it holds.
    current_job_ids = models.JSONField(default=list)
    is_stopping = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"worker {self.worker_id}"
