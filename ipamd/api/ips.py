"""``/v1/ips/{address}``: who holds an address now, and who held it before (a page at a time)."""

from __future__ import annotations

from aiohttp import web

from ipamd.api import wire
from ipamd.api.body import json_response
from ipamd.api.keys import IPAM
from ipamd.core.history import history_query

routes = web.RouteTableDef()


@routes.get("/v1/ips/{address}")
async def get(request: web.Request) -> web.Response:
    query = history_query(request.query)
    return json_response(wire.address_history(await request.app[IPAM].ip_info(request.match_info["address"], query)))
