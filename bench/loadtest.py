"""Play many photo booths against a running server and report what an operator needs to size it.

    .venv/bin/python bench/loadtest.py --url http://127.0.0.1:8000 --slot slot-001 \
        --password SECRET --clients 20 --requests 200 --image-mb 5

Each client is a booth: it uploads a photo, waits for the answer, uploads the next (closed
loop); with --rate the uploads start on a fixed schedule instead (open loop), however slow the
answers. Reports throughput, latency percentiles and the share of each status (200, 429, 504…).
With --provider-delay (the delay the slot's provider is known to add) it also reports the
server's own overhead: response time minus provider time.

To rehearse a provider of known behaviour, start the server with
PHOTOBOOTH_EXTRA_PROVIDERS=providers.simulated.SimulatedProvider and let the load test point the
slot at it through the admin API first:

    ADMIN_PASSWORD=... .venv/bin/python bench/loadtest.py --password SECRET --slot slot-005 \
        --admin-user admin --simulate distribution=lognormal,delay_seconds=8,spread=0.4
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import describe_ms  # noqa: E402


def make_jpeg(megabytes: float, seed: int = 1) -> bytes:
    """A JPEG of about `megabytes` (noise compresses badly, so size follows pixel count)."""
    from PIL import Image

    # Noise at half resolution, scaled up: about 1 byte per pixel at quality 92, like a busy
    # camera photo.
    side = max(64, int((megabytes * 1024 * 1024 * 1.25) ** 0.5))
    half = side // 2
    rng = random.Random(seed)
    noise = rng.randbytes(half * half * 3)
    image = Image.frombytes("RGB", (half, half), noise).resize((side, side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


@dataclass
class Outcome:
    status: int
    seconds: float
    code: str = ""  # the error code of a JSON error answer


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def lines(self, provider_delay: float | None) -> list[str]:
        statuses = Counter(outcome.status for outcome in self.outcomes)
        total = len(self.outcomes) or 1
        ok = [o.seconds * 1000 for o in self.outcomes if o.status == 200]
        lines = [
            f"requests            {len(self.outcomes)} in {self.wall_seconds:.1f} s "
            f"({len(self.outcomes) / max(self.wall_seconds, 1e-9):.1f}/s)",
            "statuses            "
            + ", ".join(
                f"{status}: {count} ({100 * count / total:.1f} %)"
                for status, count in sorted(statuses.items())
            ),
        ]
        codes = Counter(outcome.code for outcome in self.outcomes if outcome.code)
        if codes:
            lines.append(f"error codes         {dict(codes)}")
        if self.errors:
            lines.append(f"client errors       {dict(self.errors)}")
        if ok:
            lines.append(f"latency (200)       {describe_ms(ok)}")
            if provider_delay is not None:
                overhead = [value - provider_delay * 1000 for value in ok]
                lines.append(f"overhead (200)      {describe_ms(overhead)}")
        others = [o.seconds * 1000 for o in self.outcomes if o.status != 200]
        if others:
            lines.append(f"latency (others)    {describe_ms(others)}")
        return lines


def upload(
    session: requests.Session, url: str, password: str, photo: bytes, timeout: float
) -> Outcome:
    started = time.perf_counter()
    response = session.post(
        url,
        data={"password": password, "model": "loadtest", "id": str(random.getrandbits(32))},
        files={"fileToUpload": ("IMG_0001.JPG", photo, "image/jpeg")},
        timeout=timeout,
    )
    seconds = time.perf_counter() - started
    code = ""
    if response.status_code != 200:
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = "non_json"
    return Outcome(status=response.status_code, seconds=seconds, code=code)


def run(
    *,
    url: str,
    password: str,
    photo: bytes,
    clients: int,
    requests_total: int,
    rate: float | None = None,
    timeout: float = 90.0,
) -> Report:
    """Send `requests_total` uploads from `clients` threads; closed loop unless `rate` is set."""
    report = Report()
    counter = iter(range(requests_total))
    counter_lock = threading.Lock()
    started = time.perf_counter()

    def next_number() -> int | None:
        with counter_lock:
            return next(counter, None)

    def client() -> None:
        session = requests.Session()
        while (number := next_number()) is not None:
            if rate:
                pause = started + number / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            try:
                report.add(upload(session, url, password, photo, timeout))
            except requests.RequestException as error:
                with report.lock:
                    report.errors[type(error).__name__] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report.wall_seconds = time.perf_counter() - started
    return report


def configure_simulated_slot(base_url: str, slot: str, user: str, settings: dict[str, Any]) -> None:
    """Point `slot` at the simulated provider with these settings, through the admin API."""
    password = os.environ.get("ADMIN_PASSWORD", "")
    session = requests.Session()
    login = session.post(
        f"{base_url}/api/login", json={"username": user, "password": password}, timeout=10
    )
    login.raise_for_status()
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    current = session.get(f"{base_url}/api/slots/{slot}", timeout=10)
    current.raise_for_status()
    answer = session.put(
        f"{base_url}/api/slots/{slot}",
        json={
            "name": current.json()["name"],
            "provider_id": "simulated",
            "operation_id": "simulate",
            "settings_json": settings,
            "is_active": True,
        },
        headers={"If-Match": current.headers["ETag"]},
        timeout=10,
    )
    if answer.status_code != 200:
        raise SystemExit(f"could not configure {slot}: {answer.status_code} {answer.text}")


def parse_settings(text: str) -> dict[str, Any]:
    """ "a=1,b=lognormal" -> {"a": 1.0, "b": "lognormal"}."""
    settings: dict[str, Any] = {}
    for pair in filter(None, text.split(",")):
        key, _, value = pair.partition("=")
        try:
            settings[key.strip()] = float(value)
        except ValueError:
            settings[key.strip()] = value.strip()
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--slot", default="slot-001")
    parser.add_argument("--password", required=True)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--rate", type=float, default=None, help="uploads/s (open loop)")
    parser.add_argument("--image-mb", type=float, default=2.0)
    parser.add_argument("--provider-delay", type=float, default=None, help="seconds")
    parser.add_argument("--admin-user", help="admin for --simulate (password: $ADMIN_PASSWORD)")
    parser.add_argument(
        "--simulate",
        metavar="SETTINGS",
        help="first point the slot at the simulated provider with these settings, e.g. "
        "distribution=lognormal,delay_seconds=8,spread=0.4,error_rate=0.05,retryable_share=0.5",
    )
    args = parser.parse_args()
    if args.simulate:
        if not args.admin_user:
            parser.error("--simulate needs --admin-user")
        settings = parse_settings(args.simulate)
        configure_simulated_slot(args.url.rstrip("/"), args.slot, args.admin_user, settings)
        print(f"slot                {args.slot} -> simulated provider {settings}")
    photo = make_jpeg(args.image_mb)
    print(f"photo               {len(photo) / 1024 / 1024:.1f} MB JPEG")
    report = run(
        url=f"{args.url.rstrip('/')}/ingest/{args.slot}",
        password=args.password,
        photo=photo,
        clients=args.clients,
        requests_total=args.requests,
        rate=args.rate,
    )
    print("\n".join(report.lines(args.provider_delay)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
