"""Free space of subnets and pools, kept as range rows so every operation is a few indexed
statements whatever the size or fill of the subnet.

- ``free_ranges``: never-used addresses (pool_id null: the subnet's dynamic space; pool_id
  set: a pool's free members).
- ``released``: addresses given back, reused oldest first after the never-used ones run out.

All functions run inside the caller's transaction and hold no state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipamd.core.intervals import Interval
from ipamd.store.schema import free_ranges, released

# The hot path runs prebuilt statements with bound parameters: building a statement
# object costs several times more than executing it on SQLite.
_LOWEST_FREE = (
    sa.select(free_ranges.c.id, free_ranges.c.first, free_ranges.c.last)
    .where(
        free_ranges.c.subnet_id == sa.bindparam("subnet_id"),
        free_ranges.c.family == sa.bindparam("family"),
        free_ranges.c.pool_id.is_(None),
    )
    .order_by(free_ranges.c.first)
    .limit(1)
)
_LOWEST_POOL_FREE = (
    sa.select(free_ranges.c.id, free_ranges.c.first, free_ranges.c.last)
    .where(free_ranges.c.pool_id == sa.bindparam("pool_id"), free_ranges.c.family == sa.bindparam("family"))
    .order_by(free_ranges.c.first)
    .limit(1)
)
_OLDEST_RELEASED = (
    sa.select(released.c.id, released.c.address)
    .where(released.c.subnet_id == sa.bindparam("subnet_id"), released.c.family == sa.bindparam("family"))
    .order_by(released.c.id)
    .limit(1)
)
_DELETE_RANGE = sa.delete(free_ranges).where(free_ranges.c.id == sa.bindparam("range_id"))
_ADVANCE_RANGE = (
    sa.update(free_ranges)
    .where(free_ranges.c.id == sa.bindparam("range_id"))
    .values(first=sa.bindparam("new_first", type_=free_ranges.c.first.type))
)
_DELETE_RELEASED = sa.delete(released).where(released.c.id == sa.bindparam("released_id"))
_INSERT_RELEASED = sa.insert(released)


def take_dynamic(conn: Connection, *, subnet_id: int, family: int) -> int | None:
    """Takes and returns the next dynamic address: lowest never-used, else oldest released."""
    free = conn.execute(_LOWEST_FREE, {"subnet_id": subnet_id, "family": family}).first()
    if free is not None:
        return _take_first(conn, free)
    row = conn.execute(_OLDEST_RELEASED, {"subnet_id": subnet_id, "family": family}).first()
    if row is None:
        return None
    conn.execute(_DELETE_RELEASED, {"released_id": row.id})
    return int(row.address)


def _take_first(conn: Connection, row: Any) -> int:
    first, last = int(row.first), int(row.last)
    if first == last:
        conn.execute(_DELETE_RANGE, {"range_id": row.id})
    else:
        conn.execute(_ADVANCE_RANGE, {"range_id": row.id, "new_first": first + 1})
    return first


def peek_dynamic(conn: Connection, *, subnet_id: int, family: int) -> int | None:
    """Returns the address ``take_dynamic`` would take, without taking it."""
    free = conn.execute(_LOWEST_FREE, {"subnet_id": subnet_id, "family": family}).first()
    if free is not None:
        return int(free.first)
    row = conn.execute(_OLDEST_RELEASED, {"subnet_id": subnet_id, "family": family}).first()
    return None if row is None else int(row.address)


def peek_pool(conn: Connection, *, pool_id: int, family: int) -> int | None:
    """Returns the lowest free member of a pool in ``family``, without taking it."""
    row = conn.execute(_LOWEST_POOL_FREE, {"pool_id": pool_id, "family": family}).first()
    return None if row is None else int(row.first)


def claim(conn: Connection, *, subnet_id: int, family: int, address: int) -> None:
    """Removes ``address`` from the free ranges and the released list, wherever it is."""
    row = (
        conn.execute(
            sa.select(free_ranges.c.id, free_ranges.c.first, free_ranges.c.last, free_ranges.c.pool_id)
            .where(
                free_ranges.c.subnet_id == subnet_id,
                free_ranges.c.family == family,
                free_ranges.c.first <= address,
            )
            .order_by(free_ranges.c.first.desc())
            .limit(1)
        )
    ).first()
    if row is not None and int(row.first) <= address <= int(row.last):
        first, last = int(row.first), int(row.last)
        if first == last:
            conn.execute(sa.delete(free_ranges).where(free_ranges.c.id == row.id))
        elif address == first:
            conn.execute(sa.update(free_ranges).where(free_ranges.c.id == row.id).values(first=address + 1))
        elif address == last:
            conn.execute(sa.update(free_ranges).where(free_ranges.c.id == row.id).values(last=address - 1))
        else:
            conn.execute(sa.update(free_ranges).where(free_ranges.c.id == row.id).values(last=address - 1))
            conn.execute(
                sa.insert(free_ranges).values(
                    subnet_id=subnet_id, family=family, pool_id=row.pool_id, first=address + 1, last=last
                )
            )
        return
    conn.execute(
        sa.delete(released).where(
            released.c.subnet_id == subnet_id, released.c.family == family, released.c.address == address
        )
    )


def give_back(conn: Connection, *, subnet_id: int, family: int, address: int, pool_id: int | None) -> None:
    """Returns a released address: to its pool's free members, or to the reuse queue."""
    if pool_id is not None:
        conn.execute(
            sa.insert(free_ranges).values(
                subnet_id=subnet_id, family=family, pool_id=pool_id, first=address, last=address
            )
        )
    else:
        conn.execute(_INSERT_RELEASED, {"subnet_id": subnet_id, "family": family, "address": address})


def add_ranges(
    conn: Connection, *, subnet_id: int, family: int, pool_id: int | None, intervals: Iterable[Interval]
) -> None:
    rows = [
        {"subnet_id": subnet_id, "family": family, "pool_id": pool_id, "first": first, "last": last}
        for first, last in intervals
    ]
    if rows:
        conn.execute(sa.insert(free_ranges), rows)


def ranges(conn: Connection, *, subnet_id: int, family: int, pool_id: int | None) -> list[Interval]:
    """Returns the never-used free ranges of a subnet family (or of one pool)."""
    condition = free_ranges.c.pool_id.is_(None) if pool_id is None else free_ranges.c.pool_id == pool_id
    result = conn.execute(
        sa.select(free_ranges.c.first, free_ranges.c.last)
        .where(free_ranges.c.subnet_id == subnet_id, free_ranges.c.family == family, condition)
        .order_by(free_ranges.c.first)
    )
    return [(int(row.first), int(row.last)) for row in result]


def released_addresses(conn: Connection, *, subnet_id: int, family: int) -> list[int]:
    result = conn.execute(
        sa.select(released.c.address).where(released.c.subnet_id == subnet_id, released.c.family == family)
    )
    return [int(row.address) for row in result]


def forget_released(conn: Connection, *, subnet_id: int, family: int, first: int, last: int) -> None:
    """Takes the addresses ``first``..``last`` off the reuse queue."""
    conn.execute(
        sa.delete(released).where(
            released.c.subnet_id == subnet_id,
            released.c.family == family,
            released.c.address >= first,
            released.c.address <= last,
        )
    )


def clear(conn: Connection, *, subnet_id: int, pool_id: int | None = None, everything: bool = False) -> None:
    """Deletes free ranges of the subnet's dynamic space (or of one pool, or all of them)."""
    statement = sa.delete(free_ranges).where(free_ranges.c.subnet_id == subnet_id)
    if not everything:
        statement = statement.where(
            free_ranges.c.pool_id.is_(None) if pool_id is None else free_ranges.c.pool_id == pool_id
        )
    conn.execute(statement)
