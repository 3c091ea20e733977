"""Create the 15 static slots and the settings row. Slots are never created or deleted by users."""

from django.db import migrations

SLOT_COUNT = 15


def create_slots(apps, schema_editor):
    Slot = apps.get_model("ingest", "Slot")
    IngestSettings = apps.get_model("ingest", "IngestSettings")
    for number in range(1, SLOT_COUNT + 1):
        Slot.objects.get_or_create(
            id=f"slot-{number:03d}",
            defaults={
                "name": f"Slot {number}",
                "provider_id": "local",
                "operation_id": "photo_look",
                "settings_json": {"look": "vintage", "jpeg_quality": 90},
                # slot-001 works out of the box; the others wait for an operator to set them up.
                "is_active": number == 1,
            },
        )
    IngestSettings.objects.get_or_create(id=1)


class Migration(migrations.Migration):
    dependencies = [("ingest", "0001_initial")]

    operations = [migrations.RunPython(create_slots, migrations.RunPython.noop)]
