"""The ``ipam`` section of a NetworkAttachmentDefinition, in the three forms users write.

- Kube-OVN style: ``provider`` names subnets created through the API or the config file.
- Whereabouts style: ``range`` (CIDR or ``first-last/prefix``), ``range_start``,
  ``range_end``, ``exclude``, ``gateway``, ``network_name``, ``ipRanges``, ``routes``, ``dns``.
- host-local style: ``ranges: [[{subnet, rangeStart, rangeEnd, gateway}]]`` (or the old
  top-level ``subnet``), ``routes``, ``dns``.

An inline form becomes the spec of a subnet the daemon creates and owns, named after
``network_name`` (or the network's name) and bound to that same key as provider.

Inline subnets whose ranges overlap share one address space, as Whereabouts' IPPool and
OverlappingRangeIPReservation objects do (both named after ``network_name`` and the range
or address, ``pkg/storage/kubernetes/ipam.go`` of k8snetworkplumbingwg/whereabouts):

- same ``network_name`` (or none) and overlapping ranges: no address is handed out twice;
- a different ``network_name``: a separate address space (two tenants, one CIDR);
- ``enable_overlapping_ranges: false``: only an identical range is shared (Whereabouts'
  single IPPool per range); other overlapping ranges may hand out the same address.

Provider-style subnets (``ipam.provider`` naming subnets made through the API) keep their
own rule: overlapping CIDRs under different providers are separate L2 domains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import netaddr

from ipamd.core import identity, sanity
from ipamd.core.addresses import ip_text, parse_ip
from ipamd.core.subnet import Overlap, Route, SubnetSpec, canonical_subnet, parse_routes
from ipamd.errors import InvalidInput

# Keys the shim and runtimes put in the ipam section that carry no allocation meaning here.
TRANSPORT_KEYS = frozenset({"type", "server_socket", "timeout", "log_file", "log_level", "provider"})
WHEREABOUTS_KEYS = frozenset(
    {
        "range",
        "range_start",
        "range_end",
        "exclude",
        "gateway",
        "network_name",
        "enable_overlapping_ranges",
        "ipRanges",
        "routes",
        "dns",
        # Whereabouts keys that tune its own storage; accepted and ignored.
        "kubernetes",
        "datastore",
        "etcd_host",
        "leader_lease_duration",
        "leader_renew_deadline",
        "leader_retry_period",
        "reconciler_cron_expression",
        "sleep_for_race",
        "configuration_path",
        "log_level",
        "log_file",
        "node_slice_size",
    }
)
HOST_LOCAL_KEYS = frozenset(
    {"ranges", "subnet", "rangeStart", "rangeEnd", "gateway", "routes", "dns", "dataDir", "resolvConf"}
)
# Kube-OVN form: the provider names subnets; routes are added to every result of the NAD.
PROVIDER_KEYS = frozenset({"routes"})


@dataclass(frozen=True)
class NetworkRequest:
    """What an ADD's ipam section asks for: a network key and, for inline forms, a subnet.

    ``routes`` are the NAD's own (provider form), added to the subnet's in the result;
    ``resolv_conf`` is host-local's ``resolvConf``: a file whose nameservers, search and
    options become the result's DNS where ``dns`` does not say otherwise.
    """

    network_key: str
    inline_subnet: SubnetSpec | None
    routes: tuple[Route, ...] = ()
    resolv_conf: str | None = None


def network_key(ipam: Mapping[str, Any], network_name: str) -> str:
    """Returns the key attachments of this network are grouped by."""
    for key in ("provider", "network_name"):
        value = ipam.get(key)
        if isinstance(value, str) and value.strip():
            return identity.bounded(value.strip(), field=f"ipam.{key}", limit=identity.NETWORK_MAX)
    return network_name


def overlap_of(ipam: Mapping[str, Any]) -> Overlap:
    """Returns the address space an inline range shares with others (see the module doc)."""
    group = ipam.get("network_name")
    group = group.strip() if isinstance(group, str) else ""
    protect = ipam.get("enable_overlapping_ranges", True)
    if not isinstance(protect, bool):
        raise InvalidInput(f"expected true or false, got {protect!r}", field="ipam.enable_overlapping_ranges")
    return Overlap(group, protect)


def parse_network_request(ipam: object, *, network_name: str) -> NetworkRequest:
    """Returns the network key and the inline subnet (if any) of an ipam section."""
    if not isinstance(ipam, Mapping):
        raise InvalidInput("expected the ipam section of the network config", field="ipam")
    if not isinstance(network_name, str) or not network_name:
        raise InvalidInput("the network config needs a name", field="network")
    key = network_key(ipam, network_name)
    if "range" in ipam or "ipRanges" in ipam:
        return NetworkRequest(key, _whereabouts_subnet(ipam, key))
    if "ranges" in ipam or "subnet" in ipam:
        return NetworkRequest(key, _host_local_subnet(ipam, key), resolv_conf=_resolv_conf_path(ipam))
    if not isinstance(ipam.get("provider"), str):
        raise InvalidInput(
            "no provider and no inline range: set ipam.provider to a subnet's provider, "
            "or give range (Whereabouts style) or ranges (host-local style)",
            field="ipam",
        )
    unknown = sorted(set(ipam) - PROVIDER_KEYS - TRANSPORT_KEYS)
    if unknown:
        # Silently ignoring a key would hand out addresses the NAD's author did not mean.
        raise InvalidInput(
            f"unknown field in a provider-style config; known fields are {', '.join(sorted(PROVIDER_KEYS | TRANSPORT_KEYS))} "
            "(ranges go in the subnet of the provider, or use range/ranges for an inline network)",
            field=f"ipam.{unknown[0]}",
        )
    return NetworkRequest(key, None, routes=parse_routes(ipam.get("routes"), field="ipam.routes"))


def _resolv_conf_path(ipam: Mapping[str, Any]) -> str | None:
    path = ipam.get("resolvConf")
    if path is None or path == "":
        return None
    if not isinstance(path, str) or not path.startswith("/"):
        raise InvalidInput(f"expected an absolute path to a resolv.conf file, got {path!r}", field="ipam.resolvConf")
    return path


def parse_resolv_conf(text: str) -> dict[str, Any]:
    """Returns the CNI DNS of a resolv.conf, as host-local reads it (nameserver, domain, search, options)."""
    dns: dict[str, Any] = {}
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) < 2:
            continue
        keyword, values = fields[0], fields[1:]
        if keyword == "nameserver":
            dns.setdefault("nameservers", []).append(values[0])
        elif keyword == "domain":
            dns["domain"] = values[0]
        elif keyword == "search":
            dns["search"] = values
        elif keyword == "options":
            dns.setdefault("options", []).extend(values)
    return dns


def result_routes(subnet_routes: list[dict[str, Any]], *extra: tuple[Route, ...]) -> list[dict[str, Any]]:
    """Returns the subnet's routes followed by the NAD's and the pod's, without repeats."""
    merged = list(subnet_routes)
    for routes in extra:
        for route in routes:
            as_json = route.to_json()
            if as_json not in merged:
                merged.append(as_json)
    return merged


def result_dns(configured: Mapping[str, Any], from_file: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the DNS of a result: the config's fields, completed from resolvConf."""
    return {**dict(from_file), **{k: v for k, v in configured.items() if v not in (None, "", [])}}


def _whereabouts_subnet(ipam: Mapping[str, Any], key: str) -> SubnetSpec:
    unknown = sorted(set(ipam) - WHEREABOUTS_KEYS - TRANSPORT_KEYS)
    if unknown:
        raise InvalidInput("unknown field in a Whereabouts-style config", field=f"ipam.{unknown[0]}")
    entries: list[Mapping[str, Any]] = []
    if "range" in ipam:
        entries.append(ipam)
    ip_ranges = ipam.get("ipRanges", [])
    if not isinstance(ip_ranges, list):
        raise InvalidInput("expected a list of {range, range_start, range_end, exclude}", field="ipam.ipRanges")
    for index, item in enumerate(ip_ranges):
        if not isinstance(item, Mapping):
            raise InvalidInput("expected an object", field=f"ipam.ipRanges[{index}]")
        entries.append(item)
    cidrs: list[str] = []
    excludes: list[str] = []
    for index, entry in enumerate(entries):
        where = "ipam" if entry is ipam else f"ipam.ipRanges[{index - ('range' in ipam)}]"
        cidr, bounds = _whereabouts_range(entry.get("range"), field=f"{where}.range")
        sanity.check([cidr], field=f"{where}.range", remedy=sanity.INLINE_REMEDY)
        start, end = bounds
        if entry.get("range_start") not in (None, ""):
            start = _inside(entry["range_start"], cidr, field=f"{where}.range_start")
        if entry.get("range_end") not in (None, ""):
            end = _inside(entry["range_end"], cidr, field=f"{where}.range_end")
        if start is not None and end is not None and int(start) > int(end):
            raise InvalidInput(f"range_start {start} is after range_end {end}", field=f"{where}.range_start")
        excludes += _outside_bounds(cidr, start, end)
        exclude = entry.get("exclude", [])
        if not isinstance(exclude, list):
            raise InvalidInput("expected a list of CIDRs or addresses", field=f"{where}.exclude")
        excludes += [str(item) for item in exclude]
        cidrs.append(str(cidr))
    gateway = ipam.get("gateway")
    return _inline_subnet(key, cidrs, gateway if gateway else "none", excludes, ipam)


def _host_local_subnet(ipam: Mapping[str, Any], key: str) -> SubnetSpec:
    unknown = sorted(set(ipam) - HOST_LOCAL_KEYS - TRANSPORT_KEYS)
    if unknown:
        raise InvalidInput("unknown field in a host-local-style config", field=f"ipam.{unknown[0]}")
    if "ranges" in ipam:
        range_sets = ipam["ranges"]
        if not isinstance(range_sets, list) or not all(isinstance(rs, list) and rs for rs in range_sets):
            raise InvalidInput(
                "expected a list of range sets: [[{subnet, rangeStart, rangeEnd, gateway}]]", field="ipam.ranges"
            )
        ranges = [(f"ipam.ranges[{i}][{j}]", r) for i, rs in enumerate(range_sets) for j, r in enumerate(rs)]
    else:
        ranges = [("ipam", ipam)]
    cidrs: list[str] = []
    gateways: list[str] = []
    excludes: list[str] = []
    for where, item in ranges:
        if not isinstance(item, Mapping):
            raise InvalidInput("expected an object {subnet, rangeStart, rangeEnd, gateway}", field=where)
        subnet_text = item.get("subnet")
        if not isinstance(subnet_text, str):
            raise InvalidInput("required: a CIDR", field=f"{where}.subnet")
        try:
            cidr = netaddr.IPNetwork(subnet_text).cidr
        except (netaddr.AddrFormatError, ValueError) as e:
            raise InvalidInput(f"{subnet_text!r} is not a valid CIDR", field=f"{where}.subnet") from e
        sanity.check([cidr], field=f"{where}.subnet", remedy=sanity.INLINE_REMEDY)
        start = _inside(item["rangeStart"], cidr, field=f"{where}.rangeStart") if item.get("rangeStart") else None
        end = _inside(item["rangeEnd"], cidr, field=f"{where}.rangeEnd") if item.get("rangeEnd") else None
        excludes += _outside_bounds(cidr, start, end)
        if item.get("gateway"):
            gateways.append(str(_inside(item["gateway"], cidr, field=f"{where}.gateway")))
        cidrs.append(str(cidr))
    if len(cidrs) > 2:
        raise InvalidInput("ipamd serves one range per IP family per network", field="ipam.ranges")
    return _inline_subnet(key, cidrs, ",".join(gateways), excludes, ipam)


def _inline_subnet(
    key: str, cidrs: list[str], gateway: str, excludes: list[str], ipam: Mapping[str, Any]
) -> SubnetSpec:
    if len(cidrs) != len({netaddr.IPNetwork(c).version for c in cidrs}):
        raise InvalidInput("ipamd serves one range per IP family per network", field="ipam")
    raw = {
        "name": key.lower(),
        "cidrBlock": ",".join(cidrs),
        "gateway": gateway,
        "excludeIps": excludes,
        "provider": key,
        "routes": ipam.get("routes"),
        "dns": ipam.get("dns"),
        "overlap": overlap_of(ipam).to_json(),
    }
    try:
        return canonical_subnet(raw, inline=True)
    except InvalidInput as e:
        raise InvalidInput(
            f"inline range of network {key}: {e.message}", field=f"ipam.{e.field}" if e.field else "ipam"
        ) from e


def _whereabouts_range(
    text: object, *, field: str
) -> tuple[netaddr.IPNetwork, tuple[netaddr.IPAddress | None, netaddr.IPAddress | None]]:
    """Returns the CIDR of a Whereabouts ``range`` and the bounds a ``first-last/prefix`` form sets."""
    if not isinstance(text, str) or "/" not in text:
        raise InvalidInput(f"expected a CIDR or first-last/prefix, got {text!r}", field=field)
    body, _, prefix = text.strip().rpartition("/")
    first_text, dash, last_text = body.partition("-")
    first = parse_ip(first_text, field=field)
    try:
        cidr = netaddr.IPNetwork(f"{first}/{prefix}").cidr
    except (netaddr.AddrFormatError, ValueError) as e:
        raise InvalidInput(f"{text!r} has an invalid prefix length", field=field) from e
    if not dash:
        return cidr, (None, None)
    last = _inside(last_text, cidr, field=field)
    if int(first) > int(last):
        raise InvalidInput(f"{text!r} ends before it starts", field=field)
    return cidr, (first, last)


def _inside(text: object, cidr: netaddr.IPNetwork, *, field: str) -> netaddr.IPAddress:
    """Returns the address in ``text``; unlike Whereabouts, an address outside is an error."""
    address = parse_ip(text, field=field)
    if address not in cidr:
        raise InvalidInput(f"{address} is not in network {cidr}", field=field)
    return address


def _outside_bounds(
    cidr: netaddr.IPNetwork, start: netaddr.IPAddress | None, end: netaddr.IPAddress | None
) -> list[str]:
    """Returns exclusions that confine allocation to ``start``..``end``."""
    excludes = []
    version = cidr.version
    if start is not None and int(start) > int(cidr.first):
        excludes.append(f"{ip_text(int(cidr.first), version)}..{ip_text(int(start) - 1, version)}")
    if end is not None and int(end) < int(cidr.last):
        excludes.append(f"{ip_text(int(end) + 1, version)}..{ip_text(int(cidr.last), version)}")
    return excludes
