"""An in-process daemon (the aiohttp application on a Unix socket) on each database, for
storage tests that go through the REST API without paying for a process start."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from ipamd.api.app import create_app
from ipamd.service import Ipam
from ipamd.store.database import open_database


class Rest:
    """REST calls answering (status, decoded body, headers)."""

    def __init__(self, session: aiohttp.ClientSession, ipam: Ipam) -> None:
        self.session = session
        self.ipam = ipam

    async def call(self, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any, Any]:
        async with self.session.request(
            method, f"http://ipamd{path}", json=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
        ) as reply:
            return reply.status, await reply.json(), reply.headers

    async def ok(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, answer, _ = await self.call(method, path, body, **headers)
        assert 200 <= status < 300, (status, answer)
        return answer


@pytest.fixture
async def rest(database_url: str) -> AsyncIterator[Rest]:
    database = open_database(database_url)
    await database.upgrade()
    ipam = Ipam(database, node="n1")
    runner = web.AppRunner(create_app(ipam))
    await runner.setup()
    # A Unix socket path holds at most 107 bytes; pytest's tmp_path can be longer.
    directory = tempfile.mkdtemp(prefix="ipamd-store-", dir="/tmp")
    await web.UnixSite(runner, f"{directory}/ipamd.sock").start()
    session = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=f"{directory}/ipamd.sock", limit=64))
    try:
        yield Rest(session, ipam)
    finally:
        await session.close()
        await runner.cleanup()
        await database.dispose()
        shutil.rmtree(directory, ignore_errors=True)
