"""``/v1/reservations``."""

from __future__ import annotations

from aiohttp import web

from ipamd.api import wire
from ipamd.api.body import json_object, json_response, path_int
from ipamd.api.keys import IPAM

routes = web.RouteTableDef()


@routes.post("/v1/reservations")
async def create(request: web.Request) -> web.Response:
    created = await request.app[IPAM].create_reservation(await json_object(request))
    return json_response(wire.reservation(created), status=201)


@routes.get("/v1/reservations")
async def list_all(request: web.Request) -> web.Response:
    found = await request.app[IPAM].list_reservations()
    return json_response(wire.items(wire.reservation(reservation) for reservation in found))


@routes.get("/v1/reservations/{id}")
async def get(request: web.Request) -> web.Response:
    return json_response(wire.reservation(await request.app[IPAM].get_reservation(path_int(request, "id"))))


@routes.put("/v1/reservations/{id}")
async def replace(request: web.Request) -> web.Response:
    """Rewrites the reservation's MAC, owner and note in one transaction: its address stays
    reserved throughout. The body is a create's; its subnet and address, when given, must be
    the reservation's own (another address is another reservation)."""
    reservation_id = path_int(request, "id")
    replaced = await request.app[IPAM].replace_reservation(reservation_id, await json_object(request))
    return json_response(wire.reservation(replaced))


@routes.delete("/v1/reservations/{id}")
async def delete(request: web.Request) -> web.Response:
    reservation_id = path_int(request, "id")
    await request.app[IPAM].delete_reservation(reservation_id)
    return json_response(wire.deleted(reservation_id))
