"""GET /api/results/archive: every retained result of a slot or a time range as one ZIP.

Needs `slots:read`. The archive is built by jobqueue.archives and streamed as it is made; the
dashboard's download (adminui.archive_pages) answers with the same `zip_download`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Any

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import path
from django.utils.http import content_disposition_header
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from api.jobs import NO_NUL
from api.schema import AUTHENTICATED_ERRORS, errors, valid_query
from ingest.selectors import get_slot
from jobqueue import archives
from jobqueue.archives import ArchiveSummary, ResultArchive, ResultSelection
from photobooth.errors import NotFound

logger = logging.getLogger(__name__)

ZIP_MIME = "application/zip"


class ArchiveQuery(serializers.Serializer[Any]):
    """The query parameters of GET /api/results/archive (an empty one means "any")."""

    slot_id = serializers.CharField(
        max_length=32,
        required=False,
        trim_whitespace=False,
        validators=[NO_NUL],
        help_text="One slot's results only (404 for an unknown slot); all slots when absent.",
    )
    since = serializers.DateTimeField(
        required=False,
        help_text="ISO 8601; results of photos received at or after this instant. Without an "
        "offset, in the server's time zone (TIME_ZONE).",
    )
    until = serializers.DateTimeField(
        required=False,
        help_text="ISO 8601; results of photos received before this instant (after `since`).",
    )


def results_selection(values: dict[str, Any]) -> ResultSelection:
    """The selection the validated parameters name: NotFound for an unknown slot, BadRequest
    unless since < until."""
    slot_id = values.get("slot_id")
    if slot_id is not None:
        get_slot(slot_id)
    return archives.select_results(
        slot_id=slot_id, since=values.get("since"), until=values.get("until")
    )


def nonempty_summary(selection: ResultSelection) -> ArchiveSummary:
    """The selection's count and size; NotFound (`no_results`) when it holds no result."""
    summary = archives.archive_summary(selection)
    if summary.file_count == 0:
        raise NotFound(
            "No results to download: none were made in this range, or they have expired.",
            code="no_results",
        )
    return summary


def archive_filename(selection: ResultSelection, summary: ArchiveSummary) -> str:
    """photobooth-results-<slot or all>-<since>-<until>.zip (UTC); an open range is named by
    what it holds: from the first result up to now."""
    slot = archives.safe_name_part(selection.slot_id) if selection.slot_id else "all"
    since = selection.since or summary.first_created_at or selection.now
    until = selection.until or selection.now
    return f"photobooth-results-{slot}-{archives.name_time(since)}-{archives.name_time(until)}.zip"


def _served_asynchronously(request: HttpRequest) -> bool:
    return isinstance(request, ASGIRequest)


def zip_download(
    request: HttpRequest,
    *,
    selection: ResultSelection,
    summary: ArchiveSummary,
    actor: str,
    via: str,
) -> StreamingHttpResponse:
    """The streamed ZIP answer. Under ASGI its content is an async iterator, so the server
    neither collects it in memory nor holds a thread for the whole download."""
    archive = ResultArchive(selection)
    asynchronous = _served_asynchronously(request)
    content: Iterator[bytes] | AsyncIterator[bytes]
    if request.method == "HEAD":
        # Headers only: servers drop a HEAD answer's body, so none is made (a link checker
        # must not make the server read every file).
        content = _no_bytes() if asynchronous else iter(())
    elif asynchronous:
        content = _logged_async(archive, actor=actor, via=via)
    else:
        content = _logged(archive, actor=actor, via=via)
    response = StreamingHttpResponse(content, content_type=ZIP_MIME)
    response["Content-Disposition"] = (
        content_disposition_header(True, archive_filename(selection, summary)) or "attachment"
    )
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    # Lets a proxy (nginx) pass the bytes on as they come instead of spooling them to disk.
    response["X-Accel-Buffering"] = "no"
    return response


async def _no_bytes() -> AsyncIterator[bytes]:
    nothing: tuple[bytes, ...] = ()
    for chunk in nothing:
        yield chunk


def _logged(archive: ResultArchive, *, actor: str, via: str) -> Iterator[bytes]:
    try:
        yield from archive.chunks()
    finally:
        _log_download(archive, actor=actor, via=via)


async def _logged_async(archive: ResultArchive, *, actor: str, via: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in archive.async_chunks():
            yield chunk
    finally:
        _log_download(archive, actor=actor, via=via)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _log_download(archive: ResultArchive, *, actor: str, via: str) -> None:
    # Who took which results: ids and counts, never image bytes.
    selection = archive.selection
    logger.info(
        "results archive downloaded",
        extra={
            "actor": actor,
            "via": via,
            "slot_id": selection.slot_id,
            "since": _iso(selection.since),
            "until": _iso(selection.until),
            "file_count": archive.files_written,
            "skipped_count": archive.files_skipped,
            "bytes": archive.bytes_sent,
            "complete": archive.complete,
        },
    )


class ResultsArchiveView(APIView):
    required_scopes = {"GET": "slots:read"}

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The archive is not rendered by DRF: any Accept header is fine (errors stay JSON).
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="results_archive",
        parameters=[
            ArchiveQuery,
            OpenApiParameter(
                "Content-Disposition",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description='attachment; filename="photobooth-results-<slot or all>-'
                '<since>-<until>.zip" (UTC, YYYYMMDD-HHMMSS).',
                response=[200],
            ),
        ],
        responses={
            (200, ZIP_MIME): OpenApiResponse(
                OpenApiTypes.BINARY,
                description="A ZIP streamed as it is made: one entry per result, named "
                "`<slot id>/<UTC YYYYMMDD-HHMMSS>_<job id>.<jpg|png|webp>`.",
            ),
            **AUTHENTICATED_ERRORS,
            **errors(400, 404),
        },
        tags=["results"],
        description="Every result still retained (successful jobs whose result has not "
        "expired), of one slot or of all, for photos received in [since, until), as one ZIP "
        "download. Both bounds are optional. 400 `invalid_parameter` for an unreadable date "
        "or since ≥ until; 404 `slot_not_found` for an unknown slot, `no_results` when "
        "nothing matches. A result file removed while the archive is made is left out.",
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        # A plain dict without empty values: `?slot_id=` means all slots, as in the dashboard.
        raw = {key: value for key, value in request.query_params.dict().items() if value != ""}
        selection = results_selection(valid_query(ArchiveQuery(data=raw)))
        summary = nonempty_summary(selection)
        return zip_download(
            request._request,
            selection=selection,
            summary=summary,
            actor=str(request.user.get_username()),
            via="api",
        )


urlpatterns = [
    path("results/archive", ResultsArchiveView.as_view(), name="api-results-archive"),
]
