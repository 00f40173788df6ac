"""``/v1/cni/*``: what the CNI shim calls (see docs/api.md)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ipamd.api import health
from ipamd.api.body import json_object, json_response
from ipamd.api.keys import IPAM, POLICY
from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest, network_key, parse_network_request
from ipamd.core.subnet import reject_unknown
from ipamd.errors import AddressConflict, InvalidInput, IpamError, NotFound, Unavailable
from ipamd.service import AddRequest

routes = web.RouteTableDef()

IDENTITY_FIELDS = frozenset({"containerId", "ifName", "netns", "network", "podNamespace", "podName", "podUid", "ipam", "cniVersion"})
ADD_FIELDS = IDENTITY_FIELDS | {"ips", "mac"}
CHECK_FIELDS = IDENTITY_FIELDS | {"prevResult"}
GC_FIELDS = frozenset({"network", "ipam", "validAttachments", "cniVersion"})


def _string(body: dict[str, Any], key: str, *, required: bool, limit: int = 253) -> str | None:
    value = body.get(key)
    if value is None or value == "":
        if required:
            raise InvalidInput("required", field=key)
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise InvalidInput(f"expected a string of at most {limit} characters", field=key)
    return value


def parse_add_request(body: dict[str, Any], *, known: frozenset[str], identity_only: bool = False) -> AddRequest:
    """Returns the allocation request a CNI call describes.

    ``identity_only`` (DEL, CHECK) reads only what identifies the attachment: an inline
    range edited since the ADD must not stop its attachment from being found and released.
    """
    reject_unknown(body, known)
    container_id = _string(body, "containerId", required=True)
    interface = _string(body, "ifName", required=True, limit=64)
    network_name = _string(body, "network", required=True)
    assert container_id and interface and network_name
    network = _network(body, network_name, identity_only=identity_only)
    namespace = _string(body, "podNamespace", required=False) or ""
    pod = _string(body, "podName", required=False)
    ips = body.get("ips") or []
    if not isinstance(ips, list) or len(ips) > 2:
        raise InvalidInput("expected a list of at most two addresses (one per family)", field="ips")
    mac = body.get("mac")
    if mac is not None and not isinstance(mac, str):
        raise InvalidInput("expected a MAC address string", field="mac")
    owner = Owner(
        network_key=network.network_key,
        namespace=namespace if pod else "",
        # Without a pod (plain containers), the container id identifies the attachment.
        pod=pod or container_id,
        interface=interface,
    )
    return AddRequest(
        owner=owner,
        network=network,
        container_id=container_id,
        pod_uid=_string(body, "podUid", required=False, limit=64),
        netns=_string(body, "netns", required=False, limit=1024),
        static_ips=tuple(ips),
        mac=mac or None,
    )


def _network(body: dict[str, Any], network_name: str, *, identity_only: bool) -> NetworkRequest:
    ipam = body.get("ipam")
    if not identity_only:
        return parse_network_request(ipam, network_name=network_name)
    if not isinstance(ipam, dict):
        raise InvalidInput("expected the ipam section of the network config", field="ipam")
    return NetworkRequest(network_key(ipam, network_name), None)


def cni_ips(allocation: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"address": a["cidr"], "gateway": a["gateway"], "family": a["family"]} for a in allocation["addresses"]]


@routes.post("/v1/cni/add")
async def add(request: web.Request) -> web.Response:
    ipam, policy = request.app[IPAM], request.app[POLICY]
    add_request = parse_add_request(await json_object(request), known=ADD_FIELDS)
    try:
        add_request = await policy.prepare(add_request)
        allocation = await ipam.allocate(add_request)
    except IpamError as e:
        if not isinstance(e, Unavailable):
            await policy.failed(add_request, e)
        raise
    await policy.committed(add_request, allocation)
    return json_response(
        {
            "allocationId": allocation["id"],
            "subnet": allocation["subnet"],
            "ips": cni_ips(allocation),
            "routes": allocation["routes"],
            "dns": allocation["dns"],
            "mac": allocation["mac"],
        }
    )


@routes.post("/v1/cni/del")
async def delete(request: web.Request) -> web.Response:
    ipam, policy = request.app[IPAM], request.app[POLICY]
    body = await json_object(request)
    del_request = parse_add_request(body, known=ADD_FIELDS, identity_only=True)
    if not await policy.release_on_del(del_request):
        return json_response({"released": 0, "kept": True})
    released = await ipam.release_owner(del_request.owner, reason="cni del", container_id=del_request.container_id)
    return json_response({"released": len(released)})


@routes.post("/v1/cni/check")
async def check(request: web.Request) -> web.Response:
    ipam = request.app[IPAM]
    body = await json_object(request)
    check_request = parse_add_request(body, known=CHECK_FIELDS, identity_only=True)
    allocation = await ipam.find_owner(check_request.owner)
    if allocation is None:
        raise NotFound(f"ipamd holds no address for {check_request.owner.label}")
    held = sorted(a["cidr"] for a in allocation["addresses"])
    previous = body.get("prevResult")
    if not isinstance(previous, dict) or not isinstance(previous.get("ips"), list):
        raise InvalidInput("expected the prevResult object with its ips", field="prevResult")
    claimed = sorted(
        str(ip.get("address")) for ip in previous["ips"] if isinstance(ip, dict)
    )
    if claimed != held:
        raise AddressConflict(f"prevResult has {', '.join(claimed) or 'no address'} but ipamd holds {', '.join(held)} for {check_request.owner.label}")
    return json_response({"ips": cni_ips(allocation)})


@routes.post("/v1/cni/gc")
async def gc(request: web.Request) -> web.Response:
    ipam = request.app[IPAM]
    body = await json_object(request)
    reject_unknown(body, GC_FIELDS)
    network_name = _string(body, "network", required=True)
    assert network_name
    network = _network(body, network_name, identity_only=True)
    valid_raw = body.get("validAttachments")
    if not isinstance(valid_raw, list):
        raise InvalidInput("expected a list of {containerId, ifName}", field="validAttachments")
    valid = set()
    for index, item in enumerate(valid_raw):
        if not isinstance(item, dict) or not isinstance(item.get("containerId"), str) or not isinstance(item.get("ifName"), str):
            raise InvalidInput("expected {containerId, ifName}", field=f"validAttachments[{index}]")
        valid.add((item["containerId"], item["ifName"]))
    stale = [row.id for row in await ipam.allocations_for_network(network.network_key) if (row.container_id, row.interface) not in valid]
    released = await ipam.release_ids(stale, reason="cni gc")
    return json_response({"released": len(released)})


# CNI STATUS asks exactly what /readyz answers: can ADD be served now?
routes.get("/v1/cni/status")(health.readyz)
