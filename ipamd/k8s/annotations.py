"""Kube-OVN's pod annotations: what a pod asks for, and what ipamd writes back. No I/O here.

Keys are ``<provider>.kubernetes.io/<name>`` where ``<provider>`` is the network key of the
attachment (``ipam.provider``, usually ``<nad>.<namespace>``):

- ``ip_address`` (``v4``, ``v6`` or ``v4,v6``) and ``mac_address``: static requests; the
  per-interface forms ``ip_address.<ifname>`` and ``mac_address.<ifname>`` win over them;
- ``ip_pool``: an IPPool name, or a list of addresses parsed as Kube-OVN parses it
  (kubeovn/kube-ovn ``pkg/controller/pod.go``, ``acquireAddress``): with a ``;`` anywhere the
  entries are separated by ``;`` and each entry is ``v4``, ``v6`` or ``v4,v6``; without one
  the entries are separated by ``,``, except that exactly two addresses of different
  families are one dual-stack entry. A single entry that is not an address is a pool name;
- ``logical_switch``: the subnet to allocate from, by name;
- ``ip_family`` (``ipv4`` or ``ipv6``, also per interface as ``ip_family.<ifname>``): one
  family of a dual-stack subnet (Kube-OVN documentation, "DualStack": "Select IP Family for
  a Single Pod or NIC"); a subnet without that family refuses the ADD;
- ``routes``: a JSON list of ``{"dst", "gw"}`` added to the attachment's result routes, as
  Kube-OVN's ``routes`` annotation adds them to the pod's interface.

Written back after an allocation commits: ``allocated``, ``ip_address``, ``cidr``,
``gateway`` and ``mac_address`` (see :func:`result_annotations`).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ipamd.core import model
from ipamd.core.addresses import parse_ip
from ipamd.core.allocation import canonical_mac
from ipamd.core.subnet import Route, parse_routes
from ipamd.errors import InvalidInput

SUFFIX = ".kubernetes.io/"
IP_ADDRESS = "ip_address"
MAC_ADDRESS = "mac_address"
IP_POOL = "ip_pool"
LOGICAL_SWITCH = "logical_switch"
IP_FAMILY = "ip_family"
ROUTES = "routes"
FAMILIES = {"ipv4": 4, "ipv6": 6}
ALLOCATED = "allocated"
CIDR = "cidr"
GATEWAY = "gateway"
# Annotation values are bounded by the API server (256 KiB for all of them); a pool list
# longer than this is a mistake, not a pool.
MAX_VALUE_LENGTH = 64 * 1024


def key(provider: str, name: str, interface: str | None = None) -> str:
    """Returns the annotation key ``<provider>.kubernetes.io/<name>[.<interface>]``."""
    return f"{provider}{SUFFIX}{name}" + (f".{interface}" if interface else "")


@dataclass(frozen=True)
class PodAsk:
    """What a pod's annotations ask of one attachment (empty fields: nothing asked)."""

    static_ips: tuple[str, ...] = ()
    static_key: str | None = None
    mac: str | None = None
    mac_key: str | None = None
    pool_name: str | None = None
    pool_entries: tuple[tuple[str, ...], ...] = ()
    pool_key: str | None = None
    subnet_name: str | None = None
    # Whether ipamd has written its result onto the pod for this provider before.
    allocated: bool = False
    family: int | None = None
    family_key: str | None = None
    routes: tuple[Route, ...] = ()


def _value(annotations: Mapping[str, str], name: str) -> str | None:
    value = annotations.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"expected a string, got {value!r}", field=name)
    value = value.strip()
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidInput(f"value longer than {MAX_VALUE_LENGTH} characters", field=name)
    return value or None


def parse_addresses(text: str, *, field: str) -> tuple[str, ...]:
    """Returns the addresses of ``v4``, ``v6`` or ``v4,v6`` in canonical form.

    Raises InvalidInput naming ``field`` for anything else (a prefix length, two addresses
    of one family, more than two).
    """
    parts = [part.strip() for part in text.split(",")]
    if not parts or len(parts) > 2 or any(not part for part in parts):
        raise InvalidInput(f"{text!r}: expected v4, v6 or v4,v6", field=field)
    addresses = [parse_ip(part, field=field) for part in parts]
    if len(addresses) == 2 and addresses[0].version == addresses[1].version:
        raise InvalidInput(f"{text!r}: two IPv{addresses[0].version} addresses; expected v4, v6 or v4,v6", field=field)
    return tuple(str(address) for address in addresses)


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def _family(text: str) -> int | None:
    try:
        return ipaddress.ip_address(text.strip()).version
    except ValueError:
        return None


def parse_ip_pool(text: str, *, field: str) -> tuple[str | None, tuple[tuple[str, ...], ...]]:
    """Returns (pool name, None) or (None, entries) for an ``ip_pool`` annotation value."""
    text = text.strip()
    if not text:
        raise InvalidInput("empty ip_pool: give a pool name or a list of addresses", field=field)
    if ";" in text:
        raw = text.split(";")
    else:
        raw = text.split(",")
        if len(raw) == 2 and None not in {_family(raw[0]), _family(raw[1])} and _family(raw[0]) != _family(raw[1]):
            raw = [text]
    # Kube-OVN trims each entry; a trailing separator leaves an empty one we skip.
    entries = [entry.strip() for entry in raw if entry.strip()]
    if len(entries) == 1 and "," not in entries[0] and not _is_address(entries[0]):
        return entries[0], ()
    parsed = []
    for index, entry in enumerate(entries):
        parsed.append(parse_addresses(entry, field=f"{field}[{index}]"))
    if not parsed:
        raise InvalidInput("empty ip_pool: give a pool name or a list of addresses", field=field)
    return None, tuple(parsed)


def parse_pod_annotations(annotations: Mapping[str, Any] | None, *, provider: str, interface: str) -> PodAsk:
    """Returns what ``annotations`` ask for the attachment (``provider``, ``interface``).

    Raises InvalidInput naming the annotation key when a value cannot be used.
    """
    annotations = annotations or {}
    per_if_ip = key(provider, IP_ADDRESS, interface)
    plain_ip = key(provider, IP_ADDRESS)
    static_key = per_if_ip if _value(annotations, per_if_ip) is not None else plain_ip
    static_text = _value(annotations, static_key)
    static_ips = parse_addresses(static_text, field=static_key) if static_text is not None else ()

    per_if_mac = key(provider, MAC_ADDRESS, interface)
    plain_mac = key(provider, MAC_ADDRESS)
    mac_key = per_if_mac if _value(annotations, per_if_mac) is not None else plain_mac
    mac_text = _value(annotations, mac_key)
    mac = canonical_mac(mac_text, field=mac_key) if mac_text is not None else None

    pool_key = key(provider, IP_POOL)
    pool_text = _value(annotations, pool_key)
    pool_name, pool_entries = parse_ip_pool(pool_text, field=pool_key) if pool_text is not None else (None, ())

    subnet_name = _value(annotations, key(provider, LOGICAL_SWITCH))

    per_if_family = key(provider, IP_FAMILY, interface)
    family_key = per_if_family if _value(annotations, per_if_family) is not None else key(provider, IP_FAMILY)
    family_text = _value(annotations, family_key)
    family = None
    if family_text is not None:
        family = FAMILIES.get(family_text.lower())
        if family is None:
            raise InvalidInput(f"{family_text!r}: expected ipv4 or ipv6", field=family_key)

    routes_key = key(provider, ROUTES)
    routes_text = _value(annotations, routes_key)
    routes: tuple[Route, ...] = ()
    if routes_text is not None:
        try:
            parsed_routes = json.loads(routes_text)
        except ValueError as e:
            raise InvalidInput(
                'expected a JSON list such as [{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}]', field=routes_key
            ) from e
        routes = parse_routes(parsed_routes, field=routes_key)
    return PodAsk(
        static_ips=static_ips,
        static_key=static_key if static_ips else None,
        mac=mac,
        mac_key=mac_key if mac else None,
        pool_name=pool_name,
        pool_entries=pool_entries,
        pool_key=pool_key if pool_text is not None else None,
        subnet_name=subnet_name,
        allocated=_value(annotations, key(provider, ALLOCATED)) == "true",
        family=family,
        family_key=family_key if family is not None else None,
        routes=routes,
    )


def by_family(allocation: model.Allocation) -> list[model.HeldAddress]:
    """The allocation's addresses in the order annotations list them: ``v4,v6``."""
    return sorted(allocation.addresses, key=lambda held: held.family)


def result_annotations(provider: str, allocation: model.Allocation) -> dict[str, str]:
    """Returns the annotations that publish ``allocation`` (Kube-OVN's result keys).

    ``cidr`` and ``gateway`` are the subnet's, ``v4,v6`` for dual stack like ``ip_address``;
    ``mac_address`` is written only when the allocation has a MAC.
    """
    addresses = by_family(allocation)
    result = {
        key(provider, ALLOCATED): "true",
        key(provider, IP_ADDRESS): ",".join(held.address for held in addresses),
        key(provider, CIDR): ",".join(str(ipaddress.ip_interface(held.cidr).network) for held in addresses),
        key(provider, GATEWAY): ",".join(held.gateway for held in addresses if held.gateway),
    }
    if not result[key(provider, GATEWAY)]:
        del result[key(provider, GATEWAY)]
    if allocation.mac:
        result[key(provider, MAC_ADDRESS)] = allocation.mac
    return result
