"""Public links: nothing to list, nothing to traverse, nothing to guess."""

from __future__ import annotations

import uuid

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/public/results/",
        "/public/media/",
        "/public/results",
        "/r/",
        "/public/results/../../etc/passwd",
        "/public/media/..%2F..%2Fetc%2Fpasswd",
        "/public/results/1",
        "/public/results/not-a-uuid/thumbnail",
        "/media-files/payloads/",
        "/static/../photobooth/settings.py",
    ],
)
def test_no_listing_and_no_traversal(path: str) -> None:
    response = Client().get(path)

    assert response.status_code == 404
    assert b"SECRET_KEY" not in response.content


@pytest.mark.parametrize("prefix", ["/public/results/", "/public/media/", "/r/"])
def test_a_well_formed_but_unknown_id_is_a_404(prefix: str) -> None:
    assert Client().get(f"{prefix}{uuid.uuid4()}").status_code == 404


def test_ids_are_random_version_4_uuids() -> None:
    from tests.jobqueue.test_queue_services import enqueue

    ids = {enqueue().id for _ in range(5)}

    assert len(ids) == 5
    assert all(job_id.version == 4 for job_id in ids)
