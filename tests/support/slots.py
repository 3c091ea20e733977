"""Slots pointed at the tests' own provider (tests.support.providers.TestingProvider)."""

from __future__ import annotations

from typing import Any

from ingest.models import IngestSettings
from ingest.services import update_slot


def configure_testing_slot(
    slot_id: str,
    operation_id: str = "sleep",
    *,
    settings: dict[str, Any],
    sync_response_seconds: int | None = None,
    **flags: bool,
) -> None:
    """Activate `slot_id` with one of the testing provider's operations (`sleep`, `hang`, …);
    optionally set T_sync_response (tests use windows shorter than the admins' 45–60 s)."""
    if sync_response_seconds is not None:
        IngestSettings.objects.filter(id=1).update(sync_response_timeout_sec=sync_response_seconds)
    update_slot(
        slot_id=slot_id,
        provider_id="testing",
        operation_id=operation_id,
        settings=settings,
        is_active=True,
        flags=flags,
    )
