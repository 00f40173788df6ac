"""``/v1/allocations``: list, inspect, allocate for owners outside Kubernetes, release."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict

from aiohttp import web

from ipamd.api import wire
from ipamd.api.body import json_object, json_response, path_int
from ipamd.api.keys import IPAM, POLICY
from ipamd.core import identity, model
from ipamd.core.nad import NetworkRequest
from ipamd.core.placement import parse_labels
from ipamd.core.subnet import reject_unknown
from ipamd.errors import InvalidInput
from ipamd.service import AddRequest, owner_from

routes = web.RouteTableDef()

ALLOCATE_FIELDS = frozenset({"subnet", "owner", "address", "mac", "node", "labels"})
LABEL_KINDS = ("pod", "namespace", "node")
FILTERS = ("subnet", "namespace", "pod", "provider", "node", "cluster")


@routes.get("/v1/allocations")
async def list_all(request: web.Request) -> web.Response:
    unknown = sorted(set(request.query) - set(FILTERS))
    if unknown:
        raise InvalidInput(f"unknown filter; known filters are {', '.join(FILTERS)}", field=unknown[0])
    query = request.query
    cluster = query.get("cluster")
    if cluster is not None:
        identity.cluster_name(cluster, field="cluster")
    found = await request.app[IPAM].list_allocations(
        subnet=query.get("subnet"),
        namespace=query.get("namespace"),
        pod=query.get("pod"),
        provider=query.get("provider"),
        node=query.get("node"),
        cluster=cluster,
    )
    return json_response(wire.items(wire.allocation(allocation) for allocation in found))


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
    released = await request.app[IPAM].release(path_int(request, "id"), reason="api", if_match=_if_match(request))
    return json_response(wire.allocation(released))


class PlacementLabels(TypedDict):
    """The owner's labels as ``AddRequest`` takes them (None: not given)."""

    pod_labels: Mapping[str, str] | None
    namespace_labels: Mapping[str, str] | None
    node_labels: Mapping[str, str] | None


def _labels(raw: object) -> PlacementLabels:
    """The owner's labels for placement rules: ``{"pod": {...}, "namespace": {...}, "node": {...}}``."""
    if raw is not None and not isinstance(raw, dict):
        raise InvalidInput("expected {pod, namespace, node}, each an object of label key: value", field="labels")
    given = raw or {}
    reject_unknown(given, frozenset(LABEL_KINDS), prefix="labels.")
    parsed = {
        kind: parse_labels(given[kind], field=f"labels.{kind}") for kind in LABEL_KINDS if given.get(kind) is not None
    }
    return {
        "pod_labels": parsed.get("pod"),
        "namespace_labels": parsed.get("namespace"),
        "node_labels": parsed.get("node"),
    }


def _with_etag(allocation: model.Allocation, *, status: int = 200) -> web.Response:
    response = json_response(wire.allocation(allocation), status=status)
    response.headers["ETag"] = allocation.etag
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
