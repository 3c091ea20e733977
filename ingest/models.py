"""Slots, templates and the global ingest settings."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from jobqueue import deadlines

# The slot's on/off options besides is_active: optional in API bodies and slot files (left as
# they are when absent).
SLOT_FLAGS = ("qr_stamp", "one_at_a_time")


class Slot(models.Model):
    """A booth endpoint: which provider and operation to run, with which settings."""

    id = models.CharField(primary_key=True, max_length=32)
    name = models.CharField(max_length=100)
    provider_id = models.CharField(max_length=64, default="local")
    operation_id = models.CharField(max_length=64, default="photo_look")
    settings_json = models.JSONField(default=dict, blank=True)
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    # Also the slot's version for ETag / If-Match.
    updated_at = models.DateTimeField(auto_now=True)
    last_reset_at = models.DateTimeField(null=True, blank=True)
    # Stamp a small QR code linking to the guest's result page onto every result of this slot.
    qr_stamp = models.BooleanField(default=False)
    # Refuse a photo (429, slot_busy) while one of this slot's jobs is still unfinished: for
    # providers that must not run two requests of one booth at once.
    one_at_a_time = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.id} ({self.name})"


class TemplateMedia(models.Model):
    """A permanent image uploaded by an admin (frame, logo, style, face). Not public."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    path = models.CharField(max_length=255)
    mime = models.CharField(max_length=64)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    original_name = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"template {self.id} ({self.original_name})"


class TemplateBinding(models.Model):
    """A template bound to a slot under one of its operation's template settings."""

    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="template_bindings")
    setting_key = models.CharField(max_length=64)
    template = models.ForeignKey(TemplateMedia, on_delete=models.PROTECT, related_name="bindings")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["slot", "setting_key"], name="binding_one_per_key")
        ]

    def __str__(self) -> str:
        return f"{self.slot_id}.{self.setting_key} → {self.template_id}"


class IngestSettings(models.Model):
    """The global settings, one row (pk=1), editable at run time."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1, editable=False)
    ingest_password_hash = models.CharField(max_length=256, blank=True, default="")
    ingest_password_updated_at = models.DateTimeField(null=True, blank=True)
    ingest_password_updated_by = models.CharField(max_length=150, blank=True, default="")
    # T_sync_response. Admins may choose 45–60 s (checked where they change it); the column only
    # bounds it loosely so that tests can use a short window.
    sync_response_timeout_sec = models.PositiveSmallIntegerField(
        default=deadlines.SYNC_RESPONSE_DEFAULT_SECONDS
    )
    result_retention_sec = models.PositiveIntegerField(
        default=int(deadlines.RESULT_RETENTION_DEFAULT.total_seconds())
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "ingest settings"
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="settings_single_row"),
            models.CheckConstraint(
                condition=Q(sync_response_timeout_sec__gte=1)
                & Q(sync_response_timeout_sec__lte=deadlines.SYNC_RESPONSE_MAX_SECONDS),
                name="settings_sync_response_range",
            ),
            models.CheckConstraint(
                condition=Q(result_retention_sec__gte=1), name="settings_retention_positive"
            ),
        ]

    def __str__(self) -> str:
        return "ingest settings"

    @classmethod
    def load(cls) -> IngestSettings:
        """The settings row, created with defaults on first use."""
        row, _ = cls.objects.get_or_create(id=1)
        return row

    @property
    def has_ingest_password(self) -> bool:
        return bool(self.ingest_password_hash)
