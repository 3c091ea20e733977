"""Holding database connections only while using them.

With a connection pool (PostgreSQL, see settings) a connection "closed" is one handed back to
the pool. Code that then waits — an ingest request for its job, a worker thread for its
provider — must hand its connection back first, or hundreds of waits would need hundreds of
connections.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

P = ParamSpec("P")
R = TypeVar("R")


def release_connection() -> None:
    """Hand this thread's connection back (inside an atomic block — only in tests, which wrap
    each test in one — it is left alone)."""
    if not connection.in_atomic_block:
        connection.close()


_admissions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
    weakref.WeakKeyDictionary()
)


def _admission() -> asyncio.Semaphore:
    """How many sync steps of requests may run at once in this process (event loop)."""
    loop = asyncio.get_running_loop()
    semaphore = _admissions.get(loop)
    if semaphore is None:
        semaphore = _admissions[loop] = asyncio.Semaphore(settings.WEB_CONCURRENT_DB_STEPS)
    return semaphore


def in_thread(function: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`function` run in the request's sync thread, its database connection released after.

    At most WEB_CONCURRENT_DB_STEPS such steps run at once per process; the others wait their
    turn as coroutines. A burst of hundreds of uploads then queues cheaply here instead of
    timing out in the connection pool (and on 2 cores more at once would not go faster).
    """

    run = sync_to_async(_releasing(function))

    async def admitted(*args: P.args, **kwargs: P.kwargs) -> R:
        async with _admission():
            return await run(*args, **kwargs)

    return admitted


def _releasing(function: Callable[P, R]) -> Callable[P, R]:
    def run_and_release(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        finally:
            release_connection()

    return run_and_release
