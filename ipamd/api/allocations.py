"""``/v1/allocations``: list, inspect, allocate for owners outside Kubernetes, release."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ipamd.api.body import json_object, json_response, path_int
from ipamd.api.keys import IPAM, POLICY
from ipamd.core import identity
from ipamd.core.nad import NetworkRequest
from ipamd.core.placement import parse_labels
from ipamd.core.subnet import reject_unknown
from ipamd.errors import InvalidInput
from ipamd.service import AddRequest, owner_from
from ipamd.service.allocation import allocation_etag

routes = web.RouteTableDef()

ALLOCATE_FIELDS = frozenset({"subnet", "owner", "address", "mac", "node", "labels"})
LABEL_KINDS = ("pod", "namespace", "node")
FILTERS = ("subnet", "namespace", "pod", "provider", "node", "cluster")


@routes.get("/v1/allocations")
async def list_all(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - set(FILTERS))
    if unknown:
        raise InvalidInput(f"unknown filter; known filters are {', '.join(FILTERS)}", field=unknown[0])
    filters: dict[str, Any] = {key: request.query[key] for key in FILTERS if key in request.query}
    if "cluster" in filters:
        identity.cluster_name(filters["cluster"], field="cluster")
    return json_response({"items": await request.app[IPAM].list_allocations(**filters)})


@routes.get("/v1/allocations/{id}")
async def get(request: web.Request) -> web.Response:
    return _with_etag(await request.app[IPAM].get_allocation(path_int(request, "id")))


@routes.post("/v1/allocations")
async def create(request: web.Request) -> web.Response:
    ipam = request.app[IPAM]
    body = await json_object(request)
    reject_unknown(body, ALLOCATE_FIELDS)
    subnet_name = body.get("subnet")
    if not isinstance(subnet_name, str) or not subnet_name:
        raise InvalidInput("required: the name of the subnet", field="subnet")
    network_key = await ipam.network_key_of(subnet_name)
    address = body.get("address")
    if address is not None and not isinstance(address, str):
        raise InvalidInput("expected an address, or 'v4,v6' for dual stack", field="address")
    mac = body.get("mac")
    if mac is not None and not isinstance(mac, str):
        raise InvalidInput("expected a MAC address string", field="mac")
    allocate = AddRequest(
        owner=owner_from(body.get("owner"), network_key=network_key),
        network=NetworkRequest(network_key, None),
        subnet_name=subnet_name,
        static_ips=tuple(part.strip() for part in address.split(",")) if address else (),
        mac=mac,
        field_prefix="address",
        node=None if body.get("node") is None else identity.node(body["node"], field="node"),
        **_labels(body.get("labels")),
    )
    # Kubernetes mode on SQLite: a node that does not hold the database's claim must not
    # hand out addresses through the REST API either.
    await request.app[POLICY].may_allocate()
    return _with_etag(await ipam.allocate(allocate), status=201)


@routes.delete("/v1/allocations/{id}")
async def delete(request: web.Request) -> web.Response:
    """Releases the allocation; with ``If-Match`` only while it is the one the client read."""
    return json_response(
        await request.app[IPAM].release(path_int(request, "id"), reason="api", if_match=_if_match(request))
    )


def _labels(raw: object) -> dict[str, Any]:
    """The owner's labels for placement rules: ``{"pod": {...}, "namespace": {...}, "node": {...}}``."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidInput("expected {pod, namespace, node}, each an object of label key: value", field="labels")
    reject_unknown(raw, frozenset(LABEL_KINDS), prefix="labels.")
    return {
        f"{kind}_labels": parse_labels(raw[kind], field=f"labels.{kind}")
        for kind in LABEL_KINDS
        if raw.get(kind) is not None
    }


def _with_etag(body: dict[str, Any], *, status: int = 200) -> web.Response:
    response = json_response(body, status=status)
    response.headers["ETag"] = allocation_etag(body)
    return response


def _if_match(request: web.Request) -> list[str] | None:
    values = request.headers.getall("If-Match", [])
    if not values:
        return None
    tags = [tag.strip() for value in values for tag in value.split(",") if tag.strip()]
    if not tags or any(
        tag != "*" and not (len(tag) >= 2 and tag.startswith('"') and tag.endswith('"')) for tag in tags
    ):
        raise InvalidInput(
            'expected "*" or entity tags in double quotes, as the ETag header gives them', field="If-Match"
        )
    return tags
