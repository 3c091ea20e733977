"""`export_slots` and `import_slots`: slot configurations and their templates, moved whole.

A round trip through an emptied installation reproduces every slot and template; a file with any
problem changes nothing at all — no row, no stored file — and says what is wrong.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import AuditEvent
from ingest.management.commands import import_slots as import_module
from ingest.models import Slot, TemplateBinding, TemplateMedia
from ingest.services import register_template, set_ingest_password, update_slot
from jobqueue import files
from providers.secrets import set_api_key
from tests.support.fakes.gemini import solid_png
from tests.support.images import make_frame_png
from tests.support.stack import REPO_ROOT, process_environment

pytestmark = pytest.mark.django_db

SLOT_COUNT = 15
FRAME = make_frame_png(width=80, height=60)
STYLE = solid_png((10, 10, 200), (32, 32))


def export(*args: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("export_slots", *args, stdout=out)
    document: dict[str, Any] = json.loads(out.getvalue())
    return document


def import_file(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("import_slots", str(path), *args, stdout=out)
    return out.getvalue()


def write(tmp_path: Path, document: Any, name: str = "slots.json") -> Path:
    target = tmp_path / name
    target.write_text(json.dumps(document) if not isinstance(document, str) else document)
    return target


def configure_slots() -> dict[str, TemplateMedia]:
    """A frame on slot-002 (local), a style on slot-003 (Gemini), names, looks, activity."""
    frame = register_template(stream=io.BytesIO(FRAME), original_name="frame.png")
    style = register_template(stream=io.BytesIO(STYLE), original_name="style.png")
    update_slot(
        slot_id="slot-002",
        provider_id="local",
        operation_id="frame_overlay",
        settings={"frame_media_id": str(frame.id), "fit": "cover", "look": "sepia"},
        is_active=True,
        name="Wedding frame",
    )
    Slot.objects.filter(id="slot-002").update(qr_stamp=True, one_at_a_time=True)
    update_slot(
        slot_id="slot-003",
        provider_id="gemini",
        operation_id="style_transfer",
        settings={"style_media_id": str(style.id), "aspect_ratio": "4:3"},
        is_active=False,
        name="Van Gogh",
    )
    update_slot(
        slot_id="slot-004",
        provider_id="local",
        operation_id="photo_look",
        settings={"look": "black_and_white", "jpeg_quality": 75},
        is_active=True,
    )
    # An unused template: in the library, not in the export.
    register_template(stream=io.BytesIO(solid_png((1, 2, 3))), original_name="unused.png")
    return {"frame": frame, "style": style}


def state() -> dict[str, Any]:
    """Everything an import may change, for comparing before and after."""
    return {
        "slots": list(
            Slot.objects.order_by("id").values(
                "id",
                "name",
                "provider_id",
                "operation_id",
                "settings_json",
                "is_active",
                "qr_stamp",
                "one_at_a_time",
            )
        ),
        "templates": sorted(TemplateMedia.objects.values_list("id", "sha256", "path")),
        "bindings": sorted(
            TemplateBinding.objects.values_list("slot_id", "setting_key", "template_id")
        ),
        "audit": AuditEvent.objects.count(),
    }


def stored_templates(media_root: Path) -> list[Path]:
    folder = media_root / "templates"
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def wipe_installation() -> None:
    """What a fresh install has: the 15 seeded slots as migrations create them, no templates."""
    TemplateBinding.objects.all().delete()
    for template in TemplateMedia.objects.all():
        files.delete_quietly(template.path)
        template.delete()
    for slot in Slot.objects.all():
        number = int(slot.id.split("-")[1])
        Slot.objects.filter(id=slot.id).update(
            name=f"Slot {number}",
            provider_id="local",
            operation_id="photo_look",
            settings_json={"look": "vintage", "jpeg_quality": 90},
            is_active=number == 1,
            qr_stamp=False,
            one_at_a_time=False,
        )


def comparable_slots(document_or_db: list[dict[str, Any]], sha_of: dict[str, str]) -> list[Any]:
    """Slots with template ids replaced by their content's SHA-256 (ids are not carried over)."""
    result = []
    for slot in document_or_db:
        settings = {
            key: sha_of.get(value, value) if isinstance(value, str) else value
            for key, value in slot["settings_json"].items()
        }
        result.append({**slot, "settings_json": settings})
    return result


# --- export --------------------------------------------------------------------------------------
def test_export_lists_every_slot_and_embeds_the_templates_they_use() -> None:
    templates = configure_slots()
    set_ingest_password(password="booth-pass-never-exported", changed_by="tests")
    set_api_key("gemini", "AIza-key-never-exported", changed_by="tests")

    document = export()

    assert document["format"] == "photobooth-slots" and document["version"] == 1
    assert [slot["id"] for slot in document["slots"]] == [
        f"slot-{n:03d}" for n in range(1, SLOT_COUNT + 1)
    ]
    by_id = {slot["id"]: slot for slot in document["slots"]}
    assert by_id["slot-002"] == {
        "id": "slot-002",
        "name": "Wedding frame",
        "provider_id": "local",
        "operation_id": "frame_overlay",
        "settings_json": {
            "frame_media_id": str(templates["frame"].id),
            "fit": "cover",
            "look": "sepia",
            "jpeg_quality": 90,
        },
        "is_active": True,
        "qr_stamp": True,
        "one_at_a_time": True,
    }
    assert by_id["slot-003"]["is_active"] is False and by_id["slot-003"]["qr_stamp"] is False
    assert by_id["slot-003"]["one_at_a_time"] is False
    exported = {t["id"]: t for t in document["templates"]}
    assert set(exported) == {str(templates["frame"].id), str(templates["style"].id)}
    frame = exported[str(templates["frame"].id)]
    assert base64.b64decode(frame["data_base64"]) == FRAME
    assert frame["mime"] == "image/png" and frame["size"] == len(FRAME)
    assert frame["sha256"] == hashlib.sha256(FRAME).hexdigest()
    assert frame["original_name"] == "frame.png"
    text = json.dumps(document)
    assert "booth-pass-never-exported" not in text and "AIza-key-never-exported" not in text


def test_export_to_a_file(tmp_path: Path) -> None:
    configure_slots()
    target = tmp_path / "backup.json"
    out = io.StringIO()

    call_command("export_slots", "--output", str(target), stdout=out)

    assert "exported 15 slots and 2 templates" in out.getvalue()
    assert json.loads(target.read_text())["slots"][1]["name"] == "Wedding frame"
    assert [p.name for p in tmp_path.glob("*.json*")] == ["backup.json"]  # no temporary file


def test_export_refuses_a_template_whose_file_is_gone(media_root: Path, tmp_path: Path) -> None:
    templates = configure_slots()
    files.delete_quietly(templates["frame"].path)
    target = tmp_path / "backup.json"

    with pytest.raises(CommandError, match="cannot be read"):
        call_command("export_slots", "--output", str(target), stdout=io.StringIO())
    assert not target.exists()


# --- round trip ----------------------------------------------------------------------------------
def test_export_then_import_into_a_fresh_installation_reproduces_slots_and_templates(
    tmp_path: Path, media_root: Path
) -> None:
    configure_slots()
    document = export()
    path = write(tmp_path, document)
    wipe_installation()
    assert not TemplateMedia.objects.exists()

    output = import_file(path)

    assert output.strip() == "imported 15 slots, 2 templates (2 new, 0 already in the library)"
    sha_of = {t["id"]: t["sha256"] for t in document["templates"]}
    imported_sha = {str(t.id): t.sha256 for t in TemplateMedia.objects.all()}
    now = list(
        Slot.objects.order_by("id").values(
            "id",
            "name",
            "provider_id",
            "operation_id",
            "settings_json",
            "is_active",
            "qr_stamp",
            "one_at_a_time",
        )
    )
    assert comparable_slots(now, imported_sha) == comparable_slots(document["slots"], sha_of)
    # The templates came back whole, stored and bound where the settings point.
    for template in TemplateMedia.objects.all():
        assert files.read_bytes(template.path) in (FRAME, STYLE)
        assert template.sha256 in sha_of.values()
    frame_id = Slot.objects.get(id="slot-002").settings_json["frame_media_id"]
    binding = TemplateBinding.objects.get(slot_id="slot-002", setting_key="frame_media_id")
    assert str(binding.template_id) == frame_id
    assert TemplateMedia.objects.get(id=frame_id).original_name == "frame.png"
    assert len(stored_templates(media_root)) == 2
    kinds = list(AuditEvent.objects.values_list("kind", flat=True))
    assert kinds.count("slot_changed") == SLOT_COUNT and kinds.count("template_changed") == 2

    # A second import finds the templates in the library: nothing is copied twice.
    assert "2 templates (0 new, 2 already in the library)" in import_file(path)
    assert TemplateMedia.objects.count() == 2 and len(stored_templates(media_root)) == 2


def test_an_export_imports_onto_itself_without_changing_anything(tmp_path: Path) -> None:
    configure_slots()
    path = write(tmp_path, export())
    before = state()

    import_file(path)

    after = state()
    assert after["slots"] == before["slots"]
    assert after["templates"] == before["templates"]
    assert after["bindings"] == before["bindings"]


# --- nothing changes when something is wrong ----------------------------------------------------
def broken(document: dict[str, Any], how: str) -> dict[str, Any]:
    document = copy.deepcopy(document)
    slots = {slot["id"]: slot for slot in document["slots"]}
    if how == "unknown provider":
        slots["slot-005"]["provider_id"] = "nope"
    elif how == "unknown operation":
        slots["slot-005"]["operation_id"] = "levitate"
    elif how == "invalid setting":
        slots["slot-004"]["settings_json"]["look"] = "neon"
    elif how == "unknown slot":
        slots["slot-005"]["id"] = "slot-099"
    elif how == "slot twice":
        document["slots"].append(copy.deepcopy(slots["slot-004"]))
    elif how == "missing field":
        del slots["slot-006"]["is_active"]
    elif how == "flag not boolean":
        slots["slot-006"]["qr_stamp"] = "yes"
    elif how == "damaged template":
        document["templates"][0]["data_base64"] = "!!" + document["templates"][0]["data_base64"]
    elif how == "edited template":
        data = base64.b64decode(document["templates"][1]["data_base64"])
        document["templates"][1]["data_base64"] = base64.b64encode(data[:-1] + b"x").decode()
    elif how == "not an image":
        text = b"just some text, not a picture"
        document["templates"][0].update(
            data_base64=base64.b64encode(text).decode(),
            size=len(text),
            sha256=hashlib.sha256(text).hexdigest(),
        )
    elif how == "template missing":
        document["templates"] = document["templates"][1:]
    elif how == "wrong format":
        document["format"] = "something-else"
    return document


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("unknown provider", "slot-005): provider_id: unknown provider 'nope'"),
        ("unknown operation", "slot-005): operation_id: provider 'local' has no operation"),
        ("invalid setting", "slot-004): look: must be one of"),
        ("unknown slot", "slot-099): no such slot here"),
        ("slot twice", "slot-004): the slot appears twice"),
        ("missing field", "slots[5]: missing is_active"),
        ("flag not boolean", "slot-006): qr_stamp must be true or false"),
        ("damaged template", "data_base64 is not valid base64"),
        ("edited template", "does not match its sha256"),
        ("not an image", "Upload a JPEG, PNG or WebP image."),
        ("template missing", "is neither in the file nor in this installation's library"),
        ("wrong format", "not a slot export"),
    ],
)
def test_a_broken_file_changes_nothing_and_says_why(
    tmp_path: Path, media_root: Path, how: str, message: str
) -> None:
    configure_slots()
    document = export()
    wipe_installation()
    before = state()
    files_before = stored_templates(media_root)

    with pytest.raises(CommandError) as refused:
        import_file(write(tmp_path, broken(document, how)))

    assert str(refused.value).startswith("nothing was imported:")
    assert message in str(refused.value)
    assert state() == before
    assert stored_templates(media_root) == files_before


@pytest.mark.parametrize("flag", ["qr_stamp", "one_at_a_time"])
def test_a_file_without_a_slot_flag_leaves_it_as_it_is(tmp_path: Path, flag: str) -> None:
    configure_slots()
    document = export()
    for slot in document["slots"]:
        del slot[flag]
    Slot.objects.filter(id="slot-007").update(**{flag: True})

    import_file(write(tmp_path, document))

    assert list(Slot.objects.filter(**{flag: True}).values_list("id", flat=True)) == [
        "slot-002",
        "slot-007",
    ]


def test_unreadable_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is not valid JSON"):
        import_file(write(tmp_path, "{not json"))
    with pytest.raises(CommandError, match="cannot read"):
        import_file(tmp_path / "missing.json")
    with pytest.raises(CommandError, match="not a JSON object"):
        import_file(write(tmp_path, [1, 2]))


def test_a_failure_half_way_rolls_back_and_removes_the_stored_files(
    tmp_path: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure_slots()
    path = write(tmp_path, export())
    wipe_installation()
    before = state()
    real_update = import_module.update_slot
    calls = {"count": 0}

    def failing_update(**kwargs: Any) -> Slot:
        calls["count"] += 1
        if calls["count"] == 10:  # the templates are stored and nine slots saved by now
            raise OSError("disk full")
        return real_update(**kwargs)

    monkeypatch.setattr(import_module, "update_slot", failing_update)

    with pytest.raises(OSError, match="disk full"):
        import_file(path)

    assert state() == before
    assert stored_templates(media_root) == []


def test_dry_run_checks_everything_and_changes_nothing(tmp_path: Path, media_root: Path) -> None:
    configure_slots()
    document = export()
    wipe_installation()
    before = state()

    output = import_file(write(tmp_path, document), "--dry-run")

    assert output.strip() == (
        "dry run: valid; would import 15 slots, 2 templates (2 new, 0 already in the library). "
        "Nothing was changed."
    )
    assert state() == before
    assert stored_templates(media_root) == []
    with pytest.raises(CommandError, match="unknown provider 'nope'"):
        import_file(write(tmp_path, broken(document, "unknown provider")), "--dry-run")


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    configure_slots()
    document = broken(broken(export(), "unknown provider"), "invalid setting")
    document["slots"][0]["name"] = ""

    with pytest.raises(CommandError) as refused:
        import_file(write(tmp_path, document))

    problems = str(refused.value).splitlines()[1:]
    assert len(problems) == 3, problems


def test_the_command_exits_with_status_1_and_explains(live_db: None, tmp_path: Path) -> None:
    document = export()
    document["slots"][4]["provider_id"] = "nope"
    path = write(tmp_path, document)

    finished = subprocess.run(
        [sys.executable, "manage.py", "import_slots", str(path)],
        cwd=REPO_ROOT,
        env=process_environment(LOG_FORMAT="json"),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert finished.returncode == 1
    assert "nothing was imported" in finished.stderr
    assert "slots[4] (slot-005): provider_id: unknown provider 'nope'" in finished.stderr
    assert Slot.objects.get(id="slot-005").provider_id == "local"
