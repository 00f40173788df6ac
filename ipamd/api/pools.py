"""``/v1/pools``."""

from __future__ import annotations

from aiohttp import web

from ipamd.api import wire
from ipamd.api.body import json_object, json_response
from ipamd.api.keys import IPAM

routes = web.RouteTableDef()


@routes.post("/v1/pools")
async def create(request: web.Request) -> web.Response:
    return json_response(wire.pool(await request.app[IPAM].create_pool(await json_object(request))), status=201)


@routes.get("/v1/pools")
async def list_all(request: web.Request) -> web.Response:
    return json_response(wire.items(wire.pool(pool) for pool in await request.app[IPAM].list_pools()))


@routes.get("/v1/pools/{name}")
async def get(request: web.Request) -> web.Response:
    return json_response(wire.pool(await request.app[IPAM].get_pool(request.match_info["name"])))


@routes.put("/v1/pools/{name}")
async def replace(request: web.Request) -> web.Response:
    pool, created = await request.app[IPAM].replace_pool(request.match_info["name"], await json_object(request))
    return json_response(wire.pool(pool), status=201 if created else 200)


@routes.delete("/v1/pools/{name}")
async def delete(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    await request.app[IPAM].delete_pool(name)
    return json_response(wire.deleted(name))
