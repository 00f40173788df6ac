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


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    ready, reason = await request.app[IPAM].ready()
    if ready:
        ready, reason = request.app[POLICY].ready()
    if not ready:
        raise Unavailable(reason)
    return json_response({"ready": True})
