"""Every retained result of a slot or a time range as one ZIP file, produced as a stream.

The archive is never held whole, in memory or on disk: `zipfile` writes into `_Outbox`, a
write-only, unseekable buffer that is emptied after every chunk, so at most one read chunk
(READ_CHUNK_BYTES) plus a few headers are in memory at a time, whatever the archive's size.
Without seeking back, zipfile puts each entry's CRC and sizes in a data descriptor after its
bytes; Zip64 fields are always written, so an entry or an archive past 4 GiB needs nothing
special. Entries are stored, not deflated: results are JPEG, PNG or WebP, already compressed.

Jobs are read in short keyset-paginated queries (BATCH_SIZE rows each, by `created_at` then
`id`), not through one open cursor: the query holds no database connection between batches
while a slow client downloads gigabytes, and under ASGI each step may run on another thread.
Files are read through Django's storage API, so a local folder and S3 work alike. A file gone
between the query and the read (expired and cleaned up meanwhile) is left out of the archive and
logged; the archive stays valid.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
import zipfile
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO

from asgiref.sync import sync_to_async
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.utils import timezone

from jobqueue import files
from jobqueue.connections import in_thread
from jobqueue.models import Job
from jobqueue.selectors import retained_results
from photobooth.errors import BadRequest

logger = logging.getLogger(__name__)

# How much of a result file is read (and sent on) at a time.
READ_CHUNK_BYTES = 1024 * 1024
# How many jobs one query reads.
BATCH_SIZE = 200
# The time in entry names and download file names (always UTC).
NAME_TIME_FORMAT = "%Y%m%d-%H%M%S"
# rw-r--r-- for the extracted files (the upper 16 bits of external_attr are Unix mode bits).
_FILE_MODE = 0o100644 << 16
# ZIP stores local times from 1980 on; an earlier (impossible) time is clamped.
_EARLIEST_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class ResultSelection:
    """Which results an archive holds: one slot or all, created in [since, until), still
    retained at `now`."""

    slot_id: str | None
    since: datetime | None
    until: datetime | None
    now: datetime


@dataclass(frozen=True)
class ArchiveSummary:
    """How many results a selection holds and their total size in bytes."""

    file_count: int
    total_bytes: int
    first_created_at: datetime | None
    last_created_at: datetime | None


@dataclass(frozen=True)
class ArchiveEntry:
    """One result file and its name inside the archive."""

    job_id: uuid.UUID
    name: str
    path: str
    created_at: datetime


def select_results(
    *,
    slot_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    now: datetime | None = None,
) -> ResultSelection:
    """The selection, or BadRequest (400 `invalid_parameter`) unless `since` is before `until`."""
    if since is not None and until is not None and since >= until:
        raise BadRequest(
            "The end of the range must be later than its start.",
            code="invalid_parameter",
            details={"until": ["Must be later than the start of the range."]},
        )
    return ResultSelection(slot_id=slot_id, since=since, until=until, now=now or timezone.now())


def _retained(selection: ResultSelection) -> QuerySet[Job]:
    """Succeeded jobs whose result file is still kept, within the selection."""
    jobs = retained_results(now=selection.now)
    if selection.slot_id is not None:
        jobs = jobs.filter(slot_id=selection.slot_id)
    if selection.since is not None:
        jobs = jobs.filter(created_at__gte=selection.since)
    if selection.until is not None:
        jobs = jobs.filter(created_at__lt=selection.until)
    return jobs


def archive_summary(selection: ResultSelection) -> ArchiveSummary:
    """Count and total size of the selected results, in one aggregate query."""
    found = _retained(selection).aggregate(
        file_count=Count("id"),
        total_bytes=Sum("result_size"),
        first_created_at=Min("created_at"),
        last_created_at=Max("created_at"),
    )
    return ArchiveSummary(
        file_count=found["file_count"],
        total_bytes=found["total_bytes"] or 0,
        first_created_at=found["first_created_at"],
        last_created_at=found["last_created_at"],
    )


def safe_name_part(text: str) -> str:
    """Text for a file or folder name: letters, digits, '.', '_' and '-' only."""
    cleaned = _UNSAFE_NAME_CHARACTERS.sub("_", text).strip(".")
    return cleaned or "_"


def name_time(moment: datetime) -> str:
    """A moment as it appears in names: UTC, YYYYMMDD-HHMMSS."""
    return moment.astimezone(UTC).strftime(NAME_TIME_FORMAT)


def entry_name(*, slot_id: str, created_at: datetime, job_id: uuid.UUID, mime: str) -> str:
    """`<slot id>/<UTC YYYYMMDD-HHMMSS>_<job id>.<extension>`, from our own values only."""
    extension = files.EXTENSIONS.get(mime, "bin")
    return f"{safe_name_part(slot_id)}/{name_time(created_at)}_{job_id}.{extension}"


def _entries_after(
    selection: ResultSelection, after: tuple[datetime, uuid.UUID] | None
) -> list[ArchiveEntry]:
    """The next batch of entries, oldest first, following `after` (created_at, id)."""
    jobs = _retained(selection)
    if after is not None:
        created_at, job_id = after
        jobs = jobs.filter(Q(created_at__gt=created_at) | Q(created_at=created_at, id__gt=job_id))
    rows = jobs.order_by("created_at", "id").values_list(
        "id", "slot_id", "created_at", "result_path", "result_mime"
    )[:BATCH_SIZE]
    return [
        ArchiveEntry(
            job_id=job_id,
            name=entry_name(slot_id=slot_id, created_at=created_at, job_id=job_id, mime=mime),
            path=path,
            created_at=created_at,
        )
        for job_id, slot_id, created_at, path, mime in rows
    ]


def _position(batch: list[ArchiveEntry]) -> tuple[datetime, uuid.UUID]:
    return batch[-1].created_at, batch[-1].job_id


class _Outbox:
    """Where zipfile writes: write-only and unseekable, emptied by `take()` after each step."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes, /) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the bytes wait for `take()`."""

    def close(self) -> None:
        """Nothing to do (zipfile never closes a file object it was given)."""

    def take(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    utc = moment.astimezone(UTC)
    stamp = (utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second)
    return max(stamp, _EARLIEST_ZIP_TIME)


class ResultArchive:
    """One ZIP of the selected results. Iterate `chunks()` (sync) or `async_chunks()` once.

    `files_written`, `files_skipped` and `bytes_sent` tell afterwards (or so far) what went out;
    `complete` is true once the archive's last byte was produced.
    """

    def __init__(self, selection: ResultSelection, *, chunk_size: int = READ_CHUNK_BYTES):
        self.selection = selection
        self.chunk_size = chunk_size
        self.files_written = 0
        self.files_skipped = 0
        self.bytes_sent = 0
        self.complete = False
        self._outbox = _Outbox()
        self._zip = zipfile.ZipFile(self._outbox, mode="w", compression=zipfile.ZIP_STORED)

    # --- the two ways to consume it --------------------------------------------------------------
    def chunks(self) -> Iterator[bytes]:
        """The archive's bytes, for a synchronous server (WSGI, the test client)."""
        after: tuple[datetime, uuid.UUID] | None = None
        while batch := _entries_after(self.selection, after):
            for entry in batch:
                yield from self._entry_chunks(entry)
            after = _position(batch)
        yield self._finish()

    async def async_chunks(self) -> AsyncIterator[bytes]:
        """The archive's bytes, for an asynchronous server (ASGI): database steps run in the
        request's thread with the connection handed back after each batch; file reads and
        ZIP writes run in worker threads, one chunk at a time, never blocking the event loop."""
        next_batch = in_thread(_entries_after)
        step = sync_to_async(_next_or_none, thread_sensitive=False)
        after: tuple[datetime, uuid.UUID] | None = None
        while batch := await next_batch(self.selection, after):
            for entry in batch:
                entry_chunks = self._entry_chunks(entry)
                try:
                    while (chunk := await step(entry_chunks)) is not None:
                        _stop_if_cancelled()
                        yield chunk
                finally:
                    _close_quietly(entry_chunks)  # the file, if the client went away mid-entry
            after = _position(batch)
            _stop_if_cancelled()
        yield await sync_to_async(self._finish, thread_sensitive=False)()

    # --- writing ---------------------------------------------------------------------------------
    def _sent(self, data: bytes) -> bytes:
        self.bytes_sent += len(data)
        return data

    def _entry_chunks(self, entry: ArchiveEntry) -> Generator[bytes, None, None]:
        """One entry: its local header and first chunk, then chunk after chunk, then its data
        descriptor. Nothing is written for a file that cannot be opened or read at all."""
        try:
            handle: IO[bytes] = files.open_file(entry.path)
        except OSError:
            self._skip(entry)
            return
        with handle:
            try:
                # Read before writing the header: storages that open lazily (S3) only notice a
                # missing file on the first read.
                data = handle.read(self.chunk_size)
            except OSError:
                self._skip(entry)
                return
            info = zipfile.ZipInfo(entry.name, date_time=_zip_time(entry.created_at))
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = _FILE_MODE
            with self._zip.open(info, mode="w", force_zip64=True) as member:
                while data:
                    member.write(data)
                    yield self._sent(self._outbox.take())
                    data = handle.read(self.chunk_size)
        self.files_written += 1
        trailer = self._outbox.take()
        if trailer:
            yield self._sent(trailer)

    def _skip(self, entry: ArchiveEntry) -> None:
        self.files_skipped += 1
        logger.warning(
            "result file missing, left out of the archive", extra={"job_id": str(entry.job_id)}
        )

    def _finish(self) -> bytes:
        """The central directory and end records: the archive's last bytes."""
        self._zip.close()
        self.complete = True
        return self._sent(self._outbox.take())


def _next_or_none(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


def _stop_if_cancelled() -> None:
    """Raise CancelledError if this task was cancelled (the client went away) while a step ran
    in a thread: sync_to_async lets such a step finish and then returns normally."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _close_quietly(chunks: Generator[bytes, None, None]) -> None:
    # ValueError: still running in its thread (a second cancellation); it closes when collected.
    with contextlib.suppress(ValueError):
        chunks.close()
