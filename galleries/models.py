"""Shareable, time-limited public galleries of an event's results."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db import models
from django.db.models import F, Q


class GalleryState(models.TextChoices):
    ACTIVE = "active", "Active"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class Gallery(models.Model):
    """A public page (/g/<id>) showing the results of some slots over a time range, until
    `expires_at` or until an operator revokes it. The random id is the only access key."""

    # UUID4: 122 random bits, so a gallery's address cannot be guessed or enumerated.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    title = models.CharField(max_length=100)
    # Slot ids whose results are shown; an empty list means every slot.
    slot_ids = models.JSONField(default=list, blank=True)
    # Photos received from this moment on...
    results_since = models.DateTimeField()
    # ...until this one (excluded); null: open, photos taken later keep appearing.
    results_until = models.DateTimeField(null=True, blank=True)
    # When the public address stops working (410).
    expires_at = models.DateTimeField()
    created_by = models.CharField(max_length=150)
    created_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["created_at"], name="gallery_created_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(results_until__isnull=True) | Q(results_until__gt=F("results_since")),
                name="gallery_range_ordered",
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gt=F("created_at")), name="gallery_expires_after_create"
            ),
        ]

    def __str__(self) -> str:
        return f"gallery {self.id} ({self.title})"

    def state(self, now: datetime) -> GalleryState:
        """Revoked wins over expired: an operator's decision is what the list should say."""
        if self.revoked_at is not None:
            return GalleryState.REVOKED
        if self.expires_at <= now:
            return GalleryState.EXPIRED
        return GalleryState.ACTIVE
