"""Reading allocation rows, and the small queries the service reuses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeAlias

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from ipamd.core.allocation import Owner
from ipamd.store.schema import allocations, pools, reservations, subnets, write_checks

Record: TypeAlias = Row[*tuple[Any, ...]]
"""A row as the store reads it, its columns as attributes: what the service gets back."""

ALLOCATION_COLUMNS = (allocations, subnets.c.name.label("subnet_name"), pools.c.name.label("pool_name"))


class AllocationRow(Protocol):
    """An allocation as ``allocation_query`` reads it (ipamd.store.procedures' rows too):
    its columns, its subnet's name and its pool's."""

    @property
    def id(self) -> int: ...
    @property
    def subnet_id(self) -> int: ...
    @property
    def subnet_name(self) -> str: ...
    @property
    def pool_name(self) -> str | None: ...
    @property
    def cluster(self) -> str: ...
    @property
    def network_key(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def pod(self) -> str: ...
    @property
    def interface(self) -> str: ...
    @property
    def address_v4(self) -> int | None: ...
    @property
    def address_v6(self) -> int | None: ...
    @property
    def mac(self) -> str | None: ...
    @property
    def container_id(self) -> str | None: ...
    @property
    def pod_uid(self) -> str | None: ...
    @property
    def node(self) -> str | None: ...
    @property
    def hold(self) -> str | None: ...
    @property
    def origin(self) -> str: ...
    @property
    def created_at(self) -> datetime | None: ...


def check_writes(conn: Connection, *, node: str) -> None:
    """Rewrites this daemon's row of ``write_checks``: a small write that must reach the
    disk, which a full disk, a read-only file system or a standby refuses."""
    conn.execute(sa.delete(write_checks).where(write_checks.c.node == node))
    conn.execute(sa.insert(write_checks).values(node=node))


def allocation_query() -> sa.Select[Any]:
    return sa.select(*ALLOCATION_COLUMNS).select_from(
        allocations.join(subnets, allocations.c.subnet_id == subnets.c.id).outerjoin(
            pools, allocations.c.pool_id == pools.c.id
        )
    )


# The attachment's key, bound by ``owner_params``.
BY_OWNER = (
    allocations.c.cluster == sa.bindparam("cluster"),
    allocations.c.network_key == sa.bindparam("network_key"),
    allocations.c.namespace == sa.bindparam("namespace"),
    allocations.c.pod == sa.bindparam("pod"),
    allocations.c.interface == sa.bindparam("interface"),
)
ALLOCATION_BY_OWNER = allocation_query().where(*BY_OWNER)
ALLOCATION_BY_ID = allocation_query().where(allocations.c.id == sa.bindparam("allocation_id"))
# Deletes the row only as it was read: an ADD for a new sandbox may have taken the
# attachment over meanwhile (container id, pod UID), and a DEL of the old sandbox must then
# leave it alone.
_DELETE_ALLOCATION_AS_READ = sa.delete(allocations).where(
    allocations.c.id == sa.bindparam("allocation_id"),
    allocations.c.container_id.is_not_distinct_from(
        sa.bindparam("container_id", type_=allocations.c.container_id.type)
    ),
    allocations.c.pod_uid.is_not_distinct_from(sa.bindparam("pod_uid", type_=allocations.c.pod_uid.type)),
)


def allocation_by_id(conn: Connection, allocation_id: int) -> Record | None:
    return conn.execute(ALLOCATION_BY_ID, {"allocation_id": allocation_id}).first()


def allocations_of_subnet(conn: Connection, subnet_id: int) -> Sequence[Record]:
    return conn.execute(allocation_query().where(allocations.c.subnet_id == subnet_id)).all()


def allocations_in_pool(conn: Connection, pool_id: int) -> Sequence[Record]:
    return conn.execute(allocation_query().where(allocations.c.pool_id == pool_id)).all()


def allocations_at(conn: Connection, *, family: int, address: int) -> Sequence[Record]:
    """Returns the allocations holding ``address`` in any subnet (inline ranges may share it)."""
    column = allocations.c.address_v4 if family == 4 else allocations.c.address_v6
    return conn.execute(allocation_query().where(column == address)).all()


def leave_pool(conn: Connection, allocation_id: int) -> None:
    """Marks the allocation as no longer a pool's: its addresses left the pool's members."""
    conn.execute(sa.update(allocations).where(allocations.c.id == allocation_id).values(pool_id=None))


def delete_allocation_as_read(conn: Connection, row: AllocationRow) -> bool:
    """Deletes the allocation ``row`` if it is still as read (same container id and pod
    UID); False when it was deleted or taken over meanwhile."""
    deleted = conn.execute(
        _DELETE_ALLOCATION_AS_READ,
        {"allocation_id": row.id, "container_id": row.container_id, "pod_uid": row.pod_uid},
    )
    return deleted.rowcount > 0


_INSERT_ALLOCATION = sa.insert(allocations)
_UPDATE_ALLOCATION = sa.update(allocations).where(allocations.c.id == sa.bindparam("allocation_id"))


def allocation_by_owner(conn: Connection, owner: Owner, *, cluster: str) -> Record | None:
    """Returns the allocation of the attachment ``owner`` in ``cluster``."""
    return conn.execute(ALLOCATION_BY_OWNER, owner_params(owner, cluster=cluster)).first()


def insert_allocation(conn: Connection, values: Mapping[str, object]) -> int:
    """Returns the id of the new allocation row (``values``: its columns)."""
    # inserted_primary_key: SQLite's lastrowid, PostgreSQL's RETURNING; no result set to read.
    inserted = conn.execute(_INSERT_ALLOCATION, values).inserted_primary_key
    assert inserted is not None
    return int(inserted[0])


def update_allocation(conn: Connection, allocation_id: int, changes: Mapping[str, object]) -> bool:
    """Sets the columns ``changes`` of the allocation; False when the row is gone."""
    return conn.execute(_UPDATE_ALLOCATION.values(**changes), {"allocation_id": allocation_id}).rowcount > 0


def allocation_with_mac(conn: Connection, *, mac: str, network_key: str) -> Record | None:
    return conn.execute(
        allocation_query().where(allocations.c.mac == mac, allocations.c.network_key == network_key)
    ).first()


def allocations_matching(
    conn: Connection,
    *,
    cluster: str | None = None,
    subnet: str | None = None,
    namespace: str | None = None,
    pod: str | None = None,
    network_key: str | None = None,
    node: str | None = None,
    limit: int | None = None,
) -> Sequence[Record]:
    """Returns the allocations matching every filter given (None: any), by id."""
    statement = allocation_query().order_by(allocations.c.id)
    for column, value in (
        (allocations.c.cluster, cluster),
        (subnets.c.name, subnet),
        (allocations.c.namespace, namespace),
        (allocations.c.pod, pod),
        (allocations.c.network_key, network_key),
        (allocations.c.node, node),
    ):
        if value is not None:
            statement = statement.where(column == value)
    if limit is not None:
        statement = statement.limit(limit)
    return conn.execute(statement).all()


def allocations_of_network(
    conn: Connection, network_key: str, *, origin: str | None = None, made_by: tuple[str, str | None] | None = None
) -> Sequence[Record]:
    """Returns the network's allocations; ``origin``: made through that door only;
    ``made_by``: made by that (cluster, node) only (node names are unique in a cluster only)."""
    statement = allocation_query().where(allocations.c.network_key == network_key)
    if origin is not None:
        statement = statement.where(allocations.c.origin == origin)
    if made_by is not None:
        cluster, node = made_by
        statement = statement.where(allocations.c.cluster == cluster, allocations.c.node.is_not_distinct_from(node))
    return conn.execute(statement).all()


def owner_params(owner: Owner, *, cluster: str) -> dict[str, object]:
    """Returns the parameters of ALLOCATION_BY_OWNER: the attachment ``owner`` in ``cluster``."""
    return {
        "cluster": cluster,
        "network_key": owner.network_key,
        "namespace": owner.namespace,
        "pod": owner.pod,
        "interface": owner.interface,
    }


def addresses_of(row: AllocationRow) -> list[tuple[int, int]]:
    """Returns ``(family, address)`` pairs an allocation row holds."""
    pairs = []
    if row.address_v4 is not None:
        pairs.append((4, int(row.address_v4)))
    if row.address_v6 is not None:
        pairs.append((6, int(row.address_v6)))
    return pairs


_HOLDER = {
    family: allocation_query().where(
        allocations.c.subnet_id == sa.bindparam("subnet_id"), column == sa.bindparam("address")
    )
    for family, column in ((4, allocations.c.address_v4), (6, allocations.c.address_v6))
}
_RESERVATION_AT = sa.select(reservations).where(
    reservations.c.subnet_id == sa.bindparam("subnet_id"),
    reservations.c.family == sa.bindparam("family"),
    reservations.c.address == sa.bindparam("address"),
)


def holder_of(conn: Connection, *, subnet_id: int, family: int, address: int) -> Record | None:
    return conn.execute(_HOLDER[family], {"subnet_id": subnet_id, "address": address}).first()


def reservation_at(conn: Connection, *, subnet_id: int, family: int, address: int) -> Record | None:
    return conn.execute(_RESERVATION_AT, {"subnet_id": subnet_id, "family": family, "address": address}).first()


def held_addresses(conn: Connection, *, subnet_id: int, family: int) -> list[int]:
    column = allocations.c.address_v4 if family == 4 else allocations.c.address_v6
    result = conn.execute(sa.select(column).where(allocations.c.subnet_id == subnet_id, column.is_not(None)))
    return [int(value) for (value,) in result]


def count_held(conn: Connection, *, subnet_id: int, family: int, pool_id: int | None = None) -> int:
    column = allocations.c.address_v4 if family == 4 else allocations.c.address_v6
    statement = sa.select(sa.func.count(column)).where(allocations.c.subnet_id == subnet_id)
    if pool_id is not None:
        statement = statement.where(allocations.c.pool_id == pool_id)
    return int((conn.execute(statement)).scalar_one())
