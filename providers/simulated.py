"""A stand-in AI provider for load tests and rehearsals: known delays, known error rate, no cost.

Not offered by default. Enable it with
`PHOTOBOOTH_EXTRA_PROVIDERS=providers.simulated.SimulatedProvider`, then point a slot at it (the
load test, bench/loadtest.py, can do that through the admin API). It answers with the guest's
own photo after a delay drawn from the chosen distribution, fails a chosen share of calls the
way real providers do (rate limits and outages, retryable; refusals, final), and honours the
job's deadline like a real adapter.
"""

from __future__ import annotations

import math
import random
import time

from providers.base import (
    HEIC,
    JPEG,
    PNG,
    WEBP,
    Operation,
    Provider,
    ProviderDeadlineExceeded,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    SettingField,
)

DISTRIBUTIONS = ("fixed", "uniform", "lognormal")


def draw_delay(distribution: str, mean: float, spread: float, rng: random.Random) -> float:
    """A delay in seconds: `fixed` = mean; `uniform` = mean ± spread; `lognormal` = median mean
    with shape `spread` (0.3–0.6 resembles real image models: mostly near the median, a long
    tail of slow answers)."""
    if distribution == "uniform":
        return max(0.0, rng.uniform(mean - spread, mean + spread))
    if distribution == "lognormal" and mean > 0:
        return rng.lognormvariate(math.log(mean), spread)
    return max(0.0, mean)


class SimulatedProvider(Provider):
    id = "simulated"
    label = "Simulated provider (load tests)"
    accepted_mimes = frozenset({JPEG, PNG, WEBP, HEIC})
    operations = {
        "simulate": Operation(
            id="simulate",
            label="Answer with the photo after a simulated delay",
            fields=(
                SettingField(
                    name="distribution",
                    kind="choice",
                    label="Delay distribution",
                    choices=DISTRIBUTIONS,
                    default="fixed",
                ),
                SettingField(
                    name="delay_seconds",
                    kind="number",
                    label="Delay (mean, or median for lognormal)",
                    default=0,
                    minimum=0,
                    maximum=600,
                ),
                SettingField(
                    name="spread",
                    kind="number",
                    label="Spread (± seconds for uniform, shape for lognormal)",
                    default=0,
                    minimum=0,
                    maximum=600,
                ),
                SettingField(
                    name="error_rate",
                    kind="number",
                    label="Share of calls failing (0–1)",
                    default=0,
                    minimum=0,
                    maximum=1,
                ),
                SettingField(
                    name="retryable_share",
                    kind="number",
                    label="Share of failures that are retryable (429/503-like)",
                    default=0.5,
                    minimum=0,
                    maximum=1,
                ),
            ),
        )
    }

    def __init__(self) -> None:
        self._rng = random.Random()  # noqa: S311 - simulation, not security

    def run(self, request: ProviderRequest) -> ProviderResult:
        settings = self.clean_settings(request.operation_id, request.settings)
        delay = draw_delay(
            settings["distribution"], settings["delay_seconds"], settings["spread"], self._rng
        )
        remaining = request.ensure_time_left()
        time.sleep(min(delay, remaining))
        if delay >= remaining:
            raise ProviderDeadlineExceeded()
        if self._rng.random() < settings["error_rate"]:
            if self._rng.random() < settings["retryable_share"]:
                raise ProviderError("simulated outage", code="provider_unavailable", retryable=True)
            raise ProviderError("simulated refusal", code="rejected")
        return ProviderResult(data=request.photo.data, mime=request.photo.mime)
