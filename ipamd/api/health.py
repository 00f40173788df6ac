"""``/healthz`` (the process serves) and ``/readyz`` (the database answers and is migrated,
and in Kubernetes mode the API server answers, the node's pod watch is synced and the
database may serve this node). CNI STATUS answers the same."""

from __future__ import annotations

from aiohttp import web

from ipamd.api.body import json_response
from ipamd.api.keys import IPAM, POLICY
from ipamd.errors import Unavailable

routes = web.RouteTableDef()


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
