"""Metrics settings, from the environment (imported by photobooth/settings.py).

Kept apart from settings.py so that the metrics code can also read its defaults from here when a
settings module does not define them (see `photobooth.metrics.setting`). Docs/metrics.md
describes each variable.
"""

from __future__ import annotations

import ipaddress

import environ
from django.core.exceptions import ImproperlyConfigured

env = environ.Env()

# Who may read the web process's /metrics without a token: client networks (CIDR), by default
# the machine itself. Empty: nobody without the token.
METRICS_ALLOWED_NETWORKS: list[str] = env.list(
    "METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"]
)
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network.strip(), strict=False)
    except ValueError as _error:
        raise ImproperlyConfigured(
            f"METRICS_ALLOWED_NETWORKS: {_network!r} is not an IP network ({_error})"
        ) from None
# When set, /metrics also answers any client sending `Authorization: Bearer <METRICS_TOKEN>`.
METRICS_TOKEN: str = env.str("METRICS_TOKEN", default="")
# Figures read from the database at scrape time (queue by state, workers) are reused this long.
METRICS_DB_CACHE_SECONDS: float = env.float("METRICS_DB_CACHE_SECONDS", default=5.0)
# Stored bytes by kind (sums over the job, media and template tables) change slowly.
METRICS_STORAGE_CACHE_SECONDS: float = env.float("METRICS_STORAGE_CACHE_SECONDS", default=60.0)

# run_workers serves its own metrics on this port (0: not at all) and address.
WORKER_METRICS_PORT: int = env.int("WORKER_METRICS_PORT", default=0)
WORKER_METRICS_HOST: str = env.str("WORKER_METRICS_HOST", default="127.0.0.1")
