"""What a gallery shows its guests: the event's successful results, newest first, by page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q, QuerySet
from django.utils import timezone

from galleries.models import Gallery
from jobqueue.models import Job
from jobqueue.selectors import retained_results

GALLERY_PAGE_SIZE = 48
# Deeper pages are not offered: 48 000 photos is more than any event makes, and a bounded
# OFFSET keeps a crafted ?page= cheap.
MAX_PAGE = 1000
# Dashboard test runs (ingest.try_it marks their metadata so) are the operator's own photos,
# not the event's: galleries never show them.
_TEST_RUN_SOURCE = "dashboard"


@dataclass(frozen=True)
class GalleryPhoto:
    """One result as a guest sees it: which job (its public pages) and when it was taken."""

    job_id: uuid.UUID
    taken_at: datetime


@dataclass(frozen=True)
class GalleryPage:
    photos: list[GalleryPhoto]
    page: int
    has_previous: bool
    has_next: bool


def gallery_results(gallery: Gallery, *, now: datetime) -> QuerySet[Job]:
    """The gallery's photos: successful results still kept, of its slots (all when none are
    chosen), received within its range, newest first."""
    jobs = retained_results(now=now).filter(created_at__gte=gallery.results_since)
    if gallery.results_until is not None:
        jobs = jobs.filter(created_at__lt=gallery.results_until)
    if gallery.slot_ids:
        jobs = jobs.filter(slot_id__in=gallery.slot_ids)
    # has_key first: for a job without the key, `source = 'dashboard'` is NULL, and NOT NULL
    # would drop the booth's own photos.
    test_runs = Q(metadata__has_key="source") & Q(metadata__source=_TEST_RUN_SOURCE)
    return jobs.exclude(test_runs).order_by("-created_at", "-id")


def gallery_page(
    gallery: Gallery,
    *,
    page: int = 1,
    page_size: int | None = None,
    now: datetime | None = None,
) -> GalleryPage:
    """One page of the gallery's photos, in one query (one row more than a page tells whether
    another page follows; no count is needed, and none is shown to guests)."""
    page_size = page_size or GALLERY_PAGE_SIZE
    page = min(max(page, 1), MAX_PAGE)
    start = (page - 1) * page_size
    rows = list(
        gallery_results(gallery, now=now or timezone.now()).values_list("id", "created_at")[
            start : start + page_size + 1
        ]
    )
    return GalleryPage(
        photos=[
            GalleryPhoto(job_id=job_id, taken_at=taken_at) for job_id, taken_at in rows[:page_size]
        ],
        page=page,
        has_previous=page > 1,
        has_next=len(rows) > page_size and page < MAX_PAGE,
    )
