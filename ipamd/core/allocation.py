"""Allocation rules that do not need the database: what may be assigned, and to whom.

The choice of a dynamic address (lowest never-used, then oldest released) is a query on
free-range rows in ``ipamd.store``; this module decides everything that can be decided
from the subnet spec alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ipamd.core.addresses import ip_text, parse_ip
from ipamd.core.intervals import contains
from ipamd.core.subnet import FamilyLayout, SubnetSpec
from ipamd.errors import AddressConflict, InvalidInput

MAC_PATTERN = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
# The cluster name's rule is ipamd.core.identity.cluster_name.
DEFAULT_CLUSTER = "default"
STATEFULSET_ORDINAL = re.compile(r"-(\d+)$")


@dataclass(frozen=True)
class Owner:
    """Who an allocation belongs to: the attachment identity."""

    network_key: str
    namespace: str
    pod: str
    interface: str

    @property
    def label(self) -> str:
        pod = f"{self.namespace}/{self.pod}" if self.namespace else self.pod
        return f"{pod} {self.interface} ({self.network_key})"


def check_assignable(layout: FamilyLayout, address: int, *, subnet_name: str, field: str) -> None:
    """Raises unless ``address`` may be given to someone (statically) in ``layout``."""
    text = ip_text(address, layout.version)
    if not int(layout.network.first) <= address <= int(layout.network.last):
        raise InvalidInput(f"{text} is outside subnet {subnet_name} ({layout.network})", field=field)
    if address == layout.gateway:
        raise AddressConflict(f"{text} is the gateway of subnet {subnet_name}")
    if contains(layout.unassignable(), address):
        kind = "network" if address == int(layout.network.first) else "broadcast"
        raise AddressConflict(f"{text} is the {kind} address of subnet {subnet_name}")


def parse_static_request(spec: SubnetSpec, requested: Iterable[str], *, field: str) -> dict[int, int]:
    """Returns the requested address per IP version, validated against ``spec``.

    Entries may carry a prefix length (Multus passes ``192.0.2.5/24``); it must then equal
    the subnet's.
    """
    by_version: dict[int, int] = {}
    for index, text in enumerate(requested):
        where = f"{field}[{index}]"
        if not isinstance(text, str):
            raise InvalidInput(f"expected an address, got {text!r}", field=where)
        address_text, _, prefix = text.strip().partition("/")
        address = parse_ip(address_text, field=where)
        layout = spec.family(address.version)
        if layout is None:
            raise InvalidInput(f"{address} is outside subnet {spec.name} ({spec.cidr_block})", field=where)
        if prefix and prefix != str(layout.prefixlen):
            raise InvalidInput(f"{text} has prefix /{prefix} but subnet {spec.name} is {layout.network}", field=where)
        if address.version in by_version:
            raise InvalidInput(f"more than one IPv{address.version} address requested", field=field)
        check_assignable(layout, int(address), subnet_name=spec.name, field=where)
        by_version[address.version] = int(address)
    return by_version


def canonical_mac(raw: object, *, field: str) -> str:
    """Returns the MAC in lowercase colon form; rejects multicast and all-zero MACs."""
    if not isinstance(raw, str):
        raise InvalidInput(f"expected a MAC address such as 02:00:00:00:00:01, got {raw!r}", field=field)
    mac = raw.strip().lower().replace("-", ":")
    if not MAC_PATTERN.match(mac):
        raise InvalidInput(f"{raw!r} is not a MAC address such as 02:00:00:00:00:01", field=field)
    if int(mac[:2], 16) & 1:
        raise InvalidInput(f"{raw!r} is a multicast MAC; a unicast one is required", field=field)
    if mac == "00:00:00:00:00:00":
        raise InvalidInput("the all-zero MAC cannot be assigned", field=field)
    return mac


def statefulset_ordinal(pod_name: str) -> int | None:
    """Returns the ordinal a StatefulSet gives its pod (``web-3`` -> 3), or None."""
    match = STATEFULSET_ORDINAL.search(pod_name)
    return int(match.group(1)) if match else None


def reservation_admits(owner_text: str | None, owner: Owner) -> bool:
    """True when a reservation made for ``owner_text`` may be taken by ``owner``."""
    if not owner_text:
        return False
    return owner_text in {f"{owner.namespace}/{owner.pod}", owner.pod}
