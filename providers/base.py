"""The provider interface: what every AI adapter declares and how it is called.

Adapters never touch the ORM. The worker hands them a ProviderRequest (the photo, the slot's
operation and settings, template images, the job's deadline and a way to publish a temporary
public URL) and gets back a ProviderResult or a ProviderError.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

JPEG = "image/jpeg"
PNG = "image/png"
WEBP = "image/webp"
HEIC = "image/heic"


@dataclass(frozen=True)
class InputImage:
    """An image handed to a provider: the photo or a template."""

    data: bytes
    mime: str
    name: str = "image"


@dataclass(frozen=True)
class ProviderResult:
    """What an adapter returns on success."""

    data: bytes
    mime: str
    provider_job_reference: str = ""


class ProviderError(Exception):
    """A provider call failed. `retryable` says whether trying again may help."""

    def __init__(self, message: str, *, code: str = "provider_error", retryable: bool = False):
        super().__init__(message)
        self.code = code
        self.retryable = retryable
        self.message = message


class ProviderDeadlineExceeded(ProviderError):
    """The job's deadline passed before the provider produced a result."""

    def __init__(self, message: str = "deadline reached before the provider answered"):
        super().__init__(message, code="timeout", retryable=False)


@dataclass(frozen=True)
class ProviderRequest:
    """Everything an adapter needs for one job."""

    operation_id: str
    settings: Mapping[str, Any]
    photo: InputImage
    deadline: datetime
    templates: Mapping[str, InputImage] = field(default_factory=dict)
    # Publishes an image at a temporary public URL (for providers that read inputs by URL).
    publish_temporary: Callable[[InputImage], str] | None = None
    # Records a provider event (call, retry, poll) in the job's processing log.
    record_event: Callable[[str, Mapping[str, Any]], None] | None = None
    # Where the provider is reached and the key to call it with (never logged or stored).
    base_url: str = ""
    api_key: str = field(default="", repr=False)

    def require_api_key(self, provider_id: str) -> str:
        """The API key, or a non-retryable ProviderError telling the operator to set one."""
        if not self.api_key:
            raise ProviderError(
                f"no API key configured for {provider_id}: set it in the settings",
                code="not_configured",
            )
        return self.api_key

    def remaining_seconds(self) -> float:
        """Seconds left until the job's deadline, never negative."""
        return max(0.0, (self.deadline - timezone.now()).total_seconds())

    def ensure_time_left(self) -> float:
        """The remaining seconds, or ProviderDeadlineExceeded when none are left."""
        remaining = self.remaining_seconds()
        if remaining <= 0:
            raise ProviderDeadlineExceeded()
        return remaining


class SettingsInvalid(Exception):
    """Slot settings do not fit the operation; `errors` maps each field to its messages."""

    def __init__(self, errors: Mapping[str, list[str]]):
        super().__init__("; ".join(f"{key}: {', '.join(msgs)}" for key, msgs in errors.items()))
        self.errors = dict(errors)


@dataclass(frozen=True)
class SettingField:
    """One setting an operation takes. `kind` drives validation and the dashboard's form."""

    name: str
    kind: str  # "string", "text", "choice", "integer", "number", "boolean", "template"
    label: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    help_text: str = ""

    def clean(self, value: Any) -> Any:
        """The value converted to its kind, or ValueError with a message for the operator."""
        if self.kind in ("string", "text", "template"):
            if not isinstance(value, str):
                raise ValueError("must be a string")
            if self.kind == "template":
                return value.strip()
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"must be one of: {', '.join(self.choices)}")
            return value
        if self.kind == "boolean":
            if not isinstance(value, bool):
                raise ValueError("must be true or false")
            return value
        if self.kind in ("integer", "number"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError("must be a number")
            if not math.isfinite(value):
                raise ValueError("must be a finite number")
            if self.kind == "integer" and int(value) != value:
                raise ValueError("must be a whole number")
            number = int(value) if self.kind == "integer" else float(value)
            if self.minimum is not None and number < self.minimum:
                raise ValueError(f"must be at least {self.minimum:g}")
            if self.maximum is not None and number > self.maximum:
                raise ValueError(f"must be at most {self.maximum:g}")
            return number
        raise ValueError(f"unknown setting kind {self.kind!r}")

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description for the API and the dashboard form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "label": self.label,
            "required": self.required,
            "default": self.default,
            "choices": list(self.choices),
            "minimum": self.minimum,
            "maximum": self.maximum,
            "help_text": self.help_text,
        }


@dataclass(frozen=True)
class Operation:
    """An operation a provider offers, with the settings it takes."""

    id: str
    label: str
    fields: tuple[SettingField, ...] = ()

    def template_keys(self) -> tuple[str, ...]:
        """Names of the settings that refer to a template image."""
        return tuple(f.name for f in self.fields if f.kind == "template")

    def clean_settings(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Validated settings with defaults filled in, or SettingsInvalid with per-field errors."""
        if not isinstance(settings, Mapping):
            raise SettingsInvalid({"settings_json": ["must be a JSON object"]})
        known = {f.name: f for f in self.fields}
        errors: dict[str, list[str]] = {}
        cleaned: dict[str, Any] = {}
        for name in settings:
            if name not in known:
                errors[name] = [f"unknown setting for operation {self.id!r}"]
        for name, setting in known.items():
            value = settings.get(name)
            if value is None or value == "":
                if setting.required and setting.default is None:
                    errors[name] = ["this setting is required"]
                elif setting.default is not None:
                    cleaned[name] = setting.default
                continue
            try:
                cleaned[name] = setting.clean(value)
            except ValueError as error:
                errors[name] = [str(error)]
        if errors:
            raise SettingsInvalid(errors)
        return cleaned


class Provider(ABC):
    """An AI provider adapter. Subclasses declare their identity and operations."""

    id: str
    label: str
    operations: Mapping[str, Operation]
    accepted_mimes: frozenset[str] = frozenset({JPEG, PNG, WEBP})
    requires_api_key: bool = False

    def operation(self, operation_id: str) -> Operation:
        """The named operation, or SettingsInvalid when the provider has no such operation."""
        try:
            return self.operations[operation_id]
        except KeyError:
            raise SettingsInvalid(
                {"operation_id": [f"provider {self.id!r} has no operation {operation_id!r}"]}
            ) from None

    def clean_settings(self, operation_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Settings validated for the operation (see Operation.clean_settings)."""
        return self.operation(operation_id).clean_settings(settings)

    @abstractmethod
    def run(self, request: ProviderRequest) -> ProviderResult:
        """Process one job. Must return or raise before request.deadline."""

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly description: operations and each operation's settings."""
        return {
            "id": self.id,
            "label": self.label,
            "requires_api_key": self.requires_api_key,
            "accepted_mimes": sorted(self.accepted_mimes),
            "operations": [
                {
                    "id": op.id,
                    "label": op.label,
                    "settings": [f.describe() for f in op.fields],
                }
                for op in self.operations.values()
            ],
        }
