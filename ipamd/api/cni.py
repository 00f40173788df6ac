"""``/v1/cni/*``: the CNI plugin's one endpoint, and the attachment operations behind it.

``POST /v1/cni/exec`` is what the plugin on each node forwards every verb to (docs/api.md,
"CNI wire protocol"); ``ipamd.cni.protocol`` reads it and writes the answer. The
structured routes (add, del, check, gc, status) run the same operations for other clients.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from aiohttp import web

from ipamd.api import health, wire
from ipamd.api.body import json_object, json_response
from ipamd.api.keys import CNI_OUTCOME, IPAM, POLICY
from ipamd.cni import protocol
from ipamd.core import identity, model
from ipamd.core.allocation import Owner
from ipamd.core.nad import (
    NetworkRequest,
    network_key,
    parse_network_request,
    parse_resolv_conf,
    result_dns,
    result_routes,
)
from ipamd.core.release import HOLD_VM
from ipamd.core.subnet import reject_unknown
from ipamd.errors import (
    AddressConflict,
    IncompatiblePlugin,
    InvalidInput,
    IpamError,
    NotAvailable,
    NotFound,
    Unavailable,
)
from ipamd.service import AddRequest, HeldByAnotherPod, LabelsNeeded

routes = web.RouteTableDef()
log = logging.getLogger("ipamd.cni")

IDENTITY_FIELDS = frozenset(
    {"containerId", "ifName", "netns", "network", "podNamespace", "podName", "podUid", "ipam", "cniVersion"}
)
ADD_FIELDS = IDENTITY_FIELDS | {"ips", "mac"}
ADOPT_FIELDS = ADD_FIELDS | {"node"}
CHECK_FIELDS = IDENTITY_FIELDS | {"prevResult"}
GC_FIELDS = frozenset({"network", "ipam", "validAttachments", "cniVersion"})


def _optional(body: Mapping[str, Any], key: str, check: Callable[..., str]) -> str | None:
    """Returns the field checked by its identity rule (ipamd.core.identity), or None when absent."""
    value = body.get(key)
    return None if value is None or value == "" else check(value, field=key)


def _required(body: Mapping[str, Any], key: str, check: Callable[..., str]) -> str:
    value = body.get(key)
    if value is None or value == "":
        raise InvalidInput("required", field=key)
    return check(value, field=key)


def parse_add_request(body: Mapping[str, Any], *, known: frozenset[str], identity_only: bool = False) -> AddRequest:
    """Returns the allocation request a CNI call describes.

    ``identity_only`` (DEL, CHECK) reads only what identifies the attachment: an inline
    range edited since the ADD must not stop its attachment from being found and released.
    """
    reject_unknown(body, known)
    container_id = _required(body, "containerId", identity.container_id)
    interface = _required(body, "ifName", identity.interface)
    network_name = _required(body, "network", identity.network_name)
    network = _network(body, network_name, identity_only=identity_only)
    pod = _optional(body, "podName", identity.pod)
    # A namespace without a pod names nothing: plain containers are keyed by container id.
    namespace = _optional(body, "podNamespace", identity.namespace) if pod else None
    ips = body.get("ips") or []
    if not isinstance(ips, list) or len(ips) > 2:
        raise InvalidInput("expected a list of at most two addresses (one per family)", field="ips")
    mac = body.get("mac")
    if mac is not None and not isinstance(mac, str):
        raise InvalidInput("expected a MAC address string", field="mac")
    owner = Owner(
        network_key=network.network_key,
        namespace=namespace or "",
        # Without a pod (plain containers), the container id identifies the attachment.
        pod=pod or container_id,
        interface=interface,
    )
    return AddRequest(
        owner=owner,
        network=network,
        container_id=container_id,
        pod_uid=_optional(body, "podUid", identity.pod_uid),
        netns=_optional(body, "netns", identity.netns),
        origin="cni",
        static_ips=tuple(ips),
        mac=mac or None,
    )


def _network(body: Mapping[str, Any], network_name: str, *, identity_only: bool) -> NetworkRequest:
    ipam = body.get("ipam")
    if not identity_only:
        return parse_network_request(ipam, network_name=network_name)
    if not isinstance(ipam, dict):
        raise InvalidInput("expected the ipam section of the network config", field="ipam")
    return NetworkRequest(network_key(ipam, network_name), None)


def cni_ips(allocation: model.Allocation) -> list[protocol.HeldAddress]:
    return [{"address": held.cidr, "gateway": held.gateway, "family": held.family} for held in allocation.addresses]


# The operations below take a body as it came (a structured route's JSON, or what
# ipamd.cni.protocol made of the plugin's request) and validate it themselves.


async def _add(app: web.Application, body: Mapping[str, Any], *, adopt: bool = False) -> protocol.AddAnswer:
    ipam, policy = app[IPAM], app[POLICY]
    add_request = parse_add_request(body, known=ADOPT_FIELDS if adopt else ADD_FIELDS)
    if adopt:
        # An address another IPAM gave a running pod (ipamctl import): held for the pod's
        # node, and not a CNI GC's to collect until the pod's own ADD on that node takes it.
        if not add_request.static_ips:
            raise InvalidInput("required: the addresses the pod holds", field="ips")
        add_request = replace(add_request, origin="import", node=_optional(body, "node", identity.node))
    # Read before allocating: an unreadable file must not leave an address held.
    from_file = await _resolv_conf(add_request.network.resolv_conf) if add_request.network.resolv_conf else None
    try:
        add_request = await policy.prepare(add_request)
        takeover_asked = False
        while True:
            try:
                allocation = await ipam.allocate(add_request)
                break
            except HeldByAnotherPod as held:
                if takeover_asked:
                    raise
                # Rare (a recreated pod): only now does the policy ask whether it replaced the holder.
                takeover_asked = True
                add_request = await policy.confirm_takeover(add_request, held.held_uid)
            except LabelsNeeded as needed:
                # A placement rule needs labels no watch holds yet: read once, ask again.
                if not needed.kinds <= add_request.labels_on_demand:
                    raise
                add_request = await policy.read_labels(add_request, needed.kinds)
    except IpamError as e:
        if not isinstance(e, Unavailable):
            await policy.failed(add_request, e)
        raise
    if not adopt:
        # An adopted pod keeps what its old IPAM wrote; its own next ADD writes ipamd's result
        # (and only its node's daemon may write its annotations).
        await policy.committed(add_request, allocation)
    dns = dict(allocation.dns) if from_file is None else result_dns(allocation.dns, from_file)
    return {
        "allocationId": allocation.id,
        "subnet": allocation.subnet,
        "ips": cni_ips(allocation),
        "routes": result_routes(wire.routes(allocation.routes), add_request.network.routes, add_request.routes),
        "dns": dns,
        "mac": allocation.mac,
    }


async def _resolv_conf(path: str) -> dict[str, Any]:
    """Reads host-local's ``resolvConf`` (the daemon runs on the node and sees its files)."""
    try:
        text = await asyncio.to_thread(Path(path).read_text, encoding="utf-8", errors="replace")
    except OSError as e:
        raise InvalidInput(
            f"resolvConf {path} cannot be read by ipamd ({e.strerror or e}); "
            "mount it into the daemon, or give the servers as ipam.dns",
            field="ipam.resolvConf",
        ) from e
    return parse_resolv_conf(text)


async def _del(app: web.Application, body: Mapping[str, Any]) -> protocol.DelAnswer:
    ipam, policy = app[IPAM], app[POLICY]
    del_request = parse_add_request(body, known=ADD_FIELDS, identity_only=True)
    if not await policy.release_on_del(del_request):
        return {"released": 0, "kept": True}
    released = await ipam.release_owner(del_request.owner, reason="cni del", container_id=del_request.container_id)
    return {"released": len(released)}


async def _check(app: web.Application, body: Mapping[str, Any]) -> protocol.CheckAnswer:
    ipam = app[IPAM]
    check_request = await app[POLICY].owner_of(parse_add_request(body, known=CHECK_FIELDS, identity_only=True))
    allocation = await ipam.find_owner(check_request.owner)
    if allocation is None:
        raise NotFound(f"ipamd holds no address for {check_request.owner.label}")
    held = sorted(address.cidr for address in allocation.addresses)
    previous = body.get("prevResult")
    if not isinstance(previous, dict) or not isinstance(previous.get("ips"), list):
        raise InvalidInput("expected the prevResult object with its ips", field="prevResult")
    claimed = sorted(str(ip.get("address")) for ip in previous["ips"] if isinstance(ip, dict))
    if claimed != held:
        raise AddressConflict(
            f"prevResult has {', '.join(claimed) or 'no address'} but ipamd holds {', '.join(held)} for {check_request.owner.label}"
        )
    return {"ips": cni_ips(allocation)}


async def _gc(app: web.Application, body: Mapping[str, Any]) -> protocol.GcAnswer:
    ipam = app[IPAM]
    reject_unknown(body, GC_FIELDS)
    network = _network(body, _required(body, "network", identity.network_name), identity_only=True)
    valid_raw = body.get("validAttachments")
    if not isinstance(valid_raw, list):
        raise InvalidInput("expected a list of {containerId, ifName}", field="validAttachments")
    valid = set()
    for index, item in enumerate(valid_raw):
        if (
            not isinstance(item, dict)
            or not isinstance(item.get("containerId"), str)
            or not isinstance(item.get("ifName"), str)
        ):
            raise InvalidInput("expected {containerId, ifName}", field=f"validAttachments[{index}]")
        valid.add((item["containerId"], item["ifName"]))
    # Only what a CNI ADD made on this node: the runtime that sends GC knows nothing of other
    # nodes' attachments, nor of allocations made through the REST API.
    held = await ipam.allocations_for_network(network.network_key, origin="cni", this_node=True)
    # A VM's addresses outlive its sandboxes (a stopped VM has none): never the runtime's to collect.
    stale = [
        (allocation.id, allocation.container_id)
        for allocation in held
        if (allocation.container_id, allocation.owner.interface) not in valid and allocation.hold != HOLD_VM
    ]
    released = await ipam.release_ids(stale, reason="cni gc")
    return {"released": len(released)}


def _refuse_retired_shim(request: web.Request) -> None:
    # The Python shim (ipamd-cni/0.x) shaped results and wrote a log file the network
    # config named; it must not keep running against a daemon that no longer expects it.
    if request.headers.get("User-Agent", "").startswith("ipamd-cni/0."):
        raise IncompatiblePlugin(
            "the ipamd CNI plugin on this node is the retired Python shim: install the current plugin with ipamd install-cni"
        )


Operation = Callable[[web.Application, Mapping[str, Any]], Awaitable[Mapping[str, object]]]


def _structured(operation: Operation) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A route that runs one attachment operation on its JSON body, for clients other than
    the plugin; the retired shim, which called these routes itself, is refused."""

    async def handler(request: web.Request) -> web.Response:
        _refuse_retired_shim(request)
        return json_response(await operation(request.app, await json_object(request)))

    return handler


routes.post("/v1/cni/add")(_structured(_add))
routes.post("/v1/cni/adopt")(_structured(partial(_add, adopt=True)))
routes.post("/v1/cni/del")(_structured(_del))
routes.post("/v1/cni/check")(_structured(_check))
routes.post("/v1/cni/gc")(_structured(_gc))


# CNI STATUS asks exactly what /readyz answers: can ADD be served now?
routes.get("/v1/cni/status")(health.readyz)


def _ignore_log_file(config: Any) -> None:
    ipam = config.get("ipam") if isinstance(config, dict) else None
    path = ipam.get("log_file") if isinstance(ipam, dict) else None
    if path is not None:
        _warn_log_file_ignored(str(config.get("name")), str(path))


# Once per network and path, not on every ADD and DEL of its pods; bounded, so that a
# stream of distinct configs cannot grow it (one pushed out is reported again).
@lru_cache(maxsize=1024)
def _warn_log_file_ignored(network: str, path: str) -> None:
    # The plugin runs as root on the node: a file named by whoever may write a network
    # config is never opened. The daemon's own log has every CNI failure.
    # (The log formatters spell out control characters of the arguments, ipamd.logs.)
    log.warning("network %s: ipam.log_file %s ignored (ipamd writes no file a network config names)", network, path)


async def _execute(app: web.Application, invocation: protocol.Invocation) -> Mapping[str, object] | None:
    """Runs one verb; returns what the plugin prints on success (None: nothing)."""
    command = invocation.command
    _ignore_log_file(invocation.config)
    if command == "VERSION":
        return protocol.version_result(invocation.cni_version)
    if command == "STATUS":
        ready, reason = await health.readiness(app)
        if not ready:
            raise NotAvailable(f"ipamd is not ready: {reason}")
        return None
    if command == "GC":
        await _gc(app, protocol.gc_request(invocation))
        return None
    body = protocol.attachment_request(invocation)
    if command == "ADD":
        return protocol.add_result(await _add(app, body), invocation.cni_version)
    if command == "DEL":
        await _del(app, body)
    else:
        await _check(app, body)
    return None


@routes.post("/v1/cni/exec")
async def execute(request: web.Request) -> web.Response:
    """The plugin's request: every failure is a CNI error in the answer, never an HTTP one."""
    body = await json_object(request)
    env = body.get("env")
    command = str(env.get("CNI_COMMAND", "")) if isinstance(env, dict) else ""
    try:
        invocation = protocol.parse_invocation(body)
        request[CNI_OUTCOME] = (invocation.command, None)
        return json_response(protocol.success(await _execute(request.app, invocation)))
    except IpamError as e:
        error = e
    except Exception:
        log.exception("CNI %s failed", command)
        error = IpamError("internal error; see the daemon log")
    request[CNI_OUTCOME] = (command, error)
    log.info("CNI %s failed with code %d: %s", command, error.cni_code, error.message)
    # Only a failure needs the version read apart from parse_invocation (which may have failed).
    return json_response(protocol.failure(error, protocol.answer_version(body), command))
