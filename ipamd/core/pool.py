"""Pools and reservations: named sets of addresses carved out of a subnet."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ipamd.core.addresses import format_intervals, parse_entries, parse_ip
from ipamd.core.intervals import Interval, contains, intersect, normalize, size, subtract
from ipamd.core.placement import NO_RULES, RULE_FIELDS, Placement, parse_placement
from ipamd.core.subnet import SubnetSpec, check_name, reject_unknown
from ipamd.errors import InvalidInput

POOL_FIELDS = frozenset({"name", "subnet", "ips", *RULE_FIELDS})
RESERVATION_FIELDS = frozenset({"subnet", "address", "mac", "owner", "note"})
# The longest owner or note a reservation keeps.
RESERVATION_TEXT_MAX = 1024


@dataclass(frozen=True)
class PoolSpec:
    name: str
    subnet: str
    ips: tuple[str, ...]
    members: tuple[tuple[int, tuple[Interval, ...]], ...]
    """``(ip_version, intervals)`` per family present in the pool."""
    # Which pods may take the pool's addresses (ipamd.core.placement), on top of its subnet's rules.
    placement: Placement = NO_RULES

    def to_json(self) -> dict[str, Any]:
        """The spec in the API's form; placement rules only when set."""
        return {"name": self.name, "subnet": self.subnet, "ips": list(self.ips), **self.placement.to_json()}

    def intervals(self, version: int) -> tuple[Interval, ...]:
        return next((members for family, members in self.members if family == version), ())


def holds_pool_member(pool: PoolSpec, addresses: Iterable[tuple[int, int]]) -> bool:
    """Whether an allocation holding ``(family, address)`` pairs is still the pool's: every
    address of a family the pool lists is a member, and there is one. An address of a
    family the pool does not list came from the subnet (dual stack takes both families)."""
    pooled = [(family, address) for family, address in addresses if pool.intervals(family)]
    return bool(pooled) and all(contains(pool.intervals(family), address) for family, address in pooled)


def canonical_pool(raw: object, *, subnet: SubnetSpec) -> PoolSpec:
    """Returns the validated pool; every member must be assignable in ``subnet``."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected a JSON object describing a pool")
    reject_unknown(raw, POOL_FIELDS)
    name = check_name(raw.get("name"))
    entries = raw.get("ips")
    if not isinstance(entries, list) or not entries:
        raise InvalidInput("required: a non-empty list of addresses, a..b ranges or CIDRs", field="ips")
    members = []
    for version in (4, 6):
        intervals = parse_entries(entries, field="ips", version=version)
        if not intervals:
            continue
        layout = subnet.family(version)
        if layout is None:
            raise InvalidInput(f"subnet {subnet.name} has no IPv{version} CIDR", field="ips")
        outside = subtract(intervals, [(int(layout.network.first), int(layout.network.last))])
        if outside:
            raise InvalidInput(
                f"{format_intervals(outside, version)[0]} is outside subnet {subnet.name} ({layout.network})",
                field="ips",
            )
        # A CIDR member written as a whole block must not make the network, broadcast or
        # gateway address a pool member.
        intervals = subtract(intervals, layout.unassignable())
        members.append((version, tuple(intervals)))
    if not members:
        raise InvalidInput("the pool has no assignable address", field="ips")
    return PoolSpec(
        name=name,
        subnet=subnet.name,
        ips=tuple(str(e).strip() for e in entries),
        members=tuple(members),
        placement=parse_placement(raw),
    )


def pools_overlap(first: PoolSpec, second: PoolSpec) -> bool:
    return any(intersect(first.intervals(version), second.intervals(version)) for version in (4, 6))


def pool_capacity(pool: PoolSpec) -> int:
    return sum(size(members) for _, members in pool.members)


@dataclass(frozen=True)
class ReservationSpec:
    subnet: str
    version: int
    address: int
    mac: str | None
    owner: str | None
    note: str | None


def canonical_reservation(raw: object, *, subnet: SubnetSpec) -> ReservationSpec:
    """Returns the validated reservation of one address of ``subnet``."""
    from ipamd.core.allocation import canonical_mac, check_assignable

    if not isinstance(raw, Mapping):
        raise InvalidInput("expected a JSON object describing a reservation")
    reject_unknown(raw, RESERVATION_FIELDS)
    address = parse_ip(raw.get("address"), field="address")
    layout = subnet.family(address.version)
    if layout is None:
        raise InvalidInput(f"subnet {subnet.name} has no IPv{address.version} CIDR", field="address")
    check_assignable(layout, int(address), subnet_name=subnet.name, field="address")
    texts = {}
    for key in ("owner", "note"):
        value = raw.get(key)
        if value is not None and (not isinstance(value, str) or len(value) > RESERVATION_TEXT_MAX):
            raise InvalidInput(f"expected a string of at most {RESERVATION_TEXT_MAX} characters", field=key)
        texts[key] = value
    mac = raw.get("mac")
    return ReservationSpec(
        subnet=subnet.name,
        version=address.version,
        address=int(address),
        mac=canonical_mac(mac, field="mac") if mac is not None else None,
        owner=texts["owner"],
        note=texts["note"],
    )


def merge_members(pools: list[PoolSpec], version: int) -> list[Interval]:
    return normalize(interval for pool in pools for interval in pool.intervals(version))
