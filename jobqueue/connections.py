"""Holding database connections only while using them.

With a connection pool (PostgreSQL, see settings) a connection "closed" is one handed back to
the pool. Code that then waits — an ingest request for its job, a worker thread for its
provider — must hand its connection back first, or hundreds of waits would need hundreds of
connections.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.db import connection

P = ParamSpec("P")
R = TypeVar("R")


def release_connection() -> None:
    """Hand this thread's connection back (inside an atomic block — only in tests, which wrap
    each test in one — it is left alone)."""
    if not connection.in_atomic_block:
        connection.close()


def in_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`function` run in the request's sync thread, its database connection released after."""

    def run_and_release(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            release_connection()

    return sync_to_async(run_and_release)
