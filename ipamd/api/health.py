"""``/healthz`` (the process serves) and ``/readyz`` (the database answers and is migrated,
and in Kubernetes mode the API server answers, the node's pod watch is synced and the
database may serve this node). CNI STATUS answers the same."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ipamd.api.body import json_response
from ipamd.api.keys import IPAM, POLICY
from ipamd.errors import Unavailable

routes = web.RouteTableDef()
log = logging.getLogger("ipamd.database")

# How often the daemon looks at its database unasked: the SQLite file still the one opened,
# and, while writes fail, whether they work again (so the log says so without a request).
WATCH_SECONDS = 5.0


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return json_response({"ok": True})


async def readiness(app: web.Application) -> tuple[bool, str]:
    """The one readiness answer of ``/readyz`` and the plugin's CNI STATUS."""
    ready, reason = await app[IPAM].ready()
    if ready:
        ready, reason = app[POLICY].ready()
    return ready, reason


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    ready, reason = await readiness(request.app)
    if not ready:
        raise Unavailable(reason)
    return json_response({"ready": True})


async def watch_database(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: checks the database every WATCH_SECONDS while the application runs."""

    async def watch() -> None:
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            try:
                await app[IPAM].check_writes()
            except Exception:  # noqa: BLE001 - the watch must outlive any one failure
                log.exception("database check failed")

    task = asyncio.create_task(watch())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
