"""What the worker publishes: results and temporary public copies without camera metadata, and
the QR stamp on results of slots that ask for it."""

from __future__ import annotations

import dataclasses
import io
from typing import Any

import pytest
from PIL import Image

from jobqueue import files
from jobqueue.models import Job, MediaObject
from jobqueue.worker import process_job, publish_temporary_media
from providers.base import InputImage
from tests.jobqueue.test_queue_services import ECHO, acquire_one, enqueue

pytestmark = pytest.mark.django_db


def photo_with_gps() -> bytes:
    image = Image.new("RGB", (400, 300), (200, 80, 40))
    exif = Image.Exif()
    exif[0x0110] = "SerialCam 9000"
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 31.0, 12.0)})
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def run_echo_job(*, qr_stamp: bool) -> Job:
    job = enqueue(configuration=dataclasses.replace(ECHO, qr_stamp=qr_stamp))
    # The payload is a camera photo with GPS; the echo provider returns it as the "result".
    with files.open_file(job.payload_path) as handle:
        path = handle.name
    with open(path, "wb") as handle:
        handle.write(photo_with_gps())
    process_job(acquire_one(job))
    job.refresh_from_db()
    assert job.succeeded
    return job


def result_image(job: Job) -> tuple[bytes, Image.Image]:
    data = files.read_bytes(job.result_path)
    image = Image.open(io.BytesIO(data))
    image.load()
    return data, image


def test_results_are_published_without_gps_or_camera_serial() -> None:
    job = run_echo_job(qr_stamp=False)

    data, image = result_image(job)

    assert not image.getexif()
    assert b"SerialCam" not in data


def test_a_slot_with_the_qr_option_gets_a_qr_code_in_the_corner() -> None:
    plain = run_echo_job(qr_stamp=False)
    stamped = run_echo_job(qr_stamp=True)

    _, without = result_image(plain)
    _, with_qr = result_image(stamped)

    assert with_qr.size == without.size
    corner = (with_qr.width - 100, with_qr.height - 100, with_qr.width, with_qr.height)
    # The QR code is black and white where the plain result is one orange colour.
    colours = with_qr.crop(corner).convert("L").getextrema()
    assert colours[0] < 60 and colours[1] > 200
    top_left = (0, 0, 100, 100)
    assert with_qr.crop(top_left).tobytes() == without.crop(top_left).tobytes()


def test_temporary_public_copies_carry_no_metadata() -> None:
    job = enqueue()

    url = publish_temporary_media(
        job=job, image=InputImage(data=photo_with_gps(), mime="image/jpeg", name="photo")
    )

    media = MediaObject.objects.get(job=job)
    assert str(media.id) in url
    assert b"SerialCam" not in files.read_bytes(media.path)


def test_metadata_can_be_kept_when_an_operator_asks(settings: Any) -> None:
    settings.PUBLISH_KEEP_METADATA = True

    job = run_echo_job(qr_stamp=False)

    assert b"SerialCam" in files.read_bytes(job.result_path)
