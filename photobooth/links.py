"""Public addresses, built from PUBLIC_BASE_URL (never from the request's Host header)."""

from __future__ import annotations

import uuid
from urllib.parse import urljoin

from django.conf import settings
from django.urls import reverse


def public_url(path: str) -> str:
    """PUBLIC_BASE_URL joined with a path of ours."""
    return urljoin(str(settings.PUBLIC_BASE_URL).rstrip("/") + "/", path.lstrip("/"))


def result_download_url(job_id: uuid.UUID) -> str:
    """Where guests download a job's result (until its retention ends)."""
    return public_url(reverse("public-result", kwargs={"job_id": job_id}))


def guest_result_url(job_id: uuid.UUID) -> str:
    """The guest's page of a job's result (preview, download, QR code): what guests are given."""
    return public_url(reverse("guest-result", kwargs={"job_id": job_id}))


def result_thumbnail_url(job_id: uuid.UUID) -> str:
    """A small JPEG preview of a job's result."""
    return public_url(reverse("public-result-thumbnail", kwargs={"job_id": job_id}))


def media_url(media_id: uuid.UUID) -> str:
    """A temporary public media file (inputs for providers that read URLs)."""
    return public_url(reverse("public-media", kwargs={"media_id": media_id}))
