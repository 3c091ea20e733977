"""POST /ingest/<slot_id> and the public result and media downloads."""

from __future__ import annotations

import io
import logging
import uuid
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import DatabaseError
from django.http import FileResponse, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from PIL import Image, ImageOps

from ingest.services import (
    FILE_FIELD,
    PASSWORD_FAILURE_CODES,
    PASSWORD_FIELD,
    IngestUpload,
    accept_photo,
    record_ingest_password_failure,
    refuse_throttled_address,
)
from jobqueue import deadlines, files
from jobqueue.connections import in_thread
from jobqueue.models import FailureReason, Job, MediaObject
from jobqueue.waiter import Registration, waiter_for_this_loop
from photobooth import metrics
from photobooth.body_guard import RECEIVED_AT_SCOPE_KEY
from photobooth.errors import (
    BadRequest,
    DatabaseUnavailable,
    DeadlineReached,
    Gone,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    PhotoboothError,
    ProviderFailed,
    Unauthorized,
    error_response,
)

logger = logging.getLogger(__name__)


@csrf_exempt
@metrics.observe_ingest
async def ingest(request: HttpRequest, slot_id: str) -> HttpResponse:
    """Accept a photo, queue its job and answer with the result, or an error, by the deadline."""
    if request.method != "POST":
        return error_response(
            MethodNotAllowed("Send the photo with POST.", headers={"Allow": "POST"})
        )
    job_id = uuid.uuid4()
    # Registered before the job exists, so that no finalization can slip past the waiter.
    registration = waiter_for_this_loop().register(job_id)
    try:
        return await _ingest_and_wait(request, slot_id, job_id, registration)
    finally:
        registration.cancel()


async def _ingest_and_wait(
    request: HttpRequest, slot_id: str, job_id: uuid.UUID, registration: Registration
) -> HttpResponse:
    try:
        job = await in_thread(_accept)(request, slot_id, job_id)
    except PhotoboothError as error:
        logger.info(
            "ingest refused",
            extra={"slot_id": slot_id, "status": error.status, "code": error.code},
        )
        return error_response(error)
    except DatabaseError:
        logger.exception("ingest failed: database unavailable", extra={"slot_id": slot_id})
        return error_response(DatabaseUnavailable())
    except Exception:
        logger.exception("ingest failed", extra={"slot_id": slot_id})
        return error_response(PhotoboothError())
    try:
        timed_out_here = await _wait_for_finalization(job, registration)
    except DatabaseError:
        # The deadline has been reached but the job could not be marked: the reaper will
        # finalize it as timeout. The booth still gets its answer in time.
        logger.warning("could not finalize an expired job", extra={"job_id": str(job.id)})
        return error_response(_deadline_reached(job))
    if timed_out_here:
        # No need to read the job back: at the deadline every booth must be answered at once.
        response = error_response(_deadline_reached(job))
        response["X-Job-Id"] = str(job.id)
        return response
    return await in_thread(_answer)(job.id)


async def _wait_for_finalization(job: Job, registration: Registration) -> bool:
    """Return once the job is finalized — at the latest at its deadline, as a timeout.

    True when this request finalized it as timeout itself (its answer is then known: 504).
    """
    while True:
        remaining = deadlines.remaining(deadline=job.expires_at, now=timezone.now())
        if await registration.wait(timeout=remaining.total_seconds()):
            return False
        if await registration.waiter.expire(job.id):
            return True
        if deadlines.is_expired(deadline=job.expires_at, now=timezone.now()):
            return False  # expired yet not ours to finalize: someone else finalized it just now
        # Woken a moment before the deadline (timer granularity): wait the remainder.


def _deadline_reached(job: Job) -> DeadlineReached:
    return DeadlineReached(
        "The photo was not processed in time.",
        details={"job_id": str(job.id), "expires_at": job.expires_at.isoformat()},
    )


def _accept(request: HttpRequest, slot_id: str, job_id: uuid.UUID) -> Job:
    refuse_throttled_address(request)
    upload = _parse(request, slot_id)
    try:
        return accept_photo(
            upload, max_upload_bytes=settings.INGEST_MAX_UPLOAD_BYTES, job_id=job_id
        )
    except Unauthorized as refused:
        if refused.code in PASSWORD_FAILURE_CODES:
            record_ingest_password_failure(slot_id=slot_id, code=refused.code, request=request)
        raise
    finally:
        if upload.photo is not None:
            upload.photo.close()


def _parse(request: HttpRequest, slot_id: str) -> IngestUpload:
    received_at = _received_at(request)
    if not (request.content_type or "").startswith("multipart/form-data"):
        raise BadRequest(
            "Send the photo as multipart/form-data.",
            code="expected_multipart",
            details={"content_type": request.content_type},
        )
    try:
        post, uploaded = request.POST, request.FILES
    except RequestDataTooBig as error:
        raise PayloadTooLarge("The form fields are too large.") from error
    except (MultiPartParserError, SuspiciousOperation) as error:
        raise BadRequest("The multipart body is malformed.", code="malformed_multipart") from error
    photo = uploaded.get(FILE_FIELD)
    fields = {}
    for key in post:
        if key == PASSWORD_FIELD:
            continue
        # NUL characters cannot be stored (PostgreSQL text/JSON): dropped from the booth's fields.
        values = [value.replace("\x00", "") for value in post.getlist(key)]
        fields[key.replace("\x00", "")] = values[0] if len(values) == 1 else values
    return IngestUpload(
        slot_id=slot_id,
        password=post.get(PASSWORD_FIELD, ""),
        photo=photo,
        photo_size=(photo.size or 0) if photo is not None else 0,
        photo_name=(photo.name or "") if photo is not None else "",
        fields=fields,
        received_at=received_at,
    )


def _received_at(request: HttpRequest) -> datetime:
    # The ASGI layer notes when the request's headers arrived, so the deadline also covers the
    # upload itself; without it (tests, WSGI) the view's start is used.
    scope = getattr(request, "scope", None) or {}
    started = scope.get(RECEIVED_AT_SCOPE_KEY)
    if started is None:
        return timezone.now()
    return datetime.fromtimestamp(started, tz=UTC)


def _answer(job_id: uuid.UUID) -> HttpResponse:
    try:
        job = Job.objects.get(id=job_id)
    except DatabaseError:
        logger.exception("could not read a finished job", extra={"job_id": str(job_id)})
        return error_response(DatabaseUnavailable())
    if job.succeeded and files.exists(job.result_path):
        # The booth needs the whole image anyway; one buffer gives it a Content-Length.
        response = HttpResponse(files.read_bytes(job.result_path), content_type=job.result_mime)
        response["Cache-Control"] = "no-store"
        response["X-Job-Id"] = str(job.id)
        return response
    error: PhotoboothError
    if job.failure_reason == FailureReason.TIMEOUT or not job.is_finalized:
        error = _deadline_reached(job)
    elif job.failure_reason == FailureReason.PROVIDER_ERROR:
        error = ProviderFailed(details={"job_id": str(job.id)})
    else:
        error = PhotoboothError(details={"job_id": str(job.id)})
    response = error_response(error)
    response["X-Job-Id"] = str(job.id)
    return response


@require_GET
def public_result(request: HttpRequest, job_id: uuid.UUID) -> HttpResponseBase:
    """A finished job's result for guests: attachment until retention ends, then 410."""
    job = Job.objects.filter(id=job_id, is_finalized=True, failure_reason__isnull=True).first()
    if job is None:
        return error_response(NotFound("No result with this id.", code="result_not_found"))
    if job.result_expires_at is None or job.result_expires_at <= timezone.now():
        return error_response(Gone("This photo has expired.", code="result_expired"))
    if not files.exists(job.result_path):
        return error_response(Gone("This photo has expired.", code="result_expired"))
    extension = files.EXTENSIONS.get(job.result_mime, "bin")
    response = FileResponse(
        files.open_file(job.result_path),
        content_type=job.result_mime,
        as_attachment=True,
        filename=f"photo-{job.id}.{extension}",
    )
    response["Cache-Control"] = "private, no-store"
    return response


# Result previews: longest side in pixels, and how long browsers and proxies may keep one.
THUMBNAIL_MAX_SIDE = 320
THUMBNAIL_MAX_AGE_SECONDS = 3600


@require_GET
def public_result_thumbnail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponseBase:
    """A small JPEG preview of a finished job's result (at most 320 px on its long side).

    Available exactly as long as the result itself: 404 for unknown or unsuccessful jobs, 410
    once expired, 404 when the result is not an image the server can read (e.g. HEIC).
    Cacheable for an hour, but never past the result's expiry.
    """
    job = Job.objects.filter(id=job_id, is_finalized=True, failure_reason__isnull=True).first()
    if job is None:
        return error_response(NotFound("No result with this id.", code="result_not_found"))
    now = timezone.now()
    if job.result_expires_at is None or job.result_expires_at <= now:
        return error_response(Gone("This photo has expired.", code="result_expired"))
    if not files.exists(job.result_path):
        return error_response(Gone("This photo has expired.", code="result_expired"))
    preview = _thumbnail_jpeg(job.result_path)
    if preview is None:
        return error_response(
            NotFound("No preview can be made of this result.", code="thumbnail_unavailable")
        )
    remaining = int((job.result_expires_at - now).total_seconds())
    response = HttpResponse(preview, content_type="image/jpeg")
    response["Cache-Control"] = (
        f"public, max-age={max(0, min(THUMBNAIL_MAX_AGE_SECONDS, remaining))}"
    )
    response["X-Content-Type-Options"] = "nosniff"
    return response


def _thumbnail_jpeg(path: str) -> bytes | None:
    """A stored image shrunk to THUMBNAIL_MAX_SIDE as JPEG bytes; None if it cannot be read."""
    box = (THUMBNAIL_MAX_SIDE, THUMBNAIL_MAX_SIDE)
    try:
        with files.open_file(path) as handle, Image.open(handle) as image:
            width, height = image.size
            if width * height > settings.INGEST_MAX_IMAGE_PIXELS:
                return None
            if image.format == "JPEG":
                image.draft("RGB", box)  # decode at 1/2 … 1/8 scale: far less work and memory
            image.thumbnail(box)
            upright = ImageOps.exif_transpose(image)
            flat = _flatten_to_rgb(upright)
            buffer = io.BytesIO()
            flat.save(buffer, format="JPEG", quality=82, optimize=True)
            return buffer.getvalue()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return None


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB for JPEG: transparent areas become white instead of black."""
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


@require_GET
def public_media(request: HttpRequest, media_id: uuid.UUID) -> HttpResponseBase:
    """A temporary media file for providers: 200 until it expires, then 410."""
    media = MediaObject.objects.filter(id=media_id).first()
    if media is None:
        return error_response(NotFound("No media with this id.", code="media_not_found"))
    if media.expires_at <= timezone.now() or not files.exists(media.path):
        return error_response(Gone("This link has expired.", code="media_expired"))
    response = FileResponse(files.open_file(media.path), content_type=media.mime)
    response["Cache-Control"] = "no-store"
    return response
