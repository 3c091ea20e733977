"""Security headers, HTTPS cookie settings and Django's deployment checks."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.test import Client

from tests.api.conftest import ADMIN_PASSWORD, make_admin
from tests.support.stack import REPO_ROOT, process_environment, start_web

PAGES = ["/dashboard/login", "/api/providers", "/ingest/slot-001", "/api/docs/", "/healthz"]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_every_kind_of_response_carries_the_security_headers(path: str) -> None:
    response = Client().get(path)

    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_the_api_docs_page_runs_no_inline_script() -> None:
    html = Client().get("/api/docs/").content.decode()

    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts
    for attributes, body in scripts:
        assert "src=" in attributes and not body.strip(), "inline script would be blocked by CSP"


def test_deployment_checks_pass_with_production_settings(tmp_path: Path) -> None:
    env = process_environment(
        SECRET_KEY=secrets.token_urlsafe(60),
        DEBUG="false",
        HTTPS="true",
        ALLOWED_HOSTS="booth.example.com",
        PUBLIC_BASE_URL="https://booth.example.com",
        PHOTOBOOTH_DATA_DIR=str(tmp_path),
    )

    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert check.returncode == 0, check.stdout + check.stderr


def test_behind_https_the_session_cookie_is_secure_and_http_is_redirected(
    live_db: None, tmp_path: Path
) -> None:
    make_admin("olga", ["slots:read"])
    web = start_web(tmp_path, HTTPS="true", ALLOWED_HOSTS="127.0.0.1")
    try:
        https = {"X-Forwarded-Proto": "https"}  # as the TLS proxy in front sets it
        form = requests.get(f"{web.base_url}/dashboard/login", headers=https, timeout=10)
        assert "Secure" in form.headers["Set-Cookie"]  # the CSRF cookie, too
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token is not None
        # The test talks plain HTTP to the app (the proxy's side), so it hands the Secure
        # cookie back itself, as a browser would over HTTPS.
        https["Cookie"] = f"csrftoken={form.cookies['csrftoken']}"
        login = requests.post(
            f"{web.base_url}/dashboard/login",
            data={
                "username": "olga",
                "password": ADMIN_PASSWORD,
                "csrfmiddlewaretoken": token.group(1),
            },
            headers={**https, "Referer": web.base_url.replace("http:", "https:") + "/"},
            allow_redirects=False,
            timeout=10,
        )
        assert login.status_code == 302, login.text[:300]
        cookie = login.headers["Set-Cookie"]
        assert "sessionid=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
        assert "Strict-Transport-Security" in login.headers

        plain = requests.get(f"{web.base_url}/dashboard/login", allow_redirects=False, timeout=10)
        assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")
        probe = requests.get(f"{web.base_url}/healthz", timeout=10)
        assert probe.status_code == 200  # load balancers probe over plain HTTP
    finally:
        web.process.stop()
