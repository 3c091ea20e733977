"""The slot page: configuration, templates, ingest URL, test runs, recent results, statistics.

Viewing needs `slots:read`; saving the configuration, trying the slot and resetting its
statistics need `slots:write`; uploading and removing templates need `media:write`. Every
change goes through the services the admin API uses (ingest.selectors.update_slot_if_current,
ingest.media_service, ingest.selectors.reset_slot_stats, ingest.try_it), with their checks,
messages and audit. A configuration that cannot be saved is shown again with the messages next
to its fields (422; 409 when someone else saved the slot meanwhile) and nothing changed; every
other change redirects back to the page with a notice (POST/redirect/GET).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from django.conf import settings as django_settings
from django.contrib import messages
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.views.decorators.http import require_safe

from adminui.access import requires_scope
from adminui.forms import (
    SlotForm,
    TemplateOption,
    choice_changed,
    form_for_new_choice,
    form_for_slot,
    operation_declaration,
    save_slot_form,
    template_label,
    template_options,
    template_preview_url,
)
from adminui.views import start_of_today
from ingest import media_service
from ingest.models import Slot, TemplateMedia
from ingest.selectors import get_slot, recent_results, reset_slot_stats, slot_etag
from ingest.services import FILE_FIELD, PASSWORD_FIELD
from ingest.try_it import TestPhoto, start_test_run
from jobqueue.job_queries import FAILED, PROCESSING, SUCCEEDED, JobDetail, job_detail
from jobqueue.stats import DAY, Counts, Period, slot_stats
from photobooth import links
from photobooth.errors import (
    Conflict,
    NotFound,
    PhotoboothError,
    PreconditionRequired,
)
from providers.base import SettingsInvalid
from providers.registry import all_providers
from providers.secrets import key_status

# How long the result page waits between looks at a test run's job.
TRY_REFRESH_SECONDS = 2
# Days the statistics table covers (today included).
STATS_DAYS = 7
FAILURE_MESSAGES = {
    "timeout": "The photo was not processed before the deadline.",
    "provider_error": "The provider could not process the photo.",
    "cancelled": "The job was cancelled.",
    "internal_error": "An internal error stopped the job.",
}


# --- what the page shows -------------------------------------------------------------------------
@dataclass(frozen=True)
class TemplateSlotSetting:
    """A template setting of the slot's saved operation, and the template bound to it."""

    name: str
    label: str
    help_text: str
    required: bool
    template: TemplateMedia | None

    @property
    def template_label(self) -> str:
        return template_label(self.template) if self.template else ""

    @property
    def preview_url(self) -> str:
        return template_preview_url(self.template.id) if self.template else ""


@dataclass(frozen=True)
class GalleryItem:
    job_id: uuid.UUID
    # Same-origin address of the thumbnail (the page's Content-Security-Policy allows only
    # images of its own origin); the public addresses are the links.
    thumbnail_path: str
    thumbnail_url: str
    download_url: str
    completed_at: datetime
    result_expires_at: datetime
    size: int


@dataclass(frozen=True)
class StatsView:
    today: Counts
    week: list[Period]
    week_totals: Counts
    last_reset_at: datetime | None

    @property
    def today_failed(self) -> int:
        return _failed(self.today)


def _failed(counts: Counts) -> int:
    return counts.timeouts + counts.provider_errors + counts.cancelled + counts.errors


def _template_settings(slot: Slot) -> list[TemplateSlotSetting]:
    declaration = operation_declaration(slot.provider_id, slot.operation_id) or ()
    bound = {
        binding.setting_key: binding.template
        for binding in slot.template_bindings.select_related("template")
    }
    return [
        TemplateSlotSetting(
            name=setting["name"],
            label=setting["label"],
            help_text=setting["help_text"],
            required=bool(setting["required"]) and setting["default"] is None,
            template=bound.get(setting["name"]),
        )
        for setting in declaration
        if setting["kind"] == "template"
    ]


def _gallery(slot_id: str) -> list[GalleryItem]:
    return [
        GalleryItem(
            job_id=result.job_id,
            thumbnail_path=reverse("public-result-thumbnail", kwargs={"job_id": result.job_id}),
            thumbnail_url=result.thumbnail_url,
            download_url=result.download_url,
            completed_at=result.completed_at,
            result_expires_at=result.result_expires_at,
            size=result.size,
        )
        for result in recent_results(slot_id)
    ]


def _stats(slot_id: str) -> StatsView:
    now = timezone.now()
    today_start = start_of_today()
    today = slot_stats(
        slot_id, group_by=DAY, start=today_start, end=max(now, today_start + timedelta(seconds=1))
    )
    utc_midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    week = slot_stats(
        slot_id, group_by=DAY, start=utc_midnight - timedelta(days=STATS_DAYS - 1), end=now
    )
    return StatsView(
        today=today.totals,
        week=list(reversed(week.periods)),
        week_totals=week.totals,
        last_reset_at=week.last_reset_at,
    )


def ingest_url(slot_id: str) -> str:
    """Where booths post photos for this slot, from PUBLIC_BASE_URL (never the request)."""
    return links.public_url(reverse("ingest", kwargs={"slot_id": slot_id}))


def _render_page(
    request: HttpRequest,
    slot: Slot,
    *,
    form: SlotForm | None = None,
    templates: Sequence[TemplateOption] | None = None,
    status: int = 200,
    conflict: bool = False,
) -> HttpResponse:
    templates = template_options() if templates is None else templates
    form = form or form_for_slot(slot, etag=slot_etag(slot), templates=templates)
    providers = all_providers()
    provider = providers.get(form.provider_id)
    saved_provider = providers.get(slot.provider_id)
    context = {
        "nav": "slots",
        "slot": slot,
        "form": form,
        "setting_rows": form.setting_rows(),
        "conflict": conflict,
        "provider_missing": saved_provider is None,
        "missing_key": bool(
            provider and provider.requires_api_key and not key_status(provider.id).is_configured
        ),
        "provider_label": provider.label if provider else form.provider_id,
        "template_settings": _template_settings(slot),
        "templates": templates,
        "template_accept": ",".join(media_service.ACCEPTED_MIMES),
        "ingest_url": ingest_url(slot.id),
        "file_field": FILE_FIELD,
        "password_field": PASSWORD_FIELD,
        "gallery": _gallery(slot.id),
        "stats": _stats(slot.id),
        "stats_days": STATS_DAYS,
        "time_zone": django_settings.TIME_ZONE,
        "max_upload_mb": round(media_service.max_upload_bytes() / 1024 / 1024, 1),
    }
    response = render(request, "adminui/slot.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


def _not_found(request: HttpRequest) -> HttpResponse:
    return render(request, "adminui/not_found.html", status=404)


def _actor(request: HttpRequest) -> str:
    return str(request.user.get_username())


def _slot_url(slot_id: str, anchor: str = "") -> str:
    url = reverse("dashboard-slot", kwargs={"slot_id": slot_id})
    return f"{url}#{anchor}" if anchor else url


def _explain(error: PhotoboothError) -> str:
    """The error's message, with the per-field messages its details may carry."""
    field_messages = [
        f"{key}: {'; '.join(str(m) for m in value)}"
        for key, value in error.details.items()
        if isinstance(value, list | tuple) and value and all(isinstance(m, str) for m in value)
    ]
    return f"{error.message} ({' · '.join(field_messages)})" if field_messages else error.message


# --- the page ------------------------------------------------------------------------------------
@requires_scope("slots:read")
@require_safe
def slot_page(request: HttpRequest, slot_id: str) -> HttpResponse:
    try:
        slot = get_slot(slot_id)
    except NotFound:
        return _not_found(request)
    return _render_page(request, slot)


@requires_scope("slots:write")
def configure(request: HttpRequest, slot_id: str) -> HttpResponse:
    """Save the configuration form, or show it again for a newly chosen provider/operation."""
    try:
        slot = get_slot(slot_id)
    except NotFound:
        return _not_found(request)
    if request.method != "POST":
        return redirect(_slot_url(slot.id))
    templates = template_options()
    if request.POST.get("action") == "change" or choice_changed(request.POST):
        form = form_for_new_choice(request.POST, templates=templates)
        messages.info(
            request,
            f"Showing the settings of “{form.provider_label} · {form.operation_label}”. "
            "Nothing is saved until you press Save.",
        )
        return _render_page(request, slot, form=form, templates=templates)
    form = SlotForm(
        request.POST,
        request.FILES,
        provider_id=request.POST.get("rendered_provider", ""),
        operation_id=request.POST.get("rendered_operation", ""),
        templates=templates,
    )
    if not form.is_valid():
        messages.error(request, "Not saved: please correct the fields marked below.")
        return _render_page(request, slot, form=form, templates=templates, status=422)
    try:
        saved = save_slot_form(form, slot_id=slot.id, actor=_actor(request), request=request)
    except SettingsInvalid as invalid:
        form.show_errors(invalid.errors)
        messages.error(request, "Not saved: please correct the fields marked below.")
        return _render_page(request, slot, form=form, templates=templates, status=422)
    except (Conflict, PreconditionRequired):
        messages.error(
            request,
            "Not saved: someone else changed this slot since you opened it. Reload the page "
            "to see the current configuration, then apply your changes again.",
        )
        return _render_page(
            request, get_slot(slot.id), form=form, templates=templates, status=409, conflict=True
        )
    state = "active: booths may send photos" if saved.is_active else "inactive"
    messages.success(request, f"Saved “{saved.name}”. The slot is {state}.")
    return redirect(_slot_url(saved.id))


# --- templates -----------------------------------------------------------------------------------
@requires_scope("slots:read")
@require_safe
def template_file(request: HttpRequest, template_id: uuid.UUID) -> HttpResponse:
    """A template image for the dashboard's previews (the API's file route needs a token)."""
    try:
        template = media_service.get_template(template_id)
        stream, filename = media_service.template_file_info(template)
    except NotFound:
        return _not_found(request)
    response = FileResponse(stream, content_type=template.mime, filename=filename)
    response["X-Content-Type-Options"] = "nosniff"
    # A template's file never changes under its id.
    response["Cache-Control"] = "private, max-age=86400, immutable"
    # A streamed file, not an HttpResponse: adminui.access types views as returning the latter.
    return cast(HttpResponse, response)


def _template_setting(slot: Slot, setting_key: str) -> TemplateSlotSetting | None:
    return next((s for s in _template_settings(slot) if s.name == setting_key), None)


@requires_scope("media:write")
def upload_template(request: HttpRequest, slot_id: str, setting_key: str) -> HttpResponse:
    """Upload a template and bind it to the slot's setting (replacing the one bound before)."""
    try:
        slot = get_slot(slot_id)
    except NotFound:
        return _not_found(request)
    if request.method != "POST":
        return redirect(_slot_url(slot.id, "templates"))
    setting = _template_setting(slot, setting_key)
    label = setting.label if setting else setting_key
    file = request.FILES.get("file")
    if file is None or not file.size:
        messages.error(request, f"Not uploaded: choose an image for “{label}”.")
        return redirect(_slot_url(slot.id, "templates"))
    try:
        media_service.upload_template(
            media_service.Upload(stream=file, size=int(file.size or 0), name=file.name or ""),
            bind_to=media_service.BindingTarget(slot_id=slot.id, setting_key=setting_key),
            actor=_actor(request),
            request=request,
        )
    except PhotoboothError as error:
        messages.error(request, f"Not uploaded: {_explain(error)}")
        return redirect(_slot_url(slot.id, "templates"))
    messages.success(request, f"Template uploaded and set as “{label}”.")
    return redirect(_slot_url(slot.id, "templates"))


@requires_scope("media:write")
def remove_template(request: HttpRequest, slot_id: str, setting_key: str) -> HttpResponse:
    """Unbind the slot's template for a setting; the template stays in the library."""
    try:
        slot = get_slot(slot_id)
    except NotFound:
        return _not_found(request)
    if request.method != "POST":
        return redirect(_slot_url(slot.id, "templates"))
    setting = _template_setting(slot, setting_key)
    label = setting.label if setting else setting_key
    if setting is None or setting.template is None:
        messages.error(request, f"Nothing removed: no template is set for “{label}”.")
        return redirect(_slot_url(slot.id, "templates"))
    try:
        deactivated = media_service.unbind_template(
            setting.template.id,
            media_service.BindingTarget(slot_id=slot.id, setting_key=setting_key),
            force=request.POST.get("force") == "1",
            actor=_actor(request),
            request=request,
        )
    except PhotoboothError as error:
        messages.error(request, f"Not removed: {_explain(error)}")
        return redirect(_slot_url(slot.id, "templates"))
    if deactivated:
        messages.warning(
            request,
            f"Template removed from “{label}”. The slot needs one, so it was switched off: "
            "booths get 404 until you set a new template and switch the slot on again.",
        )
    else:
        messages.success(
            request, f"Template removed from “{label}” (it stays in the template library)."
        )
    return redirect(_slot_url(slot.id, "templates"))


# --- statistics ----------------------------------------------------------------------------------
@requires_scope("slots:write")
def reset_stats(request: HttpRequest, slot_id: str) -> HttpResponse:
    try:
        slot = get_slot(slot_id)
    except NotFound:
        return _not_found(request)
    if request.method != "POST":
        return redirect(_slot_url(slot.id, "stats"))
    reset_slot_stats(slot_id=slot.id, actor=_actor(request), request=request)
    messages.success(
        request, f"Statistics of “{slot.name}” start afresh from now (jobs and results are kept)."
    )
    return redirect(_slot_url(slot.id, "stats"))


# --- test runs -----------------------------------------------------------------------------------
@requires_scope("slots:write")
def try_slot(request: HttpRequest, slot_id: str) -> HttpResponse:
    """Queue a test run of the slot with a photo from the browser, then show its job."""
    try:
        slot = get_slot(slot_id)
    except NotFound:
        return _not_found(request)
    if request.method != "POST":
        return redirect(_slot_url(slot.id, "try"))
    photo = request.FILES.get("photo")
    try:
        job = start_test_run(
            TestPhoto(
                slot_id=slot.id,
                photo=photo,
                photo_size=int(photo.size or 0) if photo is not None else 0,
                photo_name=(photo.name or "") if photo is not None else "",
                requested_by=_actor(request),
            ),
            max_upload_bytes=media_service.max_upload_bytes(),
        )
    except PhotoboothError as error:
        messages.error(request, f"Test run not started: {_explain(error)}")
        return redirect(_slot_url(slot.id, "try"))
    finally:
        if photo is not None:
            photo.close()
    return redirect("dashboard-slot-try-result", slot_id=slot.id, job_id=job.id)


def _slot_job(slot_id: str, job_id: uuid.UUID) -> tuple[Slot, JobDetail]:
    """The slot and one of its jobs; NotFound when either is unknown (or they do not match)."""
    slot = get_slot(slot_id)
    detail = job_detail(job_id)
    if detail.slot_id != slot.id:
        raise NotFound("No such job for this slot.", code="job_not_found")
    return slot, detail


def _run_state(detail: JobDetail) -> dict[str, Any]:
    """A test run's state in words (for the page and its status route)."""
    done = detail.is_finalized or detail.deadline.is_expired
    if detail.status == SUCCEEDED:
        text = "Done."
    elif detail.status == FAILED:
        reason = detail.failure_reason or ""
        text = FAILURE_MESSAGES.get(reason, "The job failed.")
    elif detail.deadline.is_expired:
        text = "The deadline passed before the photo was processed; it will end as a timeout."
    elif detail.status == PROCESSING:
        text = "Processing…"
    else:
        text = "Waiting for a worker…"
    return {"status": detail.status, "done": done, "text": text}


@requires_scope("slots:read")
@require_safe
def try_result(request: HttpRequest, slot_id: str, job_id: uuid.UUID) -> HttpResponse:
    try:
        slot, detail = _slot_job(slot_id, job_id)
    except NotFound:
        return _not_found(request)
    state = _run_state(detail)
    context = {
        "nav": "slots",
        "slot": slot,
        "job": detail,
        "state": state,
        "refresh_seconds": TRY_REFRESH_SECONDS,
        "status_url": reverse(
            "dashboard-slot-try-status", kwargs={"slot_id": slot.id, "job_id": detail.id}
        ),
        "thumbnail_path": reverse("public-result-thumbnail", kwargs={"job_id": detail.id}),
        "thumbnail_url": links.result_thumbnail_url(detail.id),
        "download_url": links.result_download_url(detail.id),
        "guest_url": links.guest_result_url(detail.id),
    }
    response = render(request, "adminui/slot_try.html", context)
    response["Cache-Control"] = "no-store"
    return response


@requires_scope("slots:read")
@require_safe
def try_status(request: HttpRequest, slot_id: str, job_id: uuid.UUID) -> HttpResponse:
    """The test run's state as JSON, polled by slot.js until it is done."""
    try:
        _, detail = _slot_job(slot_id, job_id)
    except NotFound:
        return JsonResponse({"error": "not_found"}, status=404)
    response = JsonResponse(
        {
            "job_id": str(detail.id),
            **_run_state(detail),
            "failure_reason": detail.failure_reason,
            "remaining_ms": detail.deadline.remaining_ms,
        }
    )
    response["Cache-Control"] = "no-store"
    return response


urlpatterns = [
    path("dashboard/slots/<str:slot_id>", slot_page, name="dashboard-slot"),
    path("dashboard/slots/<str:slot_id>/configure", configure, name="dashboard-slot-configure"),
    path(
        "dashboard/slots/<str:slot_id>/templates/<str:setting_key>/upload",
        upload_template,
        name="dashboard-slot-template-upload",
    ),
    path(
        "dashboard/slots/<str:slot_id>/templates/<str:setting_key>/remove",
        remove_template,
        name="dashboard-slot-template-remove",
    ),
    path(
        "dashboard/slots/<str:slot_id>/reset-stats", reset_stats, name="dashboard-slot-reset-stats"
    ),
    path("dashboard/slots/<str:slot_id>/try", try_slot, name="dashboard-slot-try"),
    path(
        "dashboard/slots/<str:slot_id>/try/<uuid:job_id>",
        try_result,
        name="dashboard-slot-try-result",
    ),
    path(
        "dashboard/slots/<str:slot_id>/try/<uuid:job_id>/status",
        try_status,
        name="dashboard-slot-try-status",
    ),
    path(
        "dashboard/templates/<uuid:template_id>/file",
        template_file,
        name="dashboard-template-file",
    ),
]
