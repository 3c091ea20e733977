"""The results download page: every retained result of a slot or a time range as one ZIP.

`/dashboard/results/archive` is a GET form (slot, from, to) that shows how many results match
and their size; `/dashboard/results/archive.zip` with the same parameters downloads them. Both
need `slots:read`. They read the form with the admin API's query serializer
(api.archives.ArchiveQuery) and answer with the API's own streamed ZIP (api.archives), so the
page, its download and GET /api/results/archive can never disagree. "From" and "to" come from
datetime-local inputs and are taken in the server's time zone (TIME_ZONE). A bad range is shown
next to its field (400); a range with nothing in it says so instead of offering an empty file.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from django.conf import settings
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import path, reverse
from django.views.decorators.http import require_safe

from adminui.access import requires_scope
from api.archives import ArchiveQuery, results_selection, zip_download
from api.schema import valid_query
from ingest.models import IngestSettings, Slot
from jobqueue import archives
from jobqueue.archives import ArchiveSummary, ResultSelection
from photobooth.errors import BadRequest, NotFound

# The form's fields and the API's names for them.
API_NAMES = {"slot": "slot_id", "from": "since", "to": "until"}
FORM_NAMES = {api_name: name for name, api_name in API_NAMES.items()}
NO_RESULTS = "No results in this range: none were made then, or they have expired."
INVALID_FORM = "Some fields are invalid: correct them and try again."


def _filled(query: QueryDict) -> dict[str, str]:
    """The form's fields that have a value (an empty field means "any")."""
    found = {name: query.get(name) for name in API_NAMES}
    return {name: value for name, value in found.items() if isinstance(value, str) and value}


def _read(values: Mapping[str, str]) -> tuple[ResultSelection, ArchiveSummary]:
    """The selection the form names and its summary; BadRequest with per-field messages."""
    try:
        params = valid_query(ArchiveQuery(data={API_NAMES[k]: v for k, v in values.items()}))
        selection = results_selection(params)
    except NotFound as error:  # an unknown slot: a wrong choice in the form
        raise BadRequest(INVALID_FORM, details={"slot": [error.message]}) from error
    except BadRequest as error:
        details = {
            FORM_NAMES.get(field, field): [str(text) for text in texts]
            for field, texts in error.details.items()
        }
        raise BadRequest(INVALID_FORM, details=details) from error
    return selection, archives.archive_summary(selection)


def _hours(seconds: int) -> str:
    hours = seconds / 3600
    return f"{hours:g}" if hours == int(hours) else f"{hours:.1f}"


def _page(
    request: HttpRequest,
    values: Mapping[str, str],
    *,
    selection: ResultSelection | None = None,
    summary: ArchiveSummary | None = None,
    error: BadRequest | None = None,
    status: int = 200,
) -> HttpResponse:
    query = QueryDict(mutable=True)
    query.update(values)
    slots = list(Slot.objects.order_by("id").values_list("id", "name"))
    context: dict[str, Any] = {
        "nav": "downloads",
        "values": values,
        "slots": slots,
        "slot_name": dict(slots).get(selection.slot_id or "", "") if selection else "",
        "time_zone": settings.TIME_ZONE,
        "retention_hours": _hours(IngestSettings.load().result_retention_sec),
        "error": error.message if error else "",
        "errors": error.details if error else {},
        "selection": selection,
        "summary": summary,
        "no_results": NO_RESULTS,
        "download_address": reverse("dashboard-results-archive-zip")
        + (f"?{query.urlencode()}" if query else ""),
    }
    response = render(request, "adminui/archive.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


@require_safe
@requires_scope("slots:read")
def archive_page(request: HttpRequest) -> HttpResponse:
    """The form, and how many results it selects (with their total size)."""
    values = _filled(request.GET)
    try:
        selection, summary = _read(values)
    except BadRequest as error:
        return _page(request, values, error=error, status=400)
    return _page(request, values, selection=selection, summary=summary)


@require_safe
@requires_scope("slots:read")
def archive_download(request: HttpRequest) -> HttpResponse:
    """The ZIP of what the form selects; the form again (with the reason) if there is none."""
    values = _filled(request.GET)
    try:
        selection, summary = _read(values)
    except BadRequest as error:
        return _page(request, values, error=error, status=400)
    if summary.file_count == 0:
        return _page(request, values, selection=selection, summary=summary, status=404)
    response = zip_download(
        request,
        selection=selection,
        summary=summary,
        actor=str(request.user.get_username()),
        via="dashboard",
    )
    # A streamed answer, not an HttpResponse: adminui.access types views as returning the latter.
    return cast(HttpResponse, response)


urlpatterns = [
    path("dashboard/results/archive", archive_page, name="dashboard-results-archive"),
    path("dashboard/results/archive.zip", archive_download, name="dashboard-results-archive-zip"),
]
