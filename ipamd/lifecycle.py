"""Starting resources one after another and stopping them in the reverse order.

``ipamd.server`` and the Kubernetes mode register each resource's stop as soon as the
resource exists, so a start that fails half-way stops what did start, and shutdown stops
everything in the reverse order of start. A stop that fails is logged with the
resource's name and the others still stop: a daemon going down must close its database
and give its socket up whatever broke before.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from types import TracebackType

Stop = Callable[[], Awaitable[object] | object]


class Lifetime:
    """An ``async with`` block whose end stops, newest first, what was registered in it."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Lifetime:
        await self._stack.__aenter__()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> bool:
        return bool(await self._stack.__aexit__(kind, error, traceback))

    def on_stop(self, name: str, stop: Stop) -> None:
        """Calls ``stop`` (awaited if it returns an awaitable) when the block ends."""

        async def logged() -> None:
            try:
                result = stop()
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - logged, and the remaining resources still stop
                self._log.exception("stopping %s failed", name)

        self._stack.push_async_callback(logged)

    def task(self, task: asyncio.Task[object]) -> None:
        """Cancels ``task`` (named after it) when the block ends, and waits for it to end."""
        self.on_stop(task.get_name(), lambda: cancel(task))


async def cancel(task: asyncio.Task[object]) -> None:
    """Cancels ``task`` and waits for it to end. A task that ended already is left alone:
    how it ended is for its owner to read."""
    if task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # the caller is being cancelled too, not only the task
