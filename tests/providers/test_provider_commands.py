"""`manage.py check_providers` and `manage.py rotate_secrets`, in-process and as real processes.

Providers are reached on loopback only: a fake that answers 404 (reachable: any HTTP answer
counts), a closed port (unreachable) and a fake slower than --timeout.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError

from ingest.models import Slot
from providers.management.commands import check_providers
from providers.management.commands.check_providers import Reachability
from providers.models import ProviderKey
from providers.registry import all_providers
from providers.secrets import SecretsUnreadable, api_key_for, set_api_key
from tests.support.fake_http import FakeProvider, Recorded, Reply
from tests.support.stack import REPO_ROOT, free_port, process_environment

STORED_KEY = "sk-stored-0123456789abcdef"
ENV_KEY = "env-key-fedcba9876543210"
ENCRYPTION_KEY = Fernet.generate_key().decode()


class NotFoundProvider(FakeProvider):
    """A provider's origin: 404 for a bare GET, like the real APIs. `slow` answers after 3 s."""

    def handle(self, request: Recorded) -> Reply:
        return Reply(404, {"error": "not found"}, delay=3.0 if self.mode == "slow" else 0.0)


@pytest.fixture
def fake() -> Iterator[NotFoundProvider]:
    server = NotFoundProvider()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def closed_url() -> str:
    """A loopback port nobody listens on: connections are refused."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def providers_env(settings: Any, fake: NotFoundProvider, closed_url: str) -> None:
    """gemini: env key, answers; openai: no env key, answers; turbotext: no key, closed port."""
    settings.SECRETS_ENCRYPTION_KEYS = [ENCRYPTION_KEY]
    settings.PROVIDER_API_KEYS = {"gemini": ENV_KEY, "turbotext": "", "openai": ""}
    settings.PROVIDER_BASE_URLS = {
        "gemini": fake.base_url,
        "turbotext": closed_url,
        "openai": fake.base_url + "/v1",
    }


def activate(slot_id: str, provider_id: str) -> None:
    """Point an active slot at a provider (operations are irrelevant to these commands)."""
    assert Slot.objects.filter(id=slot_id).update(provider_id=provider_id, is_active=True) == 1


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def run_failing(*args: str) -> tuple[str, str]:
    """Output and error message of a command expected to fail."""
    out = io.StringIO()
    with pytest.raises(CommandError) as failure:
        call_command(*args, stdout=out)
    return out.getvalue(), str(failure.value)


def line_for(output: str, provider_id: str) -> str:
    (line,) = [line for line in output.splitlines() if line.startswith(f"{provider_id}: ")]
    return line


def assert_no_secret(text: str) -> None:
    tokens = list(ProviderKey.objects.values_list("encrypted_key", flat=True))
    for secret in (STORED_KEY, ENV_KEY, ENCRYPTION_KEY, *tokens):
        assert secret not in text


# --- check_providers, in-process ---------------------------------------------------------------
@pytest.mark.django_db
def test_check_providers_prints_key_source_url_reachability_and_active_slots_per_provider(
    providers_env: None, fake: NotFoundProvider, closed_url: str
) -> None:
    set_api_key("openai", STORED_KEY, changed_by="alice")
    activate("slot-003", "gemini")
    activate("slot-004", "openai")
    activate("slot-005", "openai")

    output = run("check_providers")

    assert len(output.splitlines()) == len(all_providers()) + 1
    assert line_for(output, "gemini") == (
        f"gemini: key: environment | base URL: {fake.base_url} | reachable: HTTP 404 "
        "| active slots: slot-003"
    )
    assert line_for(output, "openai") == (
        f"openai: key: settings | base URL: {fake.base_url}/v1 | reachable: HTTP 404 "
        "| active slots: slot-004, slot-005"
    )
    # Missing key and unreachable, but no active slot needs it: reported, not fatal.
    assert line_for(output, "turbotext") == (
        f"turbotext: key: MISSING | base URL: {closed_url} | UNREACHABLE: ConnectionError "
        "| active slots: none"
    )
    assert line_for(output, "local") == (
        "local: key: not needed | base URL: none | reachability: not checked "
        "| active slots: slot-001"
    )
    assert output.splitlines()[-1].startswith("OK")
    assert_no_secret(output)
    # The probe is a bare GET: no key is ever sent to check reachability.
    probes = fake.received()
    assert sorted(r.path for r in probes) == ["/", "/v1"]
    for probe in probes:
        assert probe.method == "GET" and "authorization" not in probe.headers
        assert_no_secret(json.dumps([probe.path, probe.query, probe.headers]))


@pytest.mark.django_db
def test_check_providers_fails_when_an_active_slot_uses_a_provider_without_a_key(
    providers_env: None,
) -> None:
    activate("slot-002", "openai")
    activate("slot-006", "gemini")

    output, error = run_failing("check_providers", "--skip-network")

    assert line_for(output, "openai").startswith("openai: key: MISSING |")
    assert "openai (no API key configured; used by slot-002)" in error
    assert "gemini" not in error
    assert_no_secret(output + error)


@pytest.mark.django_db
def test_check_providers_fails_when_an_active_slot_uses_an_unreachable_provider(
    providers_env: None,
) -> None:
    set_api_key("turbotext", STORED_KEY)
    activate("slot-007", "turbotext")

    output, error = run_failing("check_providers")

    assert "| UNREACHABLE: ConnectionError |" in line_for(output, "turbotext")
    assert "turbotext (unreachable (ConnectionError); used by slot-007)" in error
    assert_no_secret(output + error)


@pytest.mark.django_db
def test_a_provider_slower_than_the_timeout_counts_as_unreachable(
    providers_env: None, fake: NotFoundProvider
) -> None:
    fake.mode = "slow"
    activate("slot-003", "gemini")

    started = time.monotonic()
    output, error = run_failing("check_providers", "--timeout", "0.3")

    # Both slow URLs are probed at once: about one timeout in all, far below the fake's 3 s.
    assert time.monotonic() - started < 2.5
    assert "| UNREACHABLE: ReadTimeout |" in line_for(output, "gemini")
    assert "gemini (unreachable (ReadTimeout); used by slot-003)" in error


@pytest.mark.django_db
def test_a_probe_stuck_beyond_the_http_timeout_is_abandoned(
    providers_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # E.g. a name lookup that hangs: requests' timeout does not cover it.
    release = threading.Event()

    def stuck(url: str, timeout: float) -> Reachability:
        release.wait(30)
        return Reachability("reachable", http_status=200)

    monkeypatch.setattr(check_providers, "probe", stuck)
    activate("slot-003", "gemini")
    started = time.monotonic()
    try:
        output, error = run_failing("check_providers", "--timeout", "0.2")
    finally:
        release.set()

    assert time.monotonic() - started < 3
    assert "| UNREACHABLE: Timeout |" in line_for(output, "gemini")
    assert "gemini (unreachable (Timeout); used by slot-003)" in error


@pytest.mark.django_db
def test_skip_network_contacts_no_provider(
    providers_env: None, fake: NotFoundProvider, settings: Any, closed_url: str
) -> None:
    settings.PROVIDER_BASE_URLS = {**settings.PROVIDER_BASE_URLS, "gemini": closed_url}
    activate("slot-003", "gemini")

    output = run("check_providers", "--skip-network")

    assert line_for(output, "gemini") == (
        f"gemini: key: environment | base URL: {closed_url} | reachability: skipped "
        "| active slots: slot-003"
    )
    assert fake.received() == []


@pytest.mark.django_db
def test_check_providers_json_output(providers_env: None, fake: NotFoundProvider) -> None:
    set_api_key("openai", STORED_KEY, changed_by="alice")
    activate("slot-004", "openai")

    output = run("check_providers", "--json")

    document = json.loads(output)
    assert document["ok"] is True and document["failures"] == []
    reports = {report["id"]: report for report in document["providers"]}
    assert set(reports) == set(all_providers())
    assert reports["openai"] == {
        "id": "openai",
        "label": all_providers()["openai"].label,
        "requires_api_key": True,
        "key": "settings",
        "key_updated_at": reports["openai"]["key_updated_at"],
        "key_updated_by": "alice",
        "base_url": f"{fake.base_url}/v1",
        "reachability": "reachable",
        "http_status": 404,
        "error": None,
        "active_slots": ["slot-004"],
        "problems": [],
    }
    assert reports["openai"]["key_updated_at"]
    assert reports["turbotext"]["key"] == "missing"
    assert reports["turbotext"]["reachability"] == "unreachable"
    assert reports["turbotext"]["error"] == "ConnectionError"
    assert reports["turbotext"]["problems"] == [
        "no API key configured",
        "unreachable (ConnectionError)",
    ]
    assert reports["local"]["key"] == "not_needed"
    assert reports["local"]["base_url"] is None
    assert reports["local"]["reachability"] == "no_base_url"
    assert_no_secret(output)


@pytest.mark.django_db
def test_check_providers_json_still_prints_the_document_when_it_fails(
    providers_env: None,
) -> None:
    activate("slot-007", "turbotext")

    output, error = run_failing("check_providers", "--json", "--skip-network")

    document = json.loads(output)
    assert document["ok"] is False
    assert document["failures"] == ["turbotext (no API key configured; used by slot-007)"]
    assert "turbotext" in error


@pytest.mark.django_db
def test_a_stored_key_that_cannot_be_decrypted_is_reported(
    providers_env: None, settings: Any
) -> None:
    set_api_key("openai", STORED_KEY)
    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    activate("slot-004", "openai")

    output, error = run_failing("check_providers", "--skip-network")

    assert line_for(output, "openai").startswith(
        "openai: key: UNREADABLE (check SECRETS_ENCRYPTION_KEYS) |"
    )
    assert "openai (the stored API key cannot be decrypted" in error
    assert_no_secret(output + error)


@pytest.mark.django_db
def test_an_active_slot_naming_an_unknown_provider_fails_the_check(providers_env: None) -> None:
    activate("slot-009", "retired-provider")

    output, error = run_failing("check_providers", "--skip-network")

    assert "retired-provider: UNKNOWN PROVIDER | active slots: slot-009" in output
    assert "retired-provider (unknown provider; used by slot-009)" in error


@pytest.mark.django_db
def test_a_base_url_with_credentials_is_printed_without_them(
    providers_env: None, settings: Any
) -> None:
    settings.PROVIDER_BASE_URLS = {
        **settings.PROVIDER_BASE_URLS,
        "gemini": f"http://user:{STORED_KEY}@127.0.0.1:9/",
    }

    output = run("check_providers", "--skip-network")

    assert "base URL: http://***@127.0.0.1:9/ |" in line_for(output, "gemini")
    assert_no_secret(output)


# --- rotate_secrets, in-process ----------------------------------------------------------------
@pytest.mark.django_db
def test_rotate_secrets_re_encrypts_every_stored_key_with_the_first_key(settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    set_api_key("gemini", STORED_KEY)
    set_api_key("openai", "sk-second-key-3333")
    settings.SECRETS_ENCRYPTION_KEYS = [new, old]

    output = run("rotate_secrets")

    assert "Re-encrypted 2 stored provider keys" in output
    settings.SECRETS_ENCRYPTION_KEYS = [new]
    assert api_key_for("gemini") == STORED_KEY
    assert api_key_for("openai") == "sk-second-key-3333"
    assert_no_secret(output)


@pytest.mark.django_db
def test_rotate_secrets_changes_nothing_when_a_stored_key_cannot_be_decrypted(
    settings: Any,
) -> None:
    key_a, key_b, key_c = (Fernet.generate_key().decode() for _ in range(3))
    settings.SECRETS_ENCRYPTION_KEYS = [key_a]
    set_api_key("gemini", STORED_KEY)  # rotated first (by provider id)…
    settings.SECRETS_ENCRYPTION_KEYS = [key_b]
    set_api_key("openai", "sk-second-key-3333")  # …then this one fails: key_b is not configured
    before = dict(ProviderKey.objects.values_list("provider_id", "encrypted_key"))
    settings.SECRETS_ENCRYPTION_KEYS = [key_c, key_a]

    output, error = run_failing("rotate_secrets")

    assert error.startswith("Nothing was re-encrypted: the key for openai cannot be decrypted")
    assert dict(ProviderKey.objects.values_list("provider_id", "encrypted_key")) == before
    for secret in (STORED_KEY, "sk-second-key-3333", key_a, key_b, key_c, *before.values()):
        assert secret not in output + error
    settings.SECRETS_ENCRYPTION_KEYS = [key_c]
    with pytest.raises(SecretsUnreadable):
        api_key_for("gemini")


@pytest.mark.django_db
def test_rotate_secrets_with_nothing_stored(settings: Any) -> None:
    settings.SECRETS_ENCRYPTION_KEYS = [ENCRYPTION_KEY]

    assert "Re-encrypted 0 stored provider keys" in run("rotate_secrets")


# --- as real processes -------------------------------------------------------------------------
def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python manage.py …` as an operator runs it, against this test run's database."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env=process_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_providers_as_a_process_exits_1_until_every_active_slot_is_served(
    live_db: None, fake: NotFoundProvider, closed_url: str, settings: Any
) -> None:
    settings.SECRETS_ENCRYPTION_KEYS = [ENCRYPTION_KEY]
    set_api_key("openai", STORED_KEY, changed_by="alice")
    activate("slot-003", "gemini")
    activate("slot-004", "openai")
    activate("slot-007", "turbotext")
    env = {
        "SECRETS_ENCRYPTION_KEYS": ENCRYPTION_KEY,
        "GEMINI_BASE_URL": fake.base_url,
        "GEMINI_API_KEY": ENV_KEY,
        "OPENAI_BASE_URL": fake.base_url,
        "OPENAI_API_KEY": "",
        "TURBOTEXT_BASE_URL": closed_url,
        "TURBOTEXT_API_KEY": "",
    }

    failing = manage("check_providers", "--timeout", "2", **env)

    assert failing.returncode == 1, failing.stderr
    assert "key: environment" in line_for(failing.stdout, "gemini")
    assert "reachable: HTTP 404" in line_for(failing.stdout, "gemini")
    assert "key: settings" in line_for(failing.stdout, "openai")
    assert "UNREACHABLE: ConnectionError" in line_for(failing.stdout, "turbotext")
    assert "testing: key: not needed" in failing.stdout
    assert "turbotext (no API key configured; unreachable (ConnectionError); used by slot-007)" in (
        failing.stderr
    )
    assert_no_secret(failing.stdout + failing.stderr)

    Slot.objects.filter(id="slot-007").update(is_active=False)
    passing = manage("check_providers", "--json", **env)

    assert passing.returncode == 0, passing.stderr
    document = json.loads(passing.stdout)
    assert document["ok"] is True
    assert {r["id"]: r["key"] for r in document["providers"]}["openai"] == "settings"
    assert_no_secret(passing.stdout + passing.stderr)


def test_rotate_secrets_as_a_process_exits_1_with_a_clear_message_on_a_wrong_key(
    live_db: None, settings: Any
) -> None:
    settings.SECRETS_ENCRYPTION_KEYS = [ENCRYPTION_KEY]
    set_api_key("gemini", STORED_KEY)
    other_key = Fernet.generate_key().decode()

    wrong = manage("rotate_secrets", SECRETS_ENCRYPTION_KEYS=other_key)
    right = manage("rotate_secrets", SECRETS_ENCRYPTION_KEYS=f"{other_key},{ENCRYPTION_KEY}")

    assert wrong.returncode == 1
    assert "Nothing was re-encrypted: the key for gemini cannot be decrypted" in wrong.stderr
    assert right.returncode == 0, right.stderr
    assert "Re-encrypted 1 stored provider key " in right.stdout
    for result in (wrong, right):
        assert other_key not in result.stdout + result.stderr
        assert_no_secret(result.stdout + result.stderr)
    settings.SECRETS_ENCRYPTION_KEYS = [other_key]
    assert api_key_for("gemini") == STORED_KEY
