"""The watcher the other browser tests rely on does see what it must report: a page with an
inline script blocked by the Content-Security-Policy, or a console error, would fail them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests.browser.conftest import Watcher

if TYPE_CHECKING:
    from playwright.sync_api import Page

# Injects an inline script (the CSP forbids it) and waits until the page reports the violation.
INLINE_SCRIPT = """
() => new Promise((resolve) => {
  document.addEventListener("securitypolicyviolation", () => resolve(true), { once: true });
  const script = document.createElement("script");
  script.textContent = "window.inlineScriptRan = true";
  document.body.append(script);
})
"""


def test_the_watcher_reports_csp_violations_and_console_errors(
    admin_page: Page, watcher: Watcher
) -> None:
    admin_page.goto("/dashboard/settings")
    assert watcher.take() == []

    assert admin_page.evaluate(INLINE_SCRIPT) is True
    assert admin_page.evaluate("() => window.inlineScriptRan") is None
    admin_page.evaluate("() => console.error('something broke')")
    admin_page.evaluate("() => null")  # one more round trip: every report has arrived

    problems = watcher.take()
    assert any(
        problem.startswith("CSP violation: script-src") and "inline" in problem
        for problem in problems
    ), problems
    assert "console error: something broke" in " ".join(problems), problems
