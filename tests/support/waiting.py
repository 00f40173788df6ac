"""Waiting for a state in tests: poll a probe until it holds, with a deadline, never a fixed sleep.

The one polling helper of the suite; a test that must wait for something the system does
in the background (a watch event handled, a daemon recovered, a listener open) uses it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

# Short enough that a test does not wait long after the state is reached, long enough
# that a probe doing an HTTP round trip does not keep a core busy.
INTERVAL = 0.02


def wait_for(
    probe: Callable[[], T], *, timeout: float = 20.0, interval: float = INTERVAL, what: str = "condition"
) -> T:
    """Returns the first truthy result of ``probe``; fails the test after ``timeout`` seconds.

    ``probe`` may itself assert (e.g. that a process is still alive) to fail at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


async def async_wait_for(
    probe: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 20.0,
    interval: float = INTERVAL,
    what: str = "condition",
) -> T:
    """``wait_for`` in an event loop: the probe may be a coroutine function, and the loop
    runs other tasks (an in-process API double, the code under test) between polls."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        await asyncio.sleep(interval)
