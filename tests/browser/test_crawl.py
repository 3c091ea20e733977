"""Every page and file the dashboard and the guest page link to answers, without errors.

Breadth-first from /dashboard/ as an admin with every permission, then from a guest page as an
anonymous visitor, through every same-origin address in an <a href>, <img src>, <script src>
or <link href>: links are opened in the browser (its console, its Content-Security-Policy and
every resource the page loads are watched: conftest.Watcher), and their links read from the
rendered page; images, scripts, stylesheets and downloads are fetched with the visitor's
cookies. Forms are not submitted (logout and the change routes are POST-only).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urldefrag, urlsplit

from django.utils import timezone

from galleries.services import create_gallery
from ingest.services import update_slot
from tests.browser.conftest import (
    PlaywrightError,
    Site,
    configure_frame_slot,
    expect,
    in_db_thread,
    save_screenshot,
    sign_in,
)

if TYPE_CHECKING:
    from playwright.sync_api import Page

MAX_URLS = 200
# Addresses only forms use (POST): a link to one would be a bug of its own.
POST_ONLY = re.compile(
    r"^/dashboard/(logout"
    r"|slots/[^/]+/(configure|try|reset-stats|templates/[^/]+/(upload|remove))"
    r"|settings/(password|timeout|purge|keys/.+))$"
)
# Links that may answer 4xx/5xx, with the status they must give: none.
EXPECTED_ERRORS: dict[str, int] = {}
# Each linked address, and how a browser gets it: links are opened as pages (unless they are
# downloads), everything else is fetched as a file.
LINKS = """
elements => elements
  .map(element => [
    element.href || element.src || "",
    element.localName === "a" && !element.hasAttribute("download") ? "page" : "file",
  ])
  .filter(([address]) => address)
"""
LINKED = "a[href], img[src], script[src], link[href]"


@dataclass
class Crawl:
    statuses: dict[str, int] = field(default_factory=dict)  # address -> final status
    final_urls: dict[str, str] = field(default_factory=dict)  # address -> after redirects
    linked_from: dict[str, str] = field(default_factory=dict)  # address -> first page with it
    pages: set[str] = field(default_factory=set)  # addresses opened as HTML pages
    skipped: set[str] = field(default_factory=set)
    other_origins: set[str] = field(default_factory=set)
    complete: bool = False

    def paths(self) -> set[str]:
        return {urlsplit(url).path for url in self.statuses}

    def errors(self) -> list[str]:
        return [
            f"{status} {url} (linked from {self.linked_from.get(url, 'the start')})"
            for url, status in self.statuses.items()
            if status >= 400 and EXPECTED_ERRORS.get(urlsplit(url).path) != status
        ]


def visit(page: Page, url: str, kind: str) -> tuple[int, str, list[list[str]]]:
    """Status, final address and links of a page opened in the browser, or of a file."""
    if kind == "page":
        try:
            response = page.goto(url)
        except PlaywrightError as error:
            if "Download is starting" not in str(error):
                raise
        else:
            assert response is not None, url
            html = response.headers.get("content-type", "").startswith("text/html")
            links = page.eval_on_selector_all(LINKED, LINKS) if response.ok and html else []
            return response.status, page.url, links
    fetched = page.request.get(url)
    return fetched.status, fetched.url, []


def crawl(page: Page, start: Iterable[str], *, origin: str, limit: int = MAX_URLS) -> Crawl:
    """Breadth-first through the same-origin links, from these pages."""
    found = Crawl()
    queue = deque((url, "page") for url in start)
    queued = {url for url, _ in queue}
    while queue and len(found.statuses) < limit:
        url, kind = queue.popleft()
        found.statuses[url], found.final_urls[url], links = visit(page, url, kind)
        if links:
            found.pages.add(url)
        for link, link_kind in links:
            address = urldefrag(link)[0]
            parts = urlsplit(address)
            if f"{parts.scheme}://{parts.netloc}" != origin:
                found.other_origins.add(address)
            elif POST_ONLY.match(parts.path):
                found.skipped.add(address)
            elif address not in queued:
                queued.add(address)
                queue.append((address, link_kind))
                found.linked_from[address] = url
    found.complete = not queue
    return found


def setup_jobs(site: Site) -> dict[str, str]:
    """Slots of each kind and a job on each: a plain look, a frame overlay, a failure."""

    def configure() -> None:
        configure_frame_slot("slot-002")
        update_slot(
            slot_id="slot-003",
            provider_id="testing",
            operation_id="fail",
            settings={},
            is_active=True,
            name="Broken booth",
        )

    in_db_thread(configure)
    jobs = {}
    for slot_id, status in (("slot-001", 200), ("slot-002", 200), ("slot-003", 502)):
        answer = site.booth_upload(slot_id)
        assert answer.status_code == status, (slot_id, answer.text, site.stack.logs())
        jobs[slot_id] = answer.headers["X-Job-Id"]
    return jobs


def test_every_link_of_the_dashboard_and_the_guest_page_works(
    new_page: Callable[..., Page], site: Site
) -> None:
    jobs = setup_jobs(site)
    guest_page = site.url(f"/r/{jobs['slot-001']}")
    gallery = in_db_thread(
        lambda: create_gallery(
            title="Crawl",
            slot_ids=[],
            results_since=timezone.now() - timedelta(hours=1),
            results_until=None,
            lifetime_hours=6,
            actor="crawler",
        )
    )

    admin = new_page()
    sign_in(admin, site)
    # The monitor pages, as the operator sees them with these jobs.
    admin.goto("/dashboard/jobs")
    expect(admin.locator("#jobs-table tbody tr")).to_have_count(3)
    save_screenshot(admin, "jobs")
    admin.goto("/dashboard/stats")
    expect(admin.locator("#stats-table")).to_be_visible()
    expect(admin.locator("#failures-summary")).to_contain_text(re.compile(r"1\s+of 3 jobs"))
    expect(admin.locator("#failures-jobs-link")).to_be_visible()  # crawled below
    save_screenshot(admin, "statistics")
    admin.goto("/dashboard/results/archive?slot=slot-001")
    expect(admin.locator("main")).to_contain_text("Download ZIP")
    save_screenshot(admin, "downloads")

    seen = crawl(admin, [site.url("/dashboard/"), guest_page], origin=site.base_url)
    assert seen.complete, f"more than {MAX_URLS} addresses: {sorted(seen.statuses)}"
    assert not seen.errors(), "\n".join(seen.errors())
    assert not seen.other_origins, seen.other_origins
    bounced = [url for url, final in seen.final_urls.items() if "/dashboard/login" in final]
    assert not bounced, f"sent to the login page: {bounced}"
    paths = seen.paths()
    expected = {
        "/dashboard/",
        "/dashboard/jobs",
        "/dashboard/stats",
        "/dashboard/settings",
        "/dashboard/galleries",
        f"/g/{gallery.id}",
        f"/dashboard/galleries/{gallery.id}/qr.svg",
        f"/r/{jobs['slot-001']}",
        f"/r/{jobs['slot-001']}/qr.svg",
        *(f"/dashboard/slots/slot-{number:03d}" for number in range(1, 16)),
        *(f"/dashboard/jobs/{job_id}" for job_id in jobs.values()),
        *(f"/public/results/{jobs[slot]}" for slot in ("slot-001", "slot-002")),
        *(f"/public/results/{jobs[slot]}/thumbnail" for slot in ("slot-001", "slot-002")),
    }
    assert expected <= paths, sorted(expected - paths)
    assert any(path.startswith("/dashboard/templates/") for path in paths), sorted(paths)
    assert any("/dashboard/jobs?status=failed&created_after=" in url for url in seen.statuses)
    assert any(path.startswith("/static/") and path.endswith(".js") for path in paths)
    assert any(path.startswith("/static/") and path.endswith(".css") for path in paths)

    # A guest, with the address from the booth's QR code and nothing else.
    guest = new_page()
    seen = crawl(guest, [guest_page], origin=site.base_url)
    assert seen.complete
    assert not seen.errors(), "\n".join(seen.errors())
    assert not seen.other_origins, seen.other_origins
    private = [
        url for url in seen.statuses if urlsplit(url).path.startswith(("/dashboard", "/api"))
    ]
    assert not private, f"the guest page leads to {private}"
    assert {f"/r/{jobs['slot-001']}", f"/public/results/{jobs['slot-001']}"} <= seen.paths()

    # A guest with the event's gallery link: its photos and their pages, nothing private.
    seen = crawl(new_page(), [site.url(f"/g/{gallery.id}")], origin=site.base_url)
    assert seen.complete
    assert not seen.errors(), "\n".join(seen.errors())
    assert not seen.other_origins, seen.other_origins
    private = [
        url for url in seen.statuses if urlsplit(url).path.startswith(("/dashboard", "/api"))
    ]
    assert not private, f"the gallery leads to {private}"
    assert {f"/r/{jobs['slot-001']}", f"/r/{jobs['slot-002']}"} <= seen.paths()
