"""The service and the daemon's application in the test's own process, on a fresh database
of each backend: service and storage tests that call ``Ipam`` or go through the REST API
without paying for a process start.

The fixtures ``ipam`` and ``rest`` are re-exported by the conftest of each directory that
uses them (tests/store, tests/service).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ipamd.api.app import create_app
from ipamd.service import Ipam
from ipamd.store.database import open_database


@asynccontextmanager
async def opened_ipam(database_url: str, **options: Any) -> AsyncIterator[Ipam]:
    """The service on ``database_url``, upgraded to the newest schema, closed afterwards."""
    database = open_database(database_url)
    await database.upgrade()
    ipam = Ipam(database, **options)
    try:
        yield ipam
    finally:
        await ipam.close()


@asynccontextmanager
async def serving(app: web.Application, *, prefix: str = "ipamd-") -> AsyncIterator[str]:
    """Serves ``app`` on a Unix socket in a fresh directory; yields the socket's path."""
    runner = web.AppRunner(app)
    await runner.setup()
    # A Unix socket path holds at most 107 bytes; pytest's tmp_path can be longer.
    directory = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    try:
        socket = f"{directory}/ipamd.sock"
        await web.UnixSite(runner, socket).start()
        yield socket
    finally:
        await runner.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


class Rest:
    """REST calls answering (status, decoded body, headers), and the service behind them."""

    def __init__(self, session: aiohttp.ClientSession, ipam: Ipam, app: web.Application) -> None:
        self.session = session
        self.ipam = ipam
        self.app = app

    async def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any, Any]:
        async with self.session.request(
            method, f"http://ipamd{path}", json=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
        ) as reply:
            return reply.status, await reply.json(), reply.headers

    async def ok(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, answer, _ = await self.call(method, path, body, **headers)
        assert 200 <= status < 300, (status, answer)
        return answer


@asynccontextmanager
async def rest_on(ipam: Ipam, **app_options: Any) -> AsyncIterator[Rest]:
    """The daemon's application on ``ipam``, served in this process, and a client of it."""
    app = create_app(ipam, **app_options)
    async with serving(app, prefix="ipamd-rest-") as socket:
        session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket, limit=64))
        try:
            yield Rest(session, ipam, app)
        finally:
            await session.close()


@pytest.fixture
async def ipam(database_url: str) -> AsyncIterator[Ipam]:
    """The service on a fresh database of each backend (``database_url``, tests/conftest.py)."""
    async with opened_ipam(database_url, node="n1") as service:
        yield service


@pytest.fixture
async def rest(ipam: Ipam) -> AsyncIterator[Rest]:
    """The REST API on ``ipam``, in this process."""
    async with rest_on(ipam) as client:
        yield client
