"""Logging for the web and worker processes: one JSON object per line, or readable text.

`logging_config()` builds Django's LOGGING from the environment:

- `LOG_FORMAT`: `json` (the default, for log collectors) or `plain` (the default when DEBUG is
  on, for a developer's terminal);
- `LOG_LEVEL`: `INFO` by default.

A JSON line holds `timestamp` (ISO 8601, UTC), `level`, `logger`, `message`, the correlation id
of the request or job being handled (`request_id`, see `photobooth.request_id`), every field
passed in `extra=`, and `exc` (the formatted traceback) when an exception is logged. Values that
are not plain JSON are written as a short description: bytes only as their length (never their
content), unknown objects only as their type name, so that an object holding a photo or a key
can never be dumped into a log by accident. Everything goes to standard error.

Django's own loggers, uvicorn's and Python's warnings all go through the same handler, so a
process's output is JSON from the first line on. uvicorn's access log is switched off:
`photobooth.request_id` writes one line per request itself, carrying its correlation id.

Only the standard library is imported here: Django's settings import this module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from enum import Enum
from pathlib import PurePath
from typing import Any

from photobooth.request_id import current_request_id

LOG_FORMATS = ("json", "plain")

# What every LogRecord has; anything else on a record was passed in `extra`. uvicorn adds
# `color_message` (its message with terminal colours): left out.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
# The fields a JSON line always starts with; an `extra` of the same name is renamed `extra_<name>`.
_CORE_FIELDS = frozenset({"timestamp", "level", "logger", "message", "request_id", "exc"})
_MAX_DEPTH = 6


def logging_config(
    *, debug: bool = False, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Django's LOGGING for this deployment, read from `LOG_FORMAT` and `LOG_LEVEL`."""
    environ = os.environ if environ is None else environ
    log_format = environ.get("LOG_FORMAT", "").strip().lower() or ("plain" if debug else "json")
    if log_format not in LOG_FORMATS:
        raise ValueError("LOG_FORMAT must be 'json' or 'plain'")
    level = environ.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"LOG_LEVEL '{level}' is not a logging level")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": "photobooth.logging_config.JsonFormatter"},
            "plain": {"()": "photobooth.logging_config.PlainFormatter"},
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "stream": "ext://sys.stderr",
            },
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            # Django's own handlers (plain console lines in DEBUG, mail to ADMINS) give way to
            # the one above: everything propagates to the root logger.
            "django": {"handlers": [], "propagate": True},
            "django.server": {"handlers": [], "propagate": True},
            # Never logged, whatever LOG_LEVEL says: SQL statements and their parameters; URLs
            # with their query strings (urllib3's DEBUG lines; a query string may carry a key);
            # connection details (psycopg's DEBUG lines).
            "django.db.backends": {"level": "INFO"},
            "urllib3": {"level": "INFO"},
            "psycopg": {"level": "INFO"},
            # The connection pool reports every checkout and return at INFO.
            "psycopg.pool": {"level": "WARNING"},
            # uvicorn configured its loggers before loading the application; they are rerouted.
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": True, "level": "WARNING"},
        },
    }


def _timestamp(created: float) -> str:
    moment = datetime.fromtimestamp(created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # wrong arguments for the format: keep the line, say so
        return f"{record.msg!s} (unformattable arguments)"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record was given through `extra=`, made safe to write."""
    fields: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _RECORD_ATTRIBUTES or key.startswith("_"):
            continue
        fields[f"extra_{key}" if key in _CORE_FIELDS else key] = loggable(value)
    return fields


def loggable(value: Any, depth: int = 0) -> Any:
    """`value` as plain JSON data; what has no safe textual form is described, not dumped."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        # Image bytes, keys in transit: their size is all a log may know.
        return f"<{len(value)} bytes>"
    if depth >= _MAX_DEPTH:
        return f"<{type(value).__name__}>"
    if isinstance(value, Mapping):
        return {str(key): loggable(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [loggable(item, depth + 1) for item in value]
    if isinstance(value, (datetime, date, time_of_day)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (uuid.UUID, Decimal, PurePath)):
        return str(value)
    if isinstance(value, Enum):
        return loggable(value.value, depth + 1)
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    method, path = getattr(value, "method", None), getattr(value, "path", None)
    if isinstance(method, str) and isinstance(path, str):
        # An HttpRequest (Django passes one with its request warnings): never its body or
        # headers.
        return f"{method} {path}"
    return f"<{type(value).__name__}>"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        request_id = current_request_id()
        if request_id:
            entry["request_id"] = request_id
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True)


class PlainFormatter(logging.Formatter):
    """Readable lines for a terminal: time, level, logger, message, then `key=value` fields."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        fields = {}
        request_id = current_request_id()
        if request_id:
            fields["request_id"] = request_id
        fields.update(extra_fields(record))
        text = super().format(record)
        if not fields:
            return text
        first, newline, rest = text.partition("\n")
        pairs = " ".join(f"{key}={json.dumps(value)}" for key, value in fields.items())
        return f"{first} {pairs}{newline}{rest}"
