"""A provider for tests: slow or failing on demand, honouring the deadline like a real adapter."""

from __future__ import annotations

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


class TestingProvider(Provider):
    """`sleep` echoes the photo after a delay; `fail` answers with a provider error."""

    __test__ = False  # not a pytest test class

    id = "testing"
    label = "Testing"
    operations = {
        "sleep": Operation(
            id="sleep",
            label="Echo after a delay",
            fields=(SettingField(name="seconds", kind="number", label="Delay", default=0),),
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
        # Like an HTTP adapter with a timeout derived from the remaining time: never past the
        # deadline.
        wanted = float(settings["seconds"])
        time.sleep(min(wanted, request.remaining_seconds()))
        if wanted > 0 and request.remaining_seconds() <= 0:
            raise ProviderDeadlineExceeded()
        return ProviderResult(data=request.photo.data, mime=request.photo.mime)
