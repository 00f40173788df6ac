"""How a subnet family's addresses divide up, each address counted once.

Every allocatable address is in exactly one class, tried in this order: held by an
allocation (``used``), reserved, a pool member (``pooled``), excluded or the gateway
(``excluded``); what remains is the dynamic space, which the free ranges and the reuse
queue must account for exactly (``available``). So
``used + reserved + pooled + excluded + available == total`` holds by construction of the
first four and is a check on the stored free space for the fifth.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ipamd.core import intervals as iv
from ipamd.core.intervals import Interval
from ipamd.core.subnet import FamilyLayout


@dataclass(frozen=True)
class Usage:
    total: int
    used: int
    reserved: int
    pooled: int
    excluded: int


def classify(
    layout: FamilyLayout, *, held: Iterable[int], reserved: Iterable[int], pooled: Iterable[Interval]
) -> Usage:
    """Returns the counts of the four classes above ``available`` in one family."""
    allocatable = [layout.allocatable]
    held_set = iv.intersect(iv.from_points(held), allocatable)
    reserved_set = iv.subtract(iv.intersect(iv.from_points(reserved), allocatable), held_set)
    taken = [*held_set, *reserved_set]
    pooled_set = iv.subtract(iv.intersect(pooled, allocatable), [*taken, *layout.unassignable()])
    excluded_set = iv.subtract(
        iv.intersect([*layout.excluded, *layout.unassignable()], allocatable), [*taken, *pooled_set]
    )
    return Usage(
        total=iv.size(allocatable),
        used=iv.size(held_set),
        reserved=iv.size(reserved_set),
        pooled=iv.size(pooled_set),
        excluded=iv.size(excluded_set),
    )


@dataclass(frozen=True)
class SubnetUsage:
    """One family of one subnet: allocatable addresses, those held, those dynamic allocation
    can still hand out (never used plus released)."""

    subnet: str
    family: int
    capacity: int
    used: int
    available: int


@dataclass(frozen=True)
class PoolUsage:
    """One pool: its members (both families) and those held."""

    pool: str
    subnet: str
    capacity: int
    used: int


@dataclass(frozen=True)
class ClusterUsage:
    """The addresses one cluster's allocations hold in one family of one subnet (only
    where it holds some)."""

    cluster: str
    subnet: str
    family: int
    used: int


@dataclass(frozen=True)
class UsageReport:
    """Every subnet family, every pool and every cluster's share, as of one read."""

    subnets: tuple[SubnetUsage, ...] = ()
    pools: tuple[PoolUsage, ...] = ()
    clusters: tuple[ClusterUsage, ...] = ()
