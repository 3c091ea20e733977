"""`python manage.py check_providers`: is every AI provider ready to take jobs?

For each configured provider: whether its API key is set and where from, its base URL, whether
that URL answers, and which active slots use it. Fails (exit status 1) when a provider that an
active slot uses has no usable key or does not answer. Keys are never printed nor sent.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ingest.models import Slot
from providers.base import Provider
from providers.registry import all_providers
from providers.secrets import SecretsUnreadable, api_key_for, key_status

DEFAULT_TIMEOUT_SECONDS = 5.0
USER_AGENT = "photobooth-ai-server (check_providers)"

# Where a provider's key comes from, as printed and in --json.
KEY_FROM_SETTINGS = "settings"  # stored through the settings API / dashboard (encrypted)
KEY_FROM_ENVIRONMENT = "environment"
KEY_NOT_NEEDED = "not_needed"
KEY_MISSING = "missing"
KEY_UNREADABLE = "unreadable"  # stored, but SECRETS_ENCRYPTION_KEYS cannot decrypt it

# Outcome of the reachability check.
REACHABLE = "reachable"
UNREACHABLE = "unreachable"
SKIPPED = "skipped"  # --skip-network
NO_BASE_URL = "no_base_url"  # nothing to reach (e.g. the local provider)


@dataclass(frozen=True)
class KeyCheck:
    """Whether the provider has a usable key; never the key itself."""

    source: str
    updated_at: datetime | None = None
    updated_by: str = ""


@dataclass(frozen=True)
class Reachability:
    """What a plain GET to the base URL gave: an HTTP status, or the error's class name."""

    state: str
    http_status: int | None = None
    error: str = ""


@dataclass
class ProviderReport:
    provider_id: str
    label: str
    requires_api_key: bool
    key: KeyCheck
    base_url: str
    reachability: Reachability
    active_slots: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def blocks_slots(self) -> bool:
        """Active slots use this provider and it cannot serve them."""
        return bool(self.active_slots and self.problems)

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.provider_id,
            "label": self.label,
            "requires_api_key": self.requires_api_key,
            "key": self.key.source,
            "key_updated_at": self.key.updated_at.isoformat() if self.key.updated_at else None,
            "key_updated_by": self.key.updated_by,
            "base_url": display_url(self.base_url) or None,
            "reachability": self.reachability.state,
            "http_status": self.reachability.http_status,
            "error": self.reachability.error or None,
            "active_slots": self.active_slots,
            "problems": self.problems,
        }

    def as_line(self) -> str:
        key = {
            KEY_NOT_NEEDED: "not needed",
            KEY_MISSING: "MISSING",
            KEY_UNREADABLE: "UNREADABLE (check SECRETS_ENCRYPTION_KEYS)",
        }.get(self.key.source, self.key.source)
        reach = self.reachability
        reachability = {
            REACHABLE: f"reachable: HTTP {reach.http_status}",
            UNREACHABLE: f"UNREACHABLE: {reach.error}",
            SKIPPED: "reachability: skipped",
            NO_BASE_URL: "reachability: not checked",
        }[reach.state]
        return (
            f"{self.provider_id}: key: {key} | base URL: {display_url(self.base_url) or 'none'} "
            f"| {reachability} | active slots: {', '.join(self.active_slots) or 'none'}"
        )


def display_url(url: str) -> str:
    """The URL without any user:password part, which may carry a credential."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        if "@" not in parts.netloc:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))
    except ValueError:
        return "(unparseable URL)"


def check_key(provider: Provider) -> KeyCheck:
    if not provider.requires_api_key:
        return KeyCheck(KEY_NOT_NEEDED)
    status = key_status(provider.id)
    if not status.is_configured:
        return KeyCheck(KEY_MISSING)
    if status.source == KEY_FROM_SETTINGS:
        try:
            api_key_for(provider.id)  # decrypts and drops it: is the stored key usable?
        except SecretsUnreadable:
            return KeyCheck(KEY_UNREADABLE, status.updated_at, status.updated_by)
    return KeyCheck(status.source, status.updated_at, status.updated_by)


def probe(url: str, timeout: float) -> Reachability:
    """A plain GET without credentials: any HTTP answer means the provider can be reached."""
    try:
        response = requests.get(
            url,
            timeout=timeout,
            allow_redirects=False,
            stream=True,
            headers={"User-Agent": USER_AGENT},
        )
    except (requests.RequestException, OSError, ValueError) as error:
        return Reachability(UNREACHABLE, error=type(error).__name__)
    response.close()
    return Reachability(REACHABLE, http_status=response.status_code)


def problems_of(report: ProviderReport) -> list[str]:
    problems = []
    if report.key.source == KEY_MISSING:
        problems.append("no API key configured")
    elif report.key.source == KEY_UNREADABLE:
        problems.append("the stored API key cannot be decrypted (check SECRETS_ENCRYPTION_KEYS)")
    if report.reachability.state == UNREACHABLE:
        problems.append(f"unreachable ({report.reachability.error})")
    return problems


class Command(BaseCommand):
    help = (
        "Check every AI provider: API key set (and where from), base URL, whether it answers, "
        "and which active slots use it. Exit status 1 when a provider an active slot uses has "
        "no usable key or cannot be reached. Keys are never printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=DEFAULT_TIMEOUT_SECONDS,
            help=f"Seconds to wait for each provider (default {DEFAULT_TIMEOUT_SECONDS:g}).",
        )
        parser.add_argument(
            "--skip-network",
            action="store_true",
            help="Do not contact the providers (check keys and slots only).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the result as one JSON document."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        timeout = float(options["timeout"])
        if timeout <= 0:
            raise CommandError("--timeout must be a positive number of seconds.")
        providers = list(all_providers().values())
        slots_by_provider: dict[str, list[str]] = defaultdict(list)
        for slot_id, provider_id in Slot.objects.filter(is_active=True).values_list(
            "id", "provider_id"
        ):
            slots_by_provider[provider_id].append(slot_id)

        base_urls = {p.id: str(settings.PROVIDER_BASE_URLS.get(p.id, "")) for p in providers}
        reachability = self._reachability(base_urls, timeout, skip=options["skip_network"])
        reports = []
        for provider in providers:
            report = ProviderReport(
                provider_id=provider.id,
                label=provider.label,
                requires_api_key=provider.requires_api_key,
                key=check_key(provider),
                base_url=base_urls[provider.id],
                reachability=reachability[provider.id],
                active_slots=sorted(slots_by_provider.get(provider.id, [])),
            )
            report.problems = problems_of(report)
            reports.append(report)
        # Active slots naming a provider this installation does not have cannot work either.
        unknown = {
            provider_id: sorted(slot_ids)
            for provider_id, slot_ids in sorted(slots_by_provider.items())
            if provider_id not in base_urls
        }

        failures = [
            f"{report.provider_id} ({'; '.join(report.problems)}; used by "
            f"{', '.join(report.active_slots)})"
            for report in reports
            if report.blocks_slots
        ] + [
            f"{provider_id} (unknown provider; used by {', '.join(slot_ids)})"
            for provider_id, slot_ids in unknown.items()
        ]

        if options["json"]:
            document = {
                "ok": not failures,
                "providers": [report.as_json() for report in reports],
                "unknown_providers": [
                    {"id": provider_id, "active_slots": slot_ids}
                    for provider_id, slot_ids in unknown.items()
                ],
                "failures": failures,
            }
            self.stdout.write(json.dumps(document, indent=2))
        else:
            for report in reports:
                self.stdout.write(report.as_line())
            for provider_id, slot_ids in unknown.items():
                self.stdout.write(
                    f"{provider_id}: UNKNOWN PROVIDER | active slots: {', '.join(slot_ids)}"
                )
            if not failures:
                self.stdout.write("OK: every provider used by an active slot is ready.")
        if failures:
            raise CommandError(
                "Providers used by active slots are not ready: " + "; ".join(failures)
            )

    @staticmethod
    def _reachability(
        base_urls: dict[str, str], timeout: float, *, skip: bool
    ) -> dict[str, Reachability]:
        """Probe every base URL at once; the whole check waits about two timeouts at most.

        A probe still stuck past that (e.g. a name lookup that hangs, which the HTTP timeout
        does not cover) counts as unreachable with "Timeout"; its daemon thread is abandoned.
        """
        results = {pid: Reachability(NO_BASE_URL) for pid, url in base_urls.items() if not url}
        to_probe = {pid: url for pid, url in base_urls.items() if url}
        if skip:
            results.update({pid: Reachability(SKIPPED) for pid in to_probe})
            return results
        answers: dict[str, Reachability] = {}
        lock = threading.Lock()

        def run_probe(provider_id: str, url: str) -> None:
            outcome = probe(url, timeout)
            with lock:
                answers[provider_id] = outcome

        threads = [
            threading.Thread(target=run_probe, args=(pid, url), daemon=True, name=f"probe-{pid}")
            for pid, url in to_probe.items()
        ]
        for thread in threads:
            thread.start()
        # Connecting and waiting for the answer's headers are each bounded by `timeout`.
        give_up_at = time.monotonic() + 2 * timeout + 1
        for thread in threads:
            thread.join(max(0.0, give_up_at - time.monotonic()))
        with lock:
            for pid in to_probe:
                results[pid] = answers.get(pid, Reachability(UNREACHABLE, error="Timeout"))
        return results
