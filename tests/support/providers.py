"""A provider for tests: slow or failing on demand, honouring the deadline like a real adapter."""

from __future__ import annotations

import hashlib
import threading
import time

from providers.base import (
    Operation,
    Provider,
    ProviderDeadlineExceeded,
    ProviderError,
    ProviderRequest,
    ProviderResult,
    SettingField,
)

# Calls per photo (by content) in this process, for the `flaky` operation.
_calls: dict[str, int] = {}
_calls_lock = threading.Lock()


class TestingProvider(Provider):
    """Operations for tests, each echoing the photo unless it fails.

    `sleep`: after a delay, honouring the deadline like a real adapter; `hang`: ignores the
    deadline; `flaky`: a retryable error for the first `failures` calls with the same photo;
    `fail`: a provider error.
    """

    __test__ = False  # not a pytest test class

    id = "testing"
    label = "Testing"
    operations = {
        "sleep": Operation(
            id="sleep",
            label="Echo after a delay",
            fields=(SettingField(name="seconds", kind="number", label="Delay", default=0),),
        ),
        "hang": Operation(
            id="hang",
            label="Ignore the deadline (a provider that does not answer in time)",
            fields=(SettingField(name="seconds", kind="number", label="Hang for", default=30),),
        ),
        "flaky": Operation(
            id="flaky",
            label="Fail with a retryable error, then succeed",
            fields=(
                SettingField(name="failures", kind="integer", label="Failures first", default=1),
            ),
        ),
        "fail": Operation(
            id="fail",
            label="Fail",
            fields=(
                SettingField(name="retryable", kind="boolean", label="Retryable", default=False),
            ),
        ),
    }

    def run(self, request: ProviderRequest) -> ProviderResult:
        settings = self.clean_settings(request.operation_id, request.settings)
        if request.operation_id == "fail":
            raise ProviderError(
                "the testing provider was told to fail",
                code="told_to_fail",
                retryable=settings["retryable"],
            )
        if request.operation_id == "hang":
            time.sleep(float(settings["seconds"]))  # deliberately deaf to the deadline
            return ProviderResult(data=request.photo.data, mime=request.photo.mime)
        if request.operation_id == "flaky":
            key = hashlib.sha256(request.photo.data).hexdigest()
            with _calls_lock:
                _calls[key] = _calls.get(key, 0) + 1
                call = _calls[key]
            if call <= settings["failures"]:
                raise ProviderError(
                    f"temporarily unavailable (call {call})", code="unavailable", retryable=True
                )
            return ProviderResult(data=request.photo.data, mime=request.photo.mime)
        # Like an HTTP adapter with a timeout derived from the remaining time: never past the
        # deadline.
        wanted = float(settings["seconds"])
        time.sleep(min(wanted, request.remaining_seconds()))
        if wanted > 0 and request.remaining_seconds() <= 0:
            raise ProviderDeadlineExceeded()
        return ProviderResult(data=request.photo.data, mime=request.photo.mime)
