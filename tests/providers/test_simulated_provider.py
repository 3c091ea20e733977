"""The simulated provider used by load tests: delays, error shares and the deadline."""

from __future__ import annotations

import random
import statistics
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from providers.base import (
    InputImage,
    ProviderDeadlineExceeded,
    ProviderError,
    ProviderRequest,
    SettingsInvalid,
)
from providers.simulated import SimulatedProvider, draw_delay

PHOTO = InputImage(data=b"\xff\xd8\xff-photo", mime="image/jpeg", name="photo")


def request(seconds_left: float = 5, **settings: Any) -> ProviderRequest:
    return ProviderRequest(
        operation_id="simulate",
        settings=settings,
        photo=PHOTO,
        deadline=timezone.now() + timedelta(seconds=seconds_left),
    )


def test_answers_with_the_photo() -> None:
    result = SimulatedProvider().run(request())

    assert (result.data, result.mime) == (PHOTO.data, PHOTO.mime)


def test_lognormal_delays_have_the_chosen_median_and_a_tail() -> None:
    rng = random.Random(7)
    delays = [draw_delay("lognormal", 8.0, 0.4, rng) for _ in range(5000)]

    assert statistics.median(delays) == pytest.approx(8.0, rel=0.05)
    assert max(delays) > 2 * 8.0  # the slow tail real providers have


def test_uniform_delays_stay_within_the_spread() -> None:
    rng = random.Random(7)
    delays = [draw_delay("uniform", 2.0, 0.5, rng) for _ in range(1000)]

    assert min(delays) >= 1.5 and max(delays) <= 2.5


def test_error_rate_and_retryable_share_are_honoured() -> None:
    provider = SimulatedProvider()
    provider._rng = random.Random(3)
    outcomes = []
    for _ in range(400):
        try:
            provider.run(request(error_rate=0.5, retryable_share=1.0))
            outcomes.append("ok")
        except ProviderError as error:
            assert error.retryable and error.code == "provider_unavailable"
            outcomes.append("error")

    assert 0.4 < outcomes.count("error") / len(outcomes) < 0.6


def test_a_delay_beyond_the_deadline_ends_at_the_deadline() -> None:
    with pytest.raises(ProviderDeadlineExceeded):
        SimulatedProvider().run(request(seconds_left=0.2, delay_seconds=30))


def test_settings_are_validated() -> None:
    with pytest.raises(SettingsInvalid) as invalid:
        SimulatedProvider().clean_settings("simulate", {"error_rate": 2, "distribution": "x"})

    assert set(invalid.value.errors) == {"error_rate", "distribution"}
