"""`python manage.py export_slots`: every slot's configuration and its template images, as JSON.

The file is self-contained (read back by `import_slots`, on this installation or another one):

    {
      "format": "photobooth-slots",
      "version": 1,
      "exported_at": "2025-01-31T12:00:00+00:00",
      "slots": [
        {"id": "slot-001", "name": "Slot 1", "provider_id": "local",
         "operation_id": "photo_look", "settings_json": {...}, "is_active": true,
         "qr_stamp": false, "one_at_a_time": false},
        ...
      ],
      "templates": [
        {"id": "<uuid>", "original_name": "frame.png", "mime": "image/png",
         "size": 12345, "sha256": "<hex>", "data_base64": "<the image>"},
        ...
      ]
    }

Every slot is exported (all 15, active or not); the templates are the ones the slots use (their
template bindings), each once, embedded as base64 with its type, size and SHA-256 so that the
import can check it arrived whole. Template settings in `settings_json` name templates by the
`id` listed here. Nothing secret is exported: no password, no provider key. The output is written
to standard output, or with `--output FILE` to a file that appears only once complete.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from ingest.models import SLOT_FLAGS, Slot, TemplateMedia
from jobqueue import files

FORMAT = "photobooth-slots"
VERSION = 1


def export_document() -> dict[str, Any]:
    """The slots and the templates they use, as the JSON document described above."""
    slots = list(Slot.objects.order_by("id").prefetch_related("template_bindings"))
    template_ids = sorted(
        {binding.template_id for slot in slots for binding in slot.template_bindings.all()},
        key=str,
    )
    templates = TemplateMedia.objects.in_bulk(template_ids)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": timezone.now().isoformat(),
        "slots": [
            {
                "id": slot.id,
                "name": slot.name,
                "provider_id": slot.provider_id,
                "operation_id": slot.operation_id,
                "settings_json": slot.settings_json,
                "is_active": slot.is_active,
                **{flag: getattr(slot, flag) for flag in SLOT_FLAGS},
            }
            for slot in slots
        ],
        "templates": [_template(templates[template_id]) for template_id in template_ids],
    }


def _template(template: TemplateMedia) -> dict[str, Any]:
    try:
        data = files.read_bytes(template.path)
    except OSError as error:
        raise CommandError(
            f"template {template.id} ({template.original_name or 'no name'}): its file "
            f"{template.path!r} cannot be read ({type(error).__name__})"
        ) from error
    sha256 = hashlib.sha256(data).hexdigest()
    if template.sha256 and sha256 != template.sha256:
        raise CommandError(
            f"template {template.id}: its file {template.path!r} no longer matches the SHA-256 "
            "recorded when it was uploaded"
        )
    return {
        "id": str(template.id),
        "original_name": template.original_name,
        "mime": template.mime,
        "size": len(data),
        "sha256": sha256,
        "data_base64": base64.b64encode(data).decode("ascii"),
    }


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path`, which appears only once complete."""
    path = path.resolve()
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Command(BaseCommand):
    help = (
        "Export every slot's configuration and the template images the slots use as one JSON "
        "document (templates embedded as base64 with their SHA-256), for import_slots."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", "-o", default="-", help="File to write (default: standard output)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        document = export_document()
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if options["output"] == "-":
            self.stdout.write(text, ending="")
            return
        output = Path(options["output"])
        try:
            write_atomically(output, text)
        except OSError as error:
            raise CommandError(f"cannot write {output}: {error.strerror or error}") from error
        self.stdout.write(
            f"exported {len(document['slots'])} slots and {len(document['templates'])} "
            f"templates to {output}"
        )
