"""``/v1/ips/{address}``: who holds an address now, and who held it before."""

from __future__ import annotations

from aiohttp import web

from ipamd.api.body import json_response
from ipamd.api.keys import IPAM

routes = web.RouteTableDef()


@routes.get("/v1/ips/{address}")
async def get(request: web.Request) -> web.Response:
    return json_response(await request.app[IPAM].ip_info(request.match_info["address"]))
