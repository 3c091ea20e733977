"""Instant wake-ups on PostgreSQL: NOTIFY in the transactions that change the queue, LISTEN in
the processes that wait for those changes.

The job row stays the single source of truth: a notification only says "look now". Every
listener keeps a fallback poll, so a lost notification (listener reconnecting, database restart)
delays a wake-up but never loses a job. On SQLite nothing is sent and processes poll.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import connection, connections

logger = logging.getLogger(__name__)

# A job was queued (or handed back to the queue): idle workers should acquire.
JOBS_CHANNEL = "photobooth_jobs"
# A job was finalized; the payload is its id: waiting ingest requests should answer.
FINALIZED_CHANNEL = "photobooth_finalized"

RECONNECT_SECONDS = 1.0


def notifications_supported() -> bool:
    return connection.vendor == "postgresql"


def notify(channel: str, payload: str = "") -> None:
    """Send a notification, delivered when the current transaction commits (PostgreSQL only)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, %s)", [channel, payload])


def notify_many(channel: str, payloads: Sequence[str]) -> None:
    """One notification per payload, in one statement; delivered at commit like `notify`."""
    if connection.vendor != "postgresql" or not payloads:
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
            [channel, list(payloads)],
        )


def _connection_parameters() -> dict[str, Any]:
    settings_dict = connections["default"].settings_dict
    parameters: dict[str, Any] = {
        "dbname": settings_dict["NAME"],
        "user": settings_dict.get("USER") or None,
        "password": settings_dict.get("PASSWORD") or None,
        "host": settings_dict.get("HOST") or None,
        "port": settings_dict.get("PORT") or None,
        "connect_timeout": 5,
        "application_name": "photobooth-listener",
    }
    for key in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
        if key in settings_dict.get("OPTIONS", {}):
            parameters[key] = settings_dict["OPTIONS"][key]
    return {key: value for key, value in parameters.items() if value is not None}


class Listener:
    """A background thread holding one connection that LISTENs on `channels`.

    `on_notify(channel, payload)` runs in the listener's thread for each notification;
    `on_reconnect()` runs after every (re)connection, so the owner can look for anything it
    missed while disconnected. `healthy` tells whether the connection is up right now.
    """

    def __init__(
        self,
        channels: list[str],
        on_notify: Callable[[str, str], None],
        on_reconnect: Callable[[], None] = lambda: None,
    ):
        self.channels = channels
        self.on_notify = on_notify
        self.on_reconnect = on_reconnect
        self.healthy = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)
        self._parameters = _connection_parameters()

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(**self._parameters, autocommit=True) as listening:
                    for channel in self.channels:
                        listening.execute(f"LISTEN {channel}")
                    self.healthy.set()
                    self.on_reconnect()
                    while not self._stop.is_set():
                        for notification in listening.notifies(timeout=1.0):
                            self.on_notify(notification.channel, notification.payload)
            except Exception:
                if self.healthy.is_set():
                    logger.warning("notification listener lost its connection", exc_info=True)
                self.healthy.clear()
                self._stop.wait(RECONNECT_SECONDS)
        self.healthy.clear()
