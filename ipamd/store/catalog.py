"""The administered objects: subnets, pools and reservations, read and written by name.

Each function is one named query or command and runs inside the caller's transaction. A
unique name taken by another row (a concurrent create) leaves as ``NameTaken``, raised
at the insert, where what collided is known.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipamd.errors import NameTaken
from ipamd.store.records import Record
from ipamd.store.schema import free_ranges, pools, released, reservations, subnets

# Prebuilt: the allocation and release paths read subnets by id (see ipamd.store.space).
_SUBNET_BY_ID = sa.select(subnets).where(subnets.c.id == sa.bindparam("subnet_id"))
_SUBNET_BY_ID_LOCKED = _SUBNET_BY_ID.with_for_update()
_INLINE_SUBNETS = sa.select(subnets).where(subnets.c.origin == "inline").order_by(subnets.c.id)
_POOLS_OF_SUBNET = sa.select(pools.c.id, pools.c.name, pools.c.ips, pools.c.rules).where(
    pools.c.subnet_id == sa.bindparam("subnet_id")
)
# PostgreSQL only: a transaction-scoped lock on a name (one provider's set of subnets, one
# shared address space).
_GROUP_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))")
_PROVIDER_SUBNETS = (
    sa.select(subnets)
    .where(subnets.c.provider == sa.bindparam("provider"))
    .order_by(subnets.c.priority, subnets.c.name)
)
_PROVIDER_HAS_SUBNET = sa.select(subnets.c.id).where(subnets.c.provider == sa.bindparam("provider")).limit(1)
# A subnet with free dynamic space in one of the families asked (dual stack may still find
# the other family full: the caller then goes on to the next).
_HAS_SPACE = sa.or_(
    sa.exists().where(
        free_ranges.c.subnet_id == subnets.c.id,
        free_ranges.c.family.in_(sa.bindparam("families", expanding=True)),
        free_ranges.c.pool_id.is_(None),
    ),
    sa.exists().where(
        released.c.subnet_id == subnets.c.id, released.c.family.in_(sa.bindparam("families", expanding=True))
    ),
)
_FIRST_WITH_SPACE = (
    sa.select(subnets)
    .where(subnets.c.provider == sa.bindparam("provider"), _HAS_SPACE)
    .order_by(subnets.c.priority, subnets.c.name)
    .limit(1)
)
# After the first subnet, the walk reads ahead: placement rules (one subnet per site on one
# NAD) may refuse many subnets in a row, and each would otherwise cost a query.
WALK_BATCH = 16
_NEXT_WITH_SPACE = _FIRST_WITH_SPACE.where(
    sa.tuple_(subnets.c.priority, subnets.c.name)
    > sa.tuple_(
        sa.bindparam("priority", type_=subnets.c.priority.type), sa.bindparam("name", type_=subnets.c.name.type)
    )
).limit(WALK_BATCH)
_SUBNET_PROVIDER = sa.select(subnets.c.name, subnets.c.provider).where(subnets.c.name == sa.bindparam("name"))
_RESERVATIONS_WITH_SUBNET = sa.select(reservations, subnets.c.name.label("subnet_name")).join(
    subnets, reservations.c.subnet_id == subnets.c.id
)


@contextmanager
def _unique_name(what: str) -> Iterator[None]:
    try:
        yield
    except sa.exc.IntegrityError as e:
        raise NameTaken(f"{what} already exists") from e


def lock_group(conn: Connection, key: str) -> None:
    """Holds the PostgreSQL advisory lock named ``key`` until the transaction ends."""
    conn.execute(_GROUP_LOCK, {"key": key})


# Subnets


def subnet_by_id(conn: Connection, subnet_id: int, *, lock: bool = False) -> Record | None:
    """Returns the subnet row ``subnet_id``; ``lock``: FOR UPDATE (PostgreSQL callers only)."""
    return conn.execute(_SUBNET_BY_ID_LOCKED if lock else _SUBNET_BY_ID, {"subnet_id": subnet_id}).first()


def subnet_by_name(conn: Connection, name: str, *, lock: bool = False) -> Record | None:
    statement = sa.select(subnets).where(subnets.c.name == name)
    if lock:
        statement = statement.with_for_update()
    return conn.execute(statement).first()


def all_subnets(conn: Connection) -> Sequence[Record]:
    """Returns every subnet row, by name."""
    return conn.execute(sa.select(subnets).order_by(subnets.c.name)).all()


def subnets_of_provider(conn: Connection, provider: str | None) -> Sequence[Record]:
    """Returns the subnet rows of one provider (None: those without one)."""
    condition = subnets.c.provider.is_(None) if provider is None else subnets.c.provider == provider
    return conn.execute(sa.select(subnets).where(condition)).all()


def inline_subnets(conn: Connection) -> Sequence[Record]:
    """Returns the subnet rows made from NAD ranges (origin inline), by id."""
    return conn.execute(_INLINE_SUBNETS).all()


def provider_subnets(conn: Connection, provider: str) -> Sequence[Record]:
    """Returns the subnet rows of a provider in the order allocations try them (priority, name)."""
    return conn.execute(_PROVIDER_SUBNETS, {"provider": provider}).all()


def provider_has_subnet(conn: Connection, provider: str) -> bool:
    return conn.execute(_PROVIDER_HAS_SUBNET, {"provider": provider}).first() is not None


def first_subnet_with_space(conn: Connection, *, provider: str, families: Sequence[int]) -> Record | None:
    """Returns the provider's first subnet (priority, name) with free dynamic space in one
    of ``families``: full subnets are skipped in SQL, on ix_subnets_provider_order."""
    return conn.execute(_FIRST_WITH_SPACE, {"provider": provider, "families": families}).first()


def next_subnets_with_space(
    conn: Connection, *, provider: str, families: Sequence[int], after: Record
) -> Sequence[Record]:
    """Returns up to WALK_BATCH subnets with space that follow the subnet row ``after``."""
    return conn.execute(
        _NEXT_WITH_SPACE,
        {"provider": provider, "families": families, "priority": after.priority, "name": after.name},
    ).all()


def subnet_provider(conn: Connection, name: str) -> Record | None:
    """Returns (name, provider) of the subnet ``name``: one row, none of its usage."""
    return conn.execute(_SUBNET_PROVIDER, {"name": name}).first()


def insert_subnet(conn: Connection, *, name: str, provider: str | None, priority: int, spec: Any, origin: str) -> int:
    """Returns the id of the new subnet row; raises NameTaken when ``name`` is."""
    with _unique_name(f"subnet {name}"):
        return int(
            conn.execute(
                sa.insert(subnets)
                .values(name=name, provider=provider, priority=priority, spec=spec, origin=origin)
                .returning(subnets.c.id)
            ).scalar_one()
        )


def update_subnet(
    conn: Connection, subnet_id: int, *, provider: str | None, priority: int, spec: Any, revision: int
) -> None:
    conn.execute(
        sa.update(subnets)
        .where(subnets.c.id == subnet_id)
        .values(provider=provider, priority=priority, spec=spec, revision=revision)
    )


def revise_subnet_spec(conn: Connection, subnet_id: int, *, spec: Any, revision: int) -> None:
    conn.execute(sa.update(subnets).where(subnets.c.id == subnet_id).values(spec=spec, revision=revision))


def delete_subnet(conn: Connection, subnet_id: int) -> None:
    """Deletes the subnet row; its pools, reservations and free space go with it (ON DELETE CASCADE)."""
    conn.execute(sa.delete(subnets).where(subnets.c.id == subnet_id))


# Pools


def pools_of_subnet(conn: Connection, subnet_id: int) -> Sequence[Record]:
    """Returns (id, name, ips, rules) of each pool of the subnet."""
    return conn.execute(_POOLS_OF_SUBNET, {"subnet_id": subnet_id}).all()


def pool_by_id(conn: Connection, pool_id: int) -> Record | None:
    return conn.execute(sa.select(pools).where(pools.c.id == pool_id)).first()


def pool_by_name(conn: Connection, name: str) -> Record | None:
    return conn.execute(sa.select(pools).where(pools.c.name == name)).first()


def pool_name(conn: Connection, pool_id: int) -> str | None:
    name = conn.execute(sa.select(pools.c.name).where(pools.c.id == pool_id)).scalar()
    return None if name is None else str(name)


def pool_ids(conn: Connection) -> list[int]:
    """Returns the id of every pool, by name."""
    return [int(pool_id) for pool_id in conn.execute(sa.select(pools.c.id).order_by(pools.c.name)).scalars()]


def insert_pool(conn: Connection, *, name: str, subnet_id: int, ips: list[str], rules: Any, origin: str) -> int:
    """Returns the id of the new pool row; raises NameTaken when ``name`` is."""
    with _unique_name(f"pool {name}"):
        return int(
            conn.execute(
                sa.insert(pools)
                .values(name=name, subnet_id=subnet_id, ips=ips, rules=rules, origin=origin)
                .returning(pools.c.id)
            ).scalar_one()
        )


def update_pool(conn: Connection, pool_id: int, *, subnet_id: int, ips: list[str], rules: Any, origin: str) -> None:
    conn.execute(
        sa.update(pools).where(pools.c.id == pool_id).values(subnet_id=subnet_id, ips=ips, rules=rules, origin=origin)
    )


def delete_pool(conn: Connection, pool_id: int) -> None:
    """Deletes the pool row; its allocations stay, outside any pool (ON DELETE SET NULL)."""
    conn.execute(sa.delete(pools).where(pools.c.id == pool_id))


# Reservations


def reserved_addresses(conn: Connection, *, subnet_id: int, family: int) -> list[int]:
    result = conn.execute(
        sa.select(reservations.c.address).where(reservations.c.subnet_id == subnet_id, reservations.c.family == family)
    ).scalars()
    return [int(address) for address in result]


def insert_reservation(
    conn: Connection,
    *,
    subnet_id: int,
    family: int,
    address: int,
    mac: str | None,
    owner: str | None,
    note: str | None,
    origin: str,
) -> Record:
    """Returns the new reservation row."""
    reservation_id = conn.execute(
        sa.insert(reservations)
        .values(subnet_id=subnet_id, family=family, address=address, mac=mac, owner=owner, note=note, origin=origin)
        .returning(reservations.c.id)
    ).scalar_one()
    return conn.execute(sa.select(reservations).where(reservations.c.id == reservation_id)).one()


def reservation_by_id(conn: Connection, reservation_id: int) -> Record | None:
    return conn.execute(sa.select(reservations).where(reservations.c.id == reservation_id)).first()


def reservations_with_subnet(conn: Connection) -> Sequence[Record]:
    """Returns every reservation row with its subnet's name (``subnet_name``), by id."""
    return conn.execute(_RESERVATIONS_WITH_SUBNET.order_by(reservations.c.id)).all()


def reservation_with_subnet(conn: Connection, reservation_id: int) -> Record | None:
    """Returns the reservation row with its subnet's name (``subnet_name``)."""
    return conn.execute(_RESERVATIONS_WITH_SUBNET.where(reservations.c.id == reservation_id)).first()


def update_reservation(
    conn: Connection, reservation_id: int, *, mac: str | None, owner: str | None, note: str | None
) -> Record | None:
    """Rewrites the reservation's MAC, owner and note in place (its id, address, origin and
    creation stay); returns the row as it is now, None when no row was there (deleted meanwhile)."""
    changed = conn.execute(
        sa.update(reservations).where(reservations.c.id == reservation_id).values(mac=mac, owner=owner, note=note)
    ).rowcount
    if not changed:
        return None
    return conn.execute(sa.select(reservations).where(reservations.c.id == reservation_id)).one()


def delete_reservation(conn: Connection, reservation_id: int) -> bool:
    """Deletes the reservation; False when no row was there (deleted meanwhile)."""
    return conn.execute(sa.delete(reservations).where(reservations.c.id == reservation_id)).rowcount > 0
