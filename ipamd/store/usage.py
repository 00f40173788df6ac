"""Usage counts of every subnet family, pool and cluster, in five aggregate queries.

What the usage gauges of ``/metrics`` report (docs/metrics.md): the number of queries does
not grow with subnets or allocations, and free space is a handful of range rows per subnet.
The specs come back as stored; the service parses them (with its cache).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from ipamd.store.schema import allocations, free_ranges, pools, released, subnets

_SUBNETS = sa.select(subnets.c.id, subnets.c.name, subnets.c.revision, subnets.c.spec, subnets.c.origin)
_HELD = sa.select(
    allocations.c.subnet_id,
    allocations.c.pool_id,
    allocations.c.cluster,
    sa.func.count(allocations.c.address_v4),
    sa.func.count(allocations.c.address_v6),
).group_by(allocations.c.subnet_id, allocations.c.pool_id, allocations.c.cluster)
# Dynamic free space only: a pool's own ranges are not for dynamic allocation.
_FREE_RANGES = sa.select(free_ranges.c.subnet_id, free_ranges.c.family, free_ranges.c.first, free_ranges.c.last).where(
    free_ranges.c.pool_id.is_(None)
)
_RELEASED = sa.select(released.c.subnet_id, released.c.family, sa.func.count()).group_by(
    released.c.subnet_id, released.c.family
)
# Capacity needs the members only: no placement rules, as a release reads pools.
_POOLS = sa.select(pools.c.id, pools.c.name, pools.c.subnet_id, pools.c.ips, sa.null().label("rules"))


@dataclass(frozen=True)
class UsageCounts:
    subnets: Sequence[Row[Any, Any, Any, Any, Any]]
    """Every subnet row: id, name, revision, spec, origin."""
    pools: Sequence[Row[Any, Any, Any, Any, Any]]
    """Every pool row: id, name, subnet_id, ips, rules (always null)."""
    held: dict[tuple[int, int], int]
    """Addresses held by allocations, by (subnet id, family)."""
    available: dict[tuple[int, int], int]
    """Addresses dynamic allocation can hand out (free ranges and released), by (subnet id, family)."""
    pool_held: dict[int, int]
    """Members held, by pool id."""
    cluster_held: dict[tuple[str, int, int], int]
    """Addresses held, by (cluster, subnet id, family); every cluster holding allocations."""


def usage_counts(conn: Connection) -> UsageCounts:
    """Returns the counts of one read transaction."""
    subnet_rows = conn.execute(_SUBNETS).all()
    held_rows = conn.execute(_HELD).all()
    range_rows = conn.execute(_FREE_RANGES).all()
    released_rows = conn.execute(_RELEASED).all()
    pool_rows = conn.execute(_POOLS).all()

    held: dict[tuple[int, int], int] = {}
    pool_held: dict[int, int] = {}
    cluster_held: dict[tuple[str, int, int], int] = {}
    for subnet_id, pool_id, cluster, v4, v6 in held_rows:
        for family, count in ((4, int(v4)), (6, int(v6))):
            held[(subnet_id, family)] = held.get((subnet_id, family), 0) + count
            cluster_held[(cluster, subnet_id, family)] = cluster_held.get((cluster, subnet_id, family), 0) + count
        if pool_id is not None:
            pool_held[pool_id] = pool_held.get(pool_id, 0) + int(v4) + int(v6)
    available: dict[tuple[int, int], int] = {}
    for subnet_id, family, first, last in range_rows:
        available[(subnet_id, family)] = available.get((subnet_id, family), 0) + int(last) - int(first) + 1
    for subnet_id, family, count in released_rows:
        available[(subnet_id, family)] = available.get((subnet_id, family), 0) + int(count)
    return UsageCounts(subnet_rows, pool_rows, held, available, pool_held, cluster_held)
