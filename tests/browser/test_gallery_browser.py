"""A shared gallery in a real browser: the operator creates it in the dashboard, a guest opens
its link on a phone, sees the photos and opens one; after a revoke the link says it expired."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from django.utils import timezone

from tests.browser.conftest import (
    DESKTOP,
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
)
from tests.support.images import make_photo

if TYPE_CHECKING:
    from playwright.sync_api import Page

GALLERY_PATH = re.compile(r"/g/[0-9a-f-]{36}$")


def booth_photos(site: Site, slot_id: str, count: int) -> list[str]:
    """Photos sent by the slot's booth, each answered with its result; their job ids."""
    job_ids = []
    for number in range(count):
        colour = (60 * number % 256, 120, 200 - 40 * number)
        answer = site.booth_upload(slot_id, photo=make_photo(color=colour))
        assert answer.status_code == 200, (answer.text, site.stack.logs())
        job_ids.append(answer.headers["X-Job-Id"])
    return job_ids


def test_operator_shares_a_gallery_and_a_guest_opens_a_photo_from_it(
    new_page: Callable[..., Page], site: Site, watcher: Watcher
) -> None:
    wedding = booth_photos(site, "slot-001", 3)
    in_db_thread(configure_frame_slot, "slot-002")
    [other_booth] = booth_photos(site, "slot-002", 1)

    # The operator: Galleries in the menu, a gallery of slot-001's photos for three days.
    admin = new_page()
    admin.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=site.base_url)
    sign_in(admin, site)
    admin.goto("/dashboard/")
    admin.get_by_role("navigation", name="Main").get_by_role("link", name="Galleries").click()
    expect(admin).to_have_url(site.url("/dashboard/galleries"))
    expect(admin.locator("#no-galleries")).to_be_visible()
    admin.fill("#gallery-title", "Anna & Ben's wedding")
    admin.check("#gallery-slot-slot-001")  # galleries.js chooses "only the slots ticked"
    expect(admin.locator("#gallery-slots-chosen")).to_be_checked()
    an_hour_ago = timezone.localtime(timezone.now() - timedelta(hours=1))
    admin.fill("#gallery-since", an_hour_ago.strftime("%Y-%m-%dT%H:%M"))
    admin.select_option("#gallery-lifetime", "72")
    with admin.expect_navigation():
        admin.click("#gallery-create")

    expect(admin.locator("ul.messages li.success")).to_contain_text(
        "Gallery “Anna & Ben's wedding” created"
    )
    card = admin.locator("li.gallery-card")
    expect(card).to_have_count(1)
    expect(card).to_have_attribute("data-state", "active")
    gallery_id = str(card.get_attribute("data-gallery"))
    link = site.url(f"/g/{gallery_id}")
    expect(card.locator(f"#gallery-link-{gallery_id}")).to_have_text(link)
    expect(card).to_contain_text("slot-001")
    expect_image_loaded(card.locator(f"#gallery-qr-{gallery_id}"))
    admin.evaluate("() => window.scrollTo(0, 0)")
    save_screenshot(admin, "galleries")
    card.locator(f"#copy-gallery-link-{gallery_id}").click()
    expect(card.locator(f"#copy-gallery-link-{gallery_id}")).to_have_text("Copied")
    assert admin.evaluate("() => navigator.clipboard.readText()") == link

    # A guest with the link (from the QR code): the wedding's photos, newest first, nothing else.
    guest = new_page(viewport=DESKTOP)
    response = guest.goto(link)
    assert response is not None and response.status == 200
    expect(guest.locator("h1")).to_have_text("Anna & Ben's wedding")
    expect(guest.locator("#gallery-expiry")).to_contain_text("This gallery is online until")
    tiles = guest.locator("#gallery-photos li a")
    expect(tiles).to_have_count(3)
    expected_links = [site.url(f"/r/{job_id}") for job_id in reversed(wedding)]
    assert [tiles.nth(i).get_attribute("href") for i in range(3)] == expected_links
    for index in range(3):
        expect_image_loaded(tiles.nth(index).locator("img"))
    expect(guest.locator(f"a[href*='{other_booth}']")).to_have_count(0)
    expect(guest.locator("a[href*='/dashboard'], a[href*='/api/']")).to_have_count(0)
    expect(guest.get_by_text("slot-00")).to_have_count(0)
    guest.evaluate("() => window.scrollTo(0, 0)")
    save_screenshot(guest, "gallery")

    # On a phone: no sideways scrolling, and a tap on the newest photo opens its own page.
    phone = new_page(viewport=PHONE, is_mobile=True, has_touch=True)
    phone.goto(link)
    expect(phone.locator("#gallery-photos li")).to_have_count(3)
    assert horizontal_overflow(phone, PHONE["width"]) == 0
    with phone.expect_navigation():
        phone.locator("#gallery-photos li a").first.tap()
    expect(phone).to_have_url(site.url(f"/r/{wedding[-1]}"))
    expect(phone.locator("h1")).to_have_text("Your photo")
    expect_image_loaded(phone.locator("#guest-photo"))

    # The operator revokes it: the guest's link now says it has expired.
    with admin.expect_navigation():
        admin.click(f"#revoke-{gallery_id}")
    expect(admin.locator("li.gallery-card")).to_have_attribute("data-state", "revoked")
    watcher.expect_status(410, f"/g/{gallery_id}")
    response = guest.reload()
    assert response is not None and response.status == 410
    expect(guest.locator("h1")).to_have_text("This gallery has expired")
    expect(guest.locator("#gallery-photos")).to_have_count(0)
    assert GALLERY_PATH.search(guest.url)
