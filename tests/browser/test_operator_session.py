"""An operator's session in a real browser: log in, set up a slot, try it, share the result,
rotate the booth password, and a phone-sized screen. Each test starts from a fresh database
and its own uvicorn + run_workers processes."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from django.utils import timezone

from jobqueue.models import Job
from tests.browser.conftest import (
    PHONE,
    Site,
    Watcher,
    configure_frame_slot,
    expect,
    expect_image_loaded,
    horizontal_overflow,
    in_db_thread,
    save_screenshot,
    sign_in,
    try_slot,
)
from tests.support.images import make_frame_png, make_photo, open_image

if TYPE_CHECKING:
    from playwright.sync_api import Page

SLOT_COUNT = 15
MIN_TARGET_PX = 24


def expire_result(job_id: str) -> None:
    """Time moves on past the result's retention (the one thing these tests fake)."""
    updated = Job.objects.filter(id=job_id).update(
        result_expires_at=timezone.now() - timedelta(minutes=1)
    )
    assert updated == 1


def is_magenta(pixel: tuple[int, ...]) -> bool:
    red, green, blue = pixel[:3]
    return red > 200 and green < 70 and blue > 200


# --- 1 -------------------------------------------------------------------------------------------
def test_operator_logs_in_and_sees_the_15_slots(page: Page, site: Site, watcher: Watcher) -> None:
    page.goto("/dashboard/")
    expect(page).to_have_url(re.compile(r"/dashboard/login\?next=/dashboard/$"))
    expect(page.locator("h1")).to_have_text("Log in")
    save_screenshot(page, "login")

    watcher.expect_status(401, "/dashboard/login")
    page.fill("#username", site.username)
    page.fill("#password", "not the password")
    with page.expect_response(site.url("/dashboard/login")) as refused:
        page.click("main button[type=submit]")
    assert refused.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    expect(page.locator("#username")).to_have_value(site.username)
    expect(page.locator("#password")).to_have_value("")

    page.fill("#password", site.password)
    page.click("main button[type=submit]")
    expect(page).to_have_url(site.url("/dashboard/"))
    cards = page.locator("ul.cards > li.card.slot")
    expect(cards).to_have_count(SLOT_COUNT)
    expected_ids = [f"slot-{number:03d}" for number in range(1, SLOT_COUNT + 1)]
    assert [cards.nth(i).get_attribute("data-slot") for i in range(SLOT_COUNT)] == expected_ids
    expect(page.locator("header .who")).to_have_text(site.username)
    expect(page.locator('li.card.slot[data-slot="slot-001"] .badge')).to_have_text("active")


# --- 2 -------------------------------------------------------------------------------------------
def test_operator_configures_a_frame_overlay_slot(
    admin_page: Page, site: Site, tmp_path: Path
) -> None:
    page = admin_page
    frame = tmp_path / "event-frame.png"
    frame.write_bytes(make_frame_png())

    page.goto("/dashboard/slots/slot-002")
    expect(page.locator("#slot-state")).to_have_text("inactive")
    expect(page.locator("#id_setting-frame_media_id-upload")).to_have_count(0)
    # The provider is already the local one: choosing it again changes nothing.
    page.select_option("#id_provider", "local")
    # Another operation: slot.js presses "Change provider/operation" and the page comes back
    # with that operation's settings (nothing saved yet).
    with page.expect_navigation():
        page.select_option("#id_operation", "frame_overlay")
    expect(page.locator("#settings-title")).to_contain_text("Frame or logo overlay")
    expect(page.locator("ul.messages")).to_contain_text("Nothing is saved until you press Save")
    expect(page.locator("#slot-state")).to_have_text("inactive")

    page.set_input_files("#id_setting-frame_media_id-upload", frame)
    page.select_option("#id_setting-fit", "cover")
    page.select_option("#id_setting-look", "sepia")
    page.check("#id_is_active")
    with page.expect_navigation():
        page.click("#save-slot")

    expect(page).to_have_url(site.url("/dashboard/slots/slot-002"))
    expect(page.locator("ul.messages li.success")).to_have_text(
        "Saved “Slot 2”. The slot is active: booths may send photos."
    )
    expect(page.locator("#slot-state")).to_have_text("active")
    expect(page.locator("#id_operation")).to_have_value("frame_overlay")
    expect(page.locator("#id_setting-fit")).to_have_value("cover")
    expect(page.locator("#id_setting-look")).to_have_value("sepia")
    expect(page.locator("#id_is_active")).to_be_checked()
    # The uploaded frame is the slot's template, previewed in the form and in "Templates".
    expect(page.locator("#id_setting-frame_media_id option:checked")).not_to_have_text("— none —")
    for preview in ("#id_setting-frame_media_id_preview", "#template-frame_media_id img"):
        expect_image_loaded(page.locator(preview))
        expect(page.locator(preview)).to_have_js_property("naturalWidth", 400)
    page.evaluate("() => window.scrollTo(0, 0)")
    save_screenshot(page, "slot")


# --- 3 -------------------------------------------------------------------------------------------
def test_operator_tries_the_slot_and_downloads_the_result(admin_page: Page, site: Site) -> None:
    page = admin_page
    in_db_thread(configure_frame_slot, "slot-002")

    job_id = try_slot(page, "slot-002", make_photo(width=800, height=600))
    expect(page.locator("#try-status")).to_have_text("Done.")
    save_screenshot(page, "try-result")

    with page.expect_download() as started:
        page.click("#try-download")
    download = started.value
    assert download.suggested_filename == f"photo-{job_id}.jpg"
    result = open_image(Path(download.path()).read_bytes())
    assert result.format == "JPEG"
    assert result.size == (800, 600)
    # The frame's magenta border lies over the photo's edge, not over its middle.
    assert is_magenta(result.getpixel((5, 5)))
    assert not is_magenta(result.getpixel((400, 300)))


# --- 4 -------------------------------------------------------------------------------------------
def test_the_result_appears_in_the_slots_recent_results(admin_page: Page, site: Site) -> None:
    page = admin_page
    in_db_thread(configure_frame_slot, "slot-002")
    job_id = try_slot(page, "slot-002", make_photo())

    with page.expect_navigation():
        page.click("#try-again")
    expect(page).to_have_url(site.url("/dashboard/slots/slot-002#try"))
    result = page.locator(f'#results li.result[data-job="{job_id}"]')
    expect(result).to_have_count(1)
    expect_image_loaded(result.locator("img"))
    expect(result.get_by_role("link", name="Download")).to_have_attribute(
        "href", site.url(f"/public/results/{job_id}")
    )
    expect(page.locator("#stats-today")).to_contain_text("1 photo,")

    # The home page shows it as the slot's last result.
    page.goto("/dashboard/")
    expect_image_loaded(page.locator('li.card.slot[data-slot="slot-002"] .thumb img'))
    page.evaluate("() => window.scrollTo(0, 0)")
    save_screenshot(page, "home")


# --- 5 -------------------------------------------------------------------------------------------
def test_a_guest_gets_the_photo_page_until_the_photo_expires(
    page: Page, site: Site, watcher: Watcher
) -> None:
    booth = site.booth_upload("slot-001")
    assert booth.status_code == 200, site.stack.logs()
    job_id = booth.headers["X-Job-Id"]

    guest = page  # no login: what a guest scanning the booth's QR code gets
    response = guest.goto(f"/r/{job_id}")
    assert response is not None and response.status == 200
    expect(guest.locator("h1")).to_have_text("Your photo")
    expect_image_loaded(guest.locator("#guest-photo"))
    expect(guest.locator("#guest-download")).to_be_visible()
    expect(guest.locator("#guest-download")).to_have_attribute("download", "")
    expect(guest.locator("#guest-page-url")).to_have_text(site.url(f"/r/{job_id}"))
    qr = guest.locator("#guest-qr")
    expect_image_loaded(qr)
    qr_file = guest.request.get(qr.evaluate("image => image.src"))
    assert qr_file.status == 200 and qr_file.headers["content-type"] == "image/svg+xml"
    assert "<svg" in qr_file.text()
    expect(guest.locator("a[href*='/dashboard'], a[href*='/api/']")).to_have_count(0)
    guest.evaluate("() => window.scrollTo(0, 0)")
    save_screenshot(guest, "guest")

    with guest.expect_download() as started:
        guest.click("#guest-download")
    photo = open_image(Path(started.value.path()).read_bytes())
    assert photo.format == "JPEG" and photo.size == (640, 480)

    in_db_thread(expire_result, job_id)
    watcher.expect_status(410, f"/r/{job_id}")
    response = guest.reload()
    assert response is not None and response.status == 410
    expect(guest.locator("h1")).to_have_text("This photo has expired")
    expect(guest.locator("#guest-photo, #guest-download, #guest-qr")).to_have_count(0)
    save_screenshot(guest, "expired")


# --- 6 -------------------------------------------------------------------------------------------
def test_rotating_the_ingest_password_locks_out_the_old_one(admin_page: Page, site: Site) -> None:
    page = admin_page
    page.goto("/dashboard/settings")
    expect(page.locator("#worker-table")).to_contain_text("alive")
    expect(page.locator("#queue-depth")).to_have_text(
        "Unfinished jobs: 0 waiting, 0 being processed."
    )
    expect(page.locator("#sync-response-timeout")).to_be_visible()

    new_password = "a-new-booth-password-5678"
    page.fill("#password", new_password)
    page.fill("#password-confirmation", new_password)
    with page.expect_navigation():
        page.click("#password-submit")
    expect(page).to_have_url(site.url("/dashboard/settings"))
    expect(page.locator("ul.messages li.success")).to_have_text(
        "Ingest password changed. Booths must send the new one from their next photo on."
    )
    expect(page.locator("#ingest-password-status")).to_contain_text(f"by {site.username}")
    page.evaluate("() => window.scrollTo(0, 0)")
    save_screenshot(page, "settings")

    old = site.booth_upload("slot-001", password=site.ingest_password)
    assert old.status_code == 401, old.text
    new = site.booth_upload("slot-001", password=new_password)
    assert new.status_code == 200, site.stack.logs()
    assert new.headers["Content-Type"] == "image/jpeg"


# --- 8 -------------------------------------------------------------------------------------------
def test_home_and_slot_form_fit_a_phone(new_page: Callable[..., Page], site: Site) -> None:
    page = new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    sign_in(page, site)
    page.goto("/dashboard/")
    expect(page.locator("ul.cards > li.card.slot")).to_have_count(SLOT_COUNT)
    assert horizontal_overflow(page, PHONE["width"]) == 0
    save_screenshot(page, "home-phone")

    page.locator('li.card.slot[data-slot="slot-003"] h2 a').tap()
    expect(page).to_have_url(site.url("/dashboard/slots/slot-003"))
    # The address changes when the navigation commits, before the new page is laid out: wait
    # for its form before measuring anything (count() does not wait).
    page.wait_for_load_state("load")
    expect(page.locator("#slot-form #id_name")).to_be_visible()
    assert horizontal_overflow(page, PHONE["width"]) == 0
    # Every control of the form lies within the screen's width, and it (or its label) is a
    # tap target of at least 24 px (WCAG 2.2, 2.5.8).
    controls = page.locator("#slot-form :is(input, select, button):visible")
    assert controls.count() >= 6
    for index in range(controls.count()):
        control = controls.nth(index)
        html = control.evaluate("element => element.outerHTML")
        box = control.bounding_box()
        assert box is not None, html
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], (html, box)
        label = page.locator(f'label[for="{control.get_attribute("id")}"]')
        label_box = label.bounding_box() if label.count() == 1 else None
        target = max(box["height"], label_box["height"] if label_box else 0)
        assert target >= MIN_TARGET_PX, (html, box, label_box)

    page.locator("#id_name").fill("Garden booth")
    page.select_option("#id_setting-look", "sepia")
    page.locator('label[for="id_is_active"]').tap()
    expect(page.locator("#id_is_active")).to_be_checked()
    with page.expect_navigation():
        page.locator("#save-slot").tap()
    expect(page.locator("ul.messages li.success")).to_have_text(
        "Saved “Garden booth”. The slot is active: booths may send photos."
    )
    expect(page.locator("#slot-title")).to_contain_text("Garden booth")
    expect(page.locator("#id_setting-look")).to_have_value("sepia")

    # The other pages fit the phone's width too (wide tables scroll within their frame).
    for path in ("/dashboard/jobs", "/dashboard/stats", "/dashboard/settings"):
        page.goto(path)
        assert horizontal_overflow(page, PHONE["width"]) == 0, path
