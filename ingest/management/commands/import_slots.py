"""`python manage.py import_slots FILE`: restore slots and their templates from `export_slots`.

All or nothing. The whole file is checked before anything is written: its shape, every slot
(it must exist here — slots are never created — and its provider, operation and settings must
be valid on this installation), every template (base64 that decodes, the declared size and
SHA-256, a JPEG/PNG/WebP image that opens, within INGEST_MAX_UPLOAD_BYTES) and every template
setting (it must name a template in the file, or one already in this library). Any problem is
reported, all of them at once, and the command exits with status 1 having changed nothing.

Then, in one transaction: templates are added to the library — a template whose content (SHA-256
and type) is already there is reused instead of copied — and each slot is saved through the same
validation as the admin API, its template settings pointing at the imported templates' ids
(template ids are not carried over: content is). Each slot and new template gets an audit row.
If anything fails, the transaction is rolled back and the files already stored are deleted.

Optional slot flags (`qr_stamp`, `one_at_a_time`) are applied when the file has them and left as
they are when it does not (files written before the flag existed).

`--dry-run` does all of that and then rolls back (and deletes the files): a clean run means the
real import will succeed. Slots in the database but not in the file are left as they are; queued
jobs keep the configuration they were queued with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import AuditEvent
from accounts.services import audit
from ingest.management.commands.export_slots import FORMAT, VERSION
from ingest.media_service import Upload, check_upload
from ingest.models import SLOT_FLAGS, Slot, TemplateMedia
from ingest.services import inspect_image, register_template, update_slot
from jobqueue import files
from photobooth.errors import PhotoboothError
from providers.base import SettingsInvalid
from providers.registry import get_provider

logger = logging.getLogger(__name__)

ACTOR = "manage.py import_slots"
SLOT_FIELDS = ("id", "name", "provider_id", "operation_id", "settings_json", "is_active")
TEMPLATE_FIELDS = ("id", "original_name", "mime", "size", "sha256", "data_base64")
NAME_MAX_LENGTH = 100


class ImportRefused(Exception):
    """The file cannot be imported; `problems` says why, one line each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class TemplateEntry:
    id: str
    original_name: str
    mime: str
    sha256: str
    data: bytes


@dataclass(frozen=True)
class SlotEntry:
    id: str
    name: str
    provider_id: str
    operation_id: str
    settings: dict[str, Any]
    is_active: bool
    flags: dict[str, bool] = field(default_factory=dict)
    # Setting key -> the template id it names (as written in the file).
    template_settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImportReport:
    slots: int
    templates_added: int
    templates_reused: int
    dry_run: bool


# --- checking ------------------------------------------------------------------------------------
def parse(document: Any) -> tuple[list[SlotEntry], dict[str, TemplateEntry]]:
    """The slots and templates of an export, every one checked; ImportRefused otherwise."""
    problems: list[str] = []
    if not isinstance(document, dict):
        raise ImportRefused(["the file is not a JSON object"])
    if document.get("format") != FORMAT or document.get("version") != VERSION:
        raise ImportRefused(
            [f"not a slot export: expected format {FORMAT!r} version {VERSION} (export_slots)"]
        )
    raw_slots, raw_templates = document.get("slots"), document.get("templates", [])
    if not isinstance(raw_slots, list) or not isinstance(raw_templates, list):
        raise ImportRefused(["'slots' and 'templates' must be lists"])
    templates: dict[str, TemplateEntry] = {}
    broken: set[str] = set()  # listed, but refused above: not reported again for each slot
    for index, raw in enumerate(raw_templates):
        entry = _template_entry(raw, f"templates[{index}]", problems)
        if entry is None:
            if isinstance(raw, dict):
                broken.add(str(raw.get("id")))
            continue
        if entry.id in templates:
            problems.append(f"templates[{index}]: template id {entry.id!r} appears twice")
        templates[entry.id] = entry
    slots: list[SlotEntry] = []
    seen: set[str] = set()
    existing = set(Slot.objects.values_list("id", flat=True))
    for index, raw in enumerate(raw_slots):
        slot = _slot_entry(raw, f"slots[{index}]", problems)
        if slot is None:
            continue
        where = f"slots[{index}] ({slot.id})"
        if slot.id in seen:
            problems.append(f"{where}: the slot appears twice")
        seen.add(slot.id)
        if slot.id not in existing:
            problems.append(f"{where}: no such slot here (slots are never created)")
        for key, template_id in slot.template_settings.items():
            if template_id in broken:
                continue
            if template_id not in templates and not _in_library(template_id):
                problems.append(
                    f"{where}: settings_json.{key}: template {template_id!r} is neither in the "
                    "file nor in this installation's library"
                )
        slots.append(slot)
    if problems:
        raise ImportRefused(problems)
    return slots, templates


def _missing(raw: Mapping[str, Any], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if name not in raw]


def _template_entry(raw: Any, where: str, problems: list[str]) -> TemplateEntry | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object")
        return None
    missing = _missing(raw, TEMPLATE_FIELDS)
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return None
    template_id, name, mime = raw["id"], raw["original_name"], raw["mime"]
    if not all(isinstance(value, str) for value in (template_id, name, mime, raw["sha256"])):
        problems.append(f"{where}: id, original_name, mime and sha256 must be strings")
        return None
    where = f"{where} ({template_id})"
    try:
        data = base64.b64decode(str(raw["data_base64"]), validate=True)
    except (binascii.Error, ValueError):
        problems.append(f"{where}: data_base64 is not valid base64")
        return None
    if raw["size"] != len(data):
        problems.append(f"{where}: {len(data)} bytes, but the file says {raw['size']}")
        return None
    if hashlib.sha256(data).hexdigest() != raw["sha256"].lower():
        problems.append(f"{where}: the image does not match its sha256 (damaged or edited)")
        return None
    try:
        detected = check_upload(Upload(stream=io.BytesIO(data), size=len(data), name=name))
        inspect_image(io.BytesIO(data))
    except PhotoboothError as refused:
        problems.append(f"{where}: {refused.message}")
        return None
    if mime != detected:
        problems.append(f"{where}: declared {mime}, but the image is {detected}")
        return None
    return TemplateEntry(
        id=template_id, original_name=name, mime=detected, sha256=raw["sha256"].lower(), data=data
    )


def _slot_entry(raw: Any, where: str, problems: list[str]) -> SlotEntry | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object")
        return None
    missing = _missing(raw, SLOT_FIELDS)
    if missing:
        problems.append(f"{where}: missing {', '.join(missing)}")
        return None
    texts = [raw[name] for name in ("id", "name", "provider_id", "operation_id")]
    if not all(isinstance(value, str) for value in texts):
        problems.append(f"{where}: id, name, provider_id and operation_id must be strings")
        return None
    where = f"{where} ({raw['id']})"
    count = len(problems)
    if not 0 < len(raw["name"]) <= NAME_MAX_LENGTH:
        problems.append(f"{where}: name must be 1 to {NAME_MAX_LENGTH} characters")
    for name in ("is_active", *(flag for flag in SLOT_FLAGS if flag in raw)):
        if not isinstance(raw[name], bool):
            problems.append(f"{where}: {name} must be true or false")
    if not isinstance(raw["settings_json"], dict):
        problems.append(f"{where}: settings_json must be an object")
        return None
    try:
        provider = get_provider(raw["provider_id"])
        operation = provider.operation(raw["operation_id"])
        cleaned = operation.clean_settings(raw["settings_json"])
    except SettingsInvalid as invalid:
        problems.extend(
            f"{where}: {key}: {'; '.join(messages)}" for key, messages in invalid.errors.items()
        )
        return None
    if len(problems) > count:
        return None
    return SlotEntry(
        id=raw["id"],
        name=raw["name"],
        provider_id=raw["provider_id"],
        operation_id=raw["operation_id"],
        settings=dict(raw["settings_json"]),
        is_active=raw["is_active"],
        flags={flag: raw[flag] for flag in SLOT_FLAGS if flag in raw},
        template_settings={
            key: str(cleaned[key]) for key in operation.template_keys() if cleaned.get(key)
        },
    )


def _in_library(template_id: str) -> bool:
    try:
        key = uuid.UUID(template_id)
    except ValueError:
        return False
    return TemplateMedia.objects.filter(id=key).exists()


# --- writing -------------------------------------------------------------------------------------
class _DryRunDone(Exception):
    """Raised at the end of a dry run to roll its transaction back."""


def import_slots(document: Any, *, dry_run: bool = False) -> ImportReport:
    """Check the export, then apply it in one transaction (rolled back for a dry run)."""
    slots, templates = parse(document)
    stored: list[str] = []
    counts = {"added": 0, "reused": 0}
    try:
        with transaction.atomic():
            ids = {
                entry.id: _import_template(entry, stored, counts) for entry in templates.values()
            }
            for slot in slots:
                _import_slot(slot, ids)
            if dry_run:
                raise _DryRunDone
    except _DryRunDone:
        _delete(stored)
    except (SettingsInvalid, PhotoboothError) as refused:
        _delete(stored)
        message = str(refused) if isinstance(refused, SettingsInvalid) else refused.message
        raise ImportRefused([message]) from refused
    except BaseException:
        _delete(stored)
        raise
    report = ImportReport(
        slots=len(slots),
        templates_added=counts["added"],
        templates_reused=counts["reused"],
        dry_run=dry_run,
    )
    logger.info(
        "slots imported" if not dry_run else "slot import checked (dry run)",
        extra={
            "slots": report.slots,
            "templates_added": report.templates_added,
            "templates_reused": report.templates_reused,
        },
    )
    return report


def _import_template(entry: TemplateEntry, stored: list[str], counts: dict[str, int]) -> str:
    """The id of the library template with this content: an existing one, or a new one."""
    for candidate in TemplateMedia.objects.filter(sha256=entry.sha256, mime=entry.mime):
        if files.exists(candidate.path):
            counts["reused"] += 1
            return str(candidate.id)
    template = register_template(stream=io.BytesIO(entry.data), original_name=entry.original_name)
    stored.append(template.path)
    counts["added"] += 1
    audit(
        AuditEvent.Kind.TEMPLATE_CHANGED,
        actor=ACTOR,
        details={
            "action": "imported",
            "template_id": str(template.id),
            "mime": template.mime,
            "size": template.size,
        },
    )
    return str(template.id)


def _import_slot(slot: SlotEntry, ids: Mapping[str, str]) -> None:
    settings = dict(slot.settings)
    for key, template_id in slot.template_settings.items():
        settings[key] = ids.get(template_id, template_id)
    try:
        update_slot(
            slot_id=slot.id,
            provider_id=slot.provider_id,
            operation_id=slot.operation_id,
            settings=settings,
            is_active=slot.is_active,
            name=slot.name,
        )
    except SettingsInvalid as invalid:
        raise SettingsInvalid(
            {f"{slot.id}.{key}": messages for key, messages in invalid.errors.items()}
        ) from invalid
    if slot.flags:
        Slot.objects.filter(id=slot.id).update(**slot.flags)
    audit(
        AuditEvent.Kind.SLOT_CHANGED,
        actor=ACTOR,
        details={"slot_id": slot.id, "action": "imported"},
    )


def _delete(paths: list[str]) -> None:
    for path in paths:
        files.delete_quietly(path)


# --- the command ---------------------------------------------------------------------------------
class Command(BaseCommand):
    help = (
        "Import slots and templates from an export_slots file: everything is checked first, "
        "then applied in one transaction; on any problem nothing is changed (exit status 1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The export_slots file ('-' for standard input).")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Check everything and report what would change, then change nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        document = self._read(options["file"])
        try:
            report = import_slots(document, dry_run=options["dry_run"])
        except ImportRefused as refused:
            raise CommandError(
                "nothing was imported:\n" + "\n".join(f"  - {p}" for p in refused.problems)
            ) from refused
        summary = (
            f"{report.slots} slots, {report.templates_added + report.templates_reused} templates "
            f"({report.templates_added} new, {report.templates_reused} already in the library)"
        )
        if report.dry_run:
            self.stdout.write(f"dry run: valid; would import {summary}. Nothing was changed.")
        else:
            self.stdout.write(f"imported {summary}")

    def _read(self, name: str) -> Any:
        try:
            if name == "-":
                text = sys.stdin.read()
            else:
                with open(name, encoding="utf-8") as handle:
                    text = handle.read()
        except OSError as error:
            raise CommandError(f"cannot read {name}: {error.strerror or error}") from error
        except UnicodeDecodeError as error:
            raise CommandError(f"{name} is not UTF-8 text") from error
        try:
            return json.loads(text)
        except ValueError as error:
            raise CommandError(f"{name} is not valid JSON: {error}") from error
