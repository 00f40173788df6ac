"""``/v1/subnets``."""

from __future__ import annotations

from aiohttp import web

from ipamd.api import wire
from ipamd.api.body import json_object, json_response, query_flag
from ipamd.api.keys import IPAM

routes = web.RouteTableDef()


@routes.post("/v1/subnets")
async def create(request: web.Request) -> web.Response:
    created = await request.app[IPAM].create_subnet(await json_object(request))
    return json_response(wire.subnet(created), status=201)


@routes.get("/v1/subnets")
async def list_all(request: web.Request) -> web.Response:
    return json_response(wire.items(wire.subnet(subnet) for subnet in await request.app[IPAM].list_subnets()))


@routes.get("/v1/subnets/{name}")
async def get(request: web.Request) -> web.Response:
    return json_response(wire.subnet(await request.app[IPAM].get_subnet(request.match_info["name"])))


@routes.patch("/v1/subnets/{name}")
async def patch(request: web.Request) -> web.Response:
    patched = await request.app[IPAM].patch_subnet(request.match_info["name"], await json_object(request))
    return json_response(wire.subnet(patched))


@routes.delete("/v1/subnets/{name}")
async def delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    released = await request.app[IPAM].delete_subnet(name, force=query_flag(request, "force"))
    return json_response(wire.deleted_subnet(name, released))
