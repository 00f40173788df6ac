"""Subnets: a spec as users write it, canonicalised once into a frozen value.

Later code trusts a ``SubnetSpec``: gateways are defaulted, exclusions clipped to their
CIDR, routes and DNS validated.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import netaddr

from ipamd.core import identity, sanity
from ipamd.core.addresses import ip_text, parse_cidr, parse_entries, parse_ip
from ipamd.core.intervals import Interval, normalize, subtract
from ipamd.core.placement import NO_RULES, RULE_FIELDS, Placement, parse_placement
from ipamd.errors import InvalidInput

# Also the OpenAPI document's pattern, so written as ECMA-262 reads it too; matched whole
# (fullmatch), since Python's ``$`` would also accept a trailing newline.
NAME_PATTERN = re.compile(r"^[a-z0-9]([-a-z0-9._]{0,251}[a-z0-9])?$")
# A subnet's priority is stored in a 32-bit column.
PRIORITY_MIN, PRIORITY_MAX = -(2**31), 2**31 - 1
SUBNET_FIELDS = frozenset(
    {"name", "cidrBlock", "gateway", "excludeIps", "provider", "priority", "routes", "dns", *RULE_FIELDS}
)
# Only subnets the daemon creates from inline NAD ranges carry ``overlap`` (see Overlap).
INLINE_SUBNET_FIELDS = SUBNET_FIELDS | {"overlap"}
# What a request to create or change a subnet may say besides its spec (never stored).
SUBNET_REQUEST_FIELDS = SUBNET_FIELDS | {"force"}
DNS_FIELDS = frozenset({"nameservers", "domain", "search", "options"})


@dataclass(frozen=True)
class Route:
    dst: str
    gw: str | None = None

    def to_json(self) -> dict[str, str]:
        return {"dst": self.dst, **({"gw": self.gw} if self.gw else {})}


@dataclass(frozen=True)
class FamilyLayout:
    """One IP family of a subnet: its CIDR, gateway and exclusions as integers."""

    version: int
    network: netaddr.IPNetwork
    gateway: int | None
    excluded: tuple[Interval, ...]

    @property
    def allocatable(self) -> Interval:
        """network+1 .. broadcast-1 for IPv4, network+1 .. last for IPv6."""
        last = int(self.network.last) - 1 if self.version == 4 else int(self.network.last)
        return int(self.network.first) + 1, last

    @property
    def prefixlen(self) -> int:
        return int(self.network.prefixlen)

    def unassignable(self) -> list[Interval]:
        """The addresses no request may ever get: network, broadcast (IPv4), gateway."""
        return list(self._unassignable)

    def dynamic_space(self) -> list[Interval]:
        """Allocatable addresses minus gateway and exclusions (pools and reservations aside)."""
        return list(self._dynamic_space)

    # Computed once per spec: releases ask for them on every address given back.
    @functools.cached_property
    def _unassignable(self) -> tuple[Interval, ...]:
        blocked = [(int(self.network.first), int(self.network.first))]
        if self.version == 4:
            blocked.append((int(self.network.last), int(self.network.last)))
        if self.gateway is not None:
            blocked.append((self.gateway, self.gateway))
        return tuple(normalize(blocked))

    @functools.cached_property
    def _dynamic_space(self) -> tuple[Interval, ...]:
        return tuple(subtract([self.allocatable], [*self._unassignable, *self.excluded]))

    def cidr_of(self, address: int) -> str:
        return f"{ip_text(address, self.version)}/{self.prefixlen}"

    @property
    def gateway_text(self) -> str | None:
        return None if self.gateway is None else ip_text(self.gateway, self.version)


@dataclass(frozen=True)
class Overlap:
    """How an inline (Whereabouts or host-local style) subnet shares addresses with others.

    Whereabouts keeps one IPPool per ``network_name`` and range, and, while
    ``enable_overlapping_ranges`` is on (its default), one cluster-wide reservation per
    ``network_name`` and address: overlapping ranges never hand out one address twice.
    ``group`` is that ``network_name`` ("" when unset); ``protect`` is that flag.
    """

    group: str
    protect: bool

    def to_json(self) -> dict[str, Any]:
        return {"networkName": self.group, "enableOverlappingRanges": self.protect}


def shared_families(a: SubnetSpec, b: SubnetSpec) -> tuple[int, ...]:
    """Returns the IP families in which two inline subnets share one address space.

    Same ``network_name`` and overlapping CIDRs, when both protect overlapping ranges; an
    identical CIDR is Whereabouts' one IPPool, shared whatever the flag says.
    """
    if a.overlap is None or b.overlap is None or a.overlap.group != b.overlap.group:
        return ()
    shared = []
    for mine in a.families:
        theirs = b.family(mine.version)
        if theirs is None:
            continue
        if mine.network == theirs.network or (
            a.overlap.protect
            and b.overlap.protect
            and (mine.network in theirs.network or theirs.network in mine.network)
        ):
            shared.append(mine.version)
    return tuple(shared)


@dataclass(frozen=True)
class SubnetSpec:
    name: str
    families: tuple[FamilyLayout, ...]
    provider: str | None
    priority: int
    exclude_ips: tuple[str, ...]
    routes: tuple[Route, ...] = ()
    dns: Mapping[str, Any] = field(default_factory=dict)
    overlap: Overlap | None = None
    # Which pods, namespaces and nodes the subnet serves (ipamd.core.placement).
    placement: Placement = NO_RULES

    def family(self, version: int) -> FamilyLayout | None:
        return next((layout for layout in self.families if layout.version == version), None)

    @property
    def cidr_block(self) -> str:
        return ",".join(str(layout.network) for layout in self.families)

    @property
    def gateway(self) -> str:
        if all(layout.gateway is None for layout in self.families):
            return "none"
        return ",".join(layout.gateway_text or "" for layout in self.families)

    def to_json(self) -> dict[str, Any]:
        """Returns the spec in the API's camelCase form (without usage)."""
        return {
            "name": self.name,
            "cidrBlock": self.cidr_block,
            "gateway": self.gateway,
            "excludeIps": list(self.exclude_ips),
            "provider": self.provider,
            "priority": self.priority,
            "routes": [route.to_json() for route in self.routes],
            "dns": dict(self.dns),
            **({"overlap": self.overlap.to_json()} if self.overlap is not None else {}),
            **self.placement.to_json(),
        }


def check_name(value: object, *, field: str = "name") -> str:
    """Returns ``value`` when it is a valid object name (DNS-subdomain-like)."""
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise InvalidInput(
            f"{value!r} is not a valid name (lowercase letters, digits, '-', '.', '_'; at most 253)",
            field=field,
        )
    return value


def reject_unknown(raw: Mapping[str, Any], known: frozenset[str], *, prefix: str = "") -> None:
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"unknown field; known fields are {', '.join(sorted(known))}", field=f"{prefix}{unknown[0]}")


def canonical_subnet(raw: object, *, allow_unknown: bool = False, inline: bool = False) -> SubnetSpec:
    """Returns the validated spec of a subnet written in the API's form.

    ``inline`` admits ``overlap``, which only daemon-made subnets of inline ranges carry.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected a JSON object describing a subnet")
    if not allow_unknown:
        reject_unknown(raw, INLINE_SUBNET_FIELDS if inline else SUBNET_FIELDS)
    name = check_name(raw.get("name"))
    cidr_text = raw.get("cidrBlock")
    if not isinstance(cidr_text, str) or not cidr_text.strip():
        raise InvalidInput("required: one CIDR or 'v4cidr,v6cidr'", field="cidrBlock")
    networks = [parse_cidr(part.strip(), field="cidrBlock") for part in cidr_text.split(",")]
    versions = [network.version for network in networks]
    if len(networks) > 2 or len(set(versions)) != len(versions):
        raise InvalidInput(f"{cidr_text!r}: at most one IPv4 and one IPv6 CIDR", field="cidrBlock")
    networks.sort(key=lambda network: network.version)
    for network in networks:
        if (network.version == 4 and network.prefixlen > 30) or (network.version == 6 and network.prefixlen > 126):
            raise InvalidInput(f"{network} is too small to hold a gateway and an address", field="cidrBlock")

    gateways = _parse_gateways(raw.get("gateway"), networks)
    exclude_raw = raw.get("excludeIps") or []
    families = []
    for network in networks:
        allocatable_span: Interval = (int(network.first), int(network.last))
        excluded = parse_entries(exclude_raw, field="excludeIps", version=network.version, within=allocatable_span)
        families.append(FamilyLayout(network.version, network, gateways[network.version], tuple(excluded)))

    provider = raw.get("provider")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise InvalidInput("expected a non-empty string such as 'macvlan.default'", field="provider")
    priority = raw.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise InvalidInput(f"expected a 32-bit integer, got {priority!r}", field="priority")
    return SubnetSpec(
        name=name,
        families=tuple(families),
        provider=provider,
        priority=priority,
        exclude_ips=tuple(str(entry).strip() for entry in exclude_raw),
        routes=parse_routes(raw.get("routes")),
        dns=parse_dns(raw.get("dns")),
        overlap=_parse_overlap(raw.get("overlap")) if inline else None,
        placement=parse_placement(raw),
    )


def requested_subnet(raw: object, *, inline: bool = False, starting_from: SubnetSpec | None = None) -> SubnetSpec:
    """Returns the spec of a subnet someone asks to create (or change), held to the sanity
    rules of ipamd.core.sanity unless the request says ``force: true``.

    ``starting_from`` is the stored spec a change starts from: the CIDRs it keeps are not
    checked again, so a forced subnet can have its other fields edited without force.
    """
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected a JSON object describing a subnet")
    force = sanity.force_of(raw)
    spec = canonical_subnet({key: value for key, value in raw.items() if key != "force"}, inline=inline)
    if spec.provider is not None:
        # The provider is the network key attachments are stored under (ipamd.core.identity).
        identity.bounded(spec.provider, field="provider", limit=identity.NETWORK_MAX)
    kept = {layout.network for layout in starting_from.families} if starting_from is not None else set()
    sanity.check(
        (layout.network for layout in spec.families if layout.network not in kept), field="cidrBlock", force=force
    )
    return spec


def _parse_overlap(raw: object) -> Overlap | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected {networkName, enableOverlappingRanges}", field="overlap")
    reject_unknown(raw, frozenset({"networkName", "enableOverlappingRanges"}), prefix="overlap.")
    group, protect = raw.get("networkName", ""), raw.get("enableOverlappingRanges", True)
    if not isinstance(group, str) or not isinstance(protect, bool):
        raise InvalidInput("expected a string networkName and a boolean enableOverlappingRanges", field="overlap")
    return Overlap(group, protect)


def _parse_gateways(raw: object, networks: list[netaddr.IPNetwork]) -> dict[int, int | None]:
    """Returns the gateway of each family, defaulting to the first usable address."""
    gateways: dict[int, int | None] = {network.version: int(network.first) + 1 for network in networks}
    if raw is None or raw == "":
        return gateways
    if raw == "none":
        # Whereabouts-style networks often have no gateway at all.
        return {version: None for version in gateways}
    if not isinstance(raw, str):
        raise InvalidInput(f"expected 'v4' or 'v4,v6', got {raw!r}", field="gateway")
    by_version = {network.version: network for network in networks}
    seen: dict[int, str] = {}
    for part in (piece.strip() for piece in raw.split(",")):
        if not part:
            continue
        address = parse_ip(part, field="gateway")
        if address.version in seen:
            # One gateway per family: a second one would silently win otherwise.
            raise InvalidInput(
                f"{seen[address.version]} and {address} are both IPv{address.version} gateways; give at most one per family ('v4' or 'v4,v6')",
                field="gateway",
            )
        seen[address.version] = str(address)
        network = by_version.get(address.version)
        if network is None or address not in network:
            raise InvalidInput(f"{address} is not inside {', '.join(map(str, networks))}", field="gateway")
        if int(address) == int(network.first) or (network.version == 4 and int(address) == int(network.last)):
            raise InvalidInput(f"{address} is the network or broadcast address of {network}", field="gateway")
        gateways[address.version] = int(address)
    return gateways


def parse_routes(raw: object, *, field: str = "routes") -> tuple[Route, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidInput("expected a list of {dst, gw}", field=field)
    routes = []
    for index, item in enumerate(raw):
        where = f"{field}[{index}]"
        if not isinstance(item, Mapping):
            raise InvalidInput("expected an object {dst, gw}", field=where)
        reject_unknown(item, frozenset({"dst", "gw"}), prefix=f"{where}.")
        dst = item.get("dst")
        if not isinstance(dst, str):
            raise InvalidInput("expected a CIDR", field=f"{where}.dst")
        network = netaddr.IPNetwork(str(parse_cidr_loose(dst, field=f"{where}.dst")))
        gw = item.get("gw")
        gw_text = None
        if gw not in (None, ""):
            gateway = parse_ip(gw, field=f"{where}.gw")
            if gateway.version != network.version:
                raise InvalidInput(
                    f"route to {network.cidr} (IPv{network.version}) cannot go via {gateway} (IPv{gateway.version}): "
                    "a route's dst and gw must be of one address family",
                    field=f"{where}.gw",
                )
            gw_text = str(gateway)
        routes.append(Route(str(network.cidr), gw_text))
    return tuple(routes)


def parse_cidr_loose(text: str, *, field: str) -> netaddr.IPNetwork:
    """Returns the network of a route destination, where host bits are tolerated."""
    try:
        address_text, _, prefix = text.partition("/")
        parse_ip(address_text, field=field)
        return netaddr.IPNetwork(text).cidr
    except (netaddr.AddrFormatError, ValueError) as e:
        raise InvalidInput(f"{text!r} is not a valid CIDR", field=field) from e


def parse_dns(raw: object, *, field: str = "dns") -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected an object {nameservers, domain, search, options}", field=field)
    reject_unknown(raw, DNS_FIELDS, prefix=f"{field}.")
    dns: dict[str, Any] = {}
    for key in ("nameservers", "search", "options"):
        value = raw.get(key)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise InvalidInput("expected a list of strings", field=f"{field}.{key}")
        if key == "nameservers":
            value = [str(parse_ip(item, field=f"{field}.nameservers")) for item in value]
        dns[key] = list(value)
    domain = raw.get("domain")
    if domain is not None:
        if not isinstance(domain, str):
            raise InvalidInput("expected a string", field=f"{field}.domain")
        dns["domain"] = domain
    return dns
