"""Bounds on connections that are not serving a request.

A client that connects and sends nothing, trickles its request head, or keeps a connection
open between requests holds a file descriptor and some memory of the daemon for as long as
it likes unless something closes it. aiohttp's keep-alive timer covers the gaps between
requests, and only recent versions start it at connect. ``ConnectionGuard`` closes every
connection that has not been inside a request handler for ``idle_timeout`` seconds, on any
aiohttp 3.x. Request bodies have a deadline of their own (``ipamd.api.body``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

# The CNI shim and ipamctl make one request per connection; probes and scrapes reconnect.
IDLE_TIMEOUT_SECONDS = 15.0
SWEEP_SECONDS = 1.0


class ConnectionGuard:
    """Closes connections idle (no request in a handler) for longer than ``idle_timeout``."""

    def __init__(self, *, idle_timeout: float = IDLE_TIMEOUT_SECONDS) -> None:
        self.idle_timeout = idle_timeout
        self._busy: dict[Any, int] = {}
        self._idle_since: dict[Any, float] = {}
        self._task: asyncio.Task[None] | None = None

    @web.middleware
    async def middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        protocol = request.protocol
        self._busy[protocol] = self._busy.get(protocol, 0) + 1
        try:
            return await handler(request)
        finally:
            left = self._busy.pop(protocol) - 1
            if left:
                self._busy[protocol] = left
            self._idle_since[protocol] = asyncio.get_running_loop().time()

    def start(self, server: web.Server) -> None:
        self._task = asyncio.create_task(self._sweep(server), name="ipamd-connection-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _sweep(self, server: web.Server) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            now = loop.time()
            still_open: dict[Any, float] = {}
            for connection in server.connections:
                if connection in self._busy:
                    continue
                # A connection seen for the first time is idle from now (at most one sweep late).
                since = self._idle_since.get(connection, now)
                if now - since >= self.idle_timeout:
                    connection.force_close()
                else:
                    still_open[connection] = since
            self._idle_since = still_open
