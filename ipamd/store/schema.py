"""The tables. Alembic migrations in ``migrations/`` create them; this module describes them.

Addresses are 16-byte big-endian integers (``IPAddressBytes``): IPv4 and the whole IPv6
space fit, and both SQLite (memcmp on BLOB) and PostgreSQL (bytea) order them correctly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class IPAddressBytes(TypeDecorator[int]):
    """An address as a Python int, stored as 16 big-endian bytes."""

    impl = sa.LargeBinary(16)
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Any) -> bytes | None:
        return None if value is None else int(value).to_bytes(16, "big")

    def process_result_value(self, value: bytes | None, dialect: Any) -> int | None:
        return None if value is None else int.from_bytes(value, "big")


class UtcDateTime(TypeDecorator[datetime]):
    """A moment, read back as an aware UTC datetime on every database: SQLite stores the
    UTC digits of what was written and hands them back naive, PostgreSQL an aware one."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        # SQLite keeps the digits and drops the offset: write them in UTC.
        return value.astimezone(UTC) if value is not None and value.tzinfo is not None else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _now() -> sa.ColumnElement[Any]:
    return sa.func.current_timestamp()


subnets = sa.Table(
    "subnets",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(253), nullable=False, unique=True),
    sa.Column("provider", sa.String(253), nullable=True, index=True),
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    # The canonical spec as the API shows it; parsed once per revision into a SubnetSpec.
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("revision", sa.Integer, nullable=False, server_default="1"),
    sa.Column("origin", sa.String(16), nullable=False, server_default="api"),
    sa.Column("created_at", UtcDateTime(), nullable=False, server_default=_now()),
    # An ADD walks a provider's subnets in this order to the first with free space.
    sa.Index("ix_subnets_provider_order", "provider", "priority", "name"),
)

# The clusters that have used this database (docs/design/cluster-identity.md): a daemon
# registers its ``--cluster-name`` at start, so a new cluster joining a shared PostgreSQL is
# said in the log, and a SQLite file refuses a second one.
clusters = sa.Table(
    "clusters",
    metadata,
    sa.Column("name", sa.String(63), primary_key=True),
    sa.Column("joined_at", UtcDateTime(), nullable=False, server_default=_now()),
)

pools = sa.Table(
    "pools",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(253), nullable=False, unique=True),
    sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("ips", sa.JSON, nullable=False),
    # Placement rules (namespaces, nodeNames, selectors) as the API writes them; null: none.
    sa.Column("rules", sa.JSON, nullable=True),
    sa.Column("origin", sa.String(16), nullable=False, server_default="api"),
    sa.Column("created_at", UtcDateTime(), nullable=False, server_default=_now()),
)

reservations = sa.Table(
    "reservations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("family", sa.SmallInteger, nullable=False),
    sa.Column("address", IPAddressBytes, nullable=False),
    sa.Column("mac", sa.String(17), nullable=True),
    sa.Column("owner", sa.String(1024), nullable=True),
    sa.Column("note", sa.String(1024), nullable=True),
    sa.Column("origin", sa.String(16), nullable=False, server_default="api"),
    sa.Column("created_at", UtcDateTime(), nullable=False, server_default=_now()),
    # The family is part of the key: IPv4 a.b.c.d and IPv6 ::a.b.c.d are the same integer.
    sa.UniqueConstraint("subnet_id", "family", "address"),
    # A deleted reservation's id is never given to another (DELETE by id stays safe to retry).
    sqlite_autoincrement=True,
)

# One row per attachment. The two unique constraints on (subnet, address) make a duplicate
# address impossible whatever the code above does, with any number of daemons.
allocations = sa.Table(
    "allocations",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id", ondelete="RESTRICT"), nullable=False),
    # The Kubernetes cluster (``--cluster-name``) the attachment belongs to: two clusters on
    # one database may both have a pod default/db-0, and each must get an address of its own.
    sa.Column("cluster", sa.String(63), nullable=False, server_default="default"),
    sa.Column("network_key", sa.String(253), nullable=False),
    sa.Column("namespace", sa.String(253), nullable=False),
    sa.Column("pod", sa.String(253), nullable=False),
    sa.Column("interface", sa.String(64), nullable=False),
    sa.Column("address_v4", IPAddressBytes, nullable=True),
    sa.Column("address_v6", IPAddressBytes, nullable=True),
    sa.Column("mac", sa.String(17), nullable=True),
    sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id", ondelete="SET NULL"), nullable=True),
    sa.Column("container_id", sa.String(253), nullable=True),
    sa.Column("pod_uid", sa.String(64), nullable=True),
    sa.Column("netns", sa.String(1024), nullable=True),
    sa.Column("node", sa.String(253), nullable=True),
    # Which door the allocation came through: "cni" (an attachment made by a CNI ADD, which
    # a CNI GC on the same node may collect) or "api" (REST; only DELETE releases it).
    sa.Column("origin", sa.String(16), nullable=False, server_default="api"),
    # Why the address outlives its sandbox or pod (e.g. "statefulset"); null otherwise.
    sa.Column("hold", sa.String(64), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False, server_default=_now()),
    # The attachment identity; the address constraints below are shared by every cluster.
    sa.UniqueConstraint("cluster", "network_key", "namespace", "pod", "interface"),
    sa.UniqueConstraint("subnet_id", "address_v4"),
    sa.UniqueConstraint("subnet_id", "address_v6"),
    # A MAC is unique per network (rows without one do not collide: NULLs are distinct).
    sa.UniqueConstraint("network_key", "mac"),
    sa.Index("ix_allocations_namespace_pod", "namespace", "pod"),
    sa.Index("ix_allocations_container_id", "container_id"),
    # SQLite would give a released id to the next row, and a stale DELETE by id would then
    # release another pod's address. PostgreSQL sequences never go back anyway.
    sqlite_autoincrement=True,
)

# Never-used free space of each subnet family (pool_id null) and of each pool, as ranges.
free_ranges = sa.Table(
    "free_ranges",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("family", sa.SmallInteger, nullable=False),
    sa.Column("pool_id", sa.Integer, sa.ForeignKey("pools.id", ondelete="CASCADE"), nullable=True),
    sa.Column("first", IPAddressBytes, nullable=False),
    sa.Column("last", IPAddressBytes, nullable=False),
    sa.Index("ix_free_ranges_lookup", "subnet_id", "family", "first"),
    # The lowest dynamic range without stepping over the free members of the subnet's pools.
    sa.Index("ix_free_ranges_dynamic", "subnet_id", "family", "pool_id", "first"),
    sa.Index("ix_free_ranges_pool", "pool_id", "first"),
)

# Addresses given back, reused oldest first once the never-used space is gone.
released = sa.Table(
    "released",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("subnet_id", sa.Integer, sa.ForeignKey("subnets.id", ondelete="CASCADE"), nullable=False),
    sa.Column("family", sa.SmallInteger, nullable=False),
    sa.Column("address", IPAddressBytes, nullable=False),
    sa.Column("released_at", UtcDateTime(), nullable=False, server_default=_now()),
    sa.UniqueConstraint("subnet_id", "family", "address"),
    sa.Index("ix_released_order", "subnet_id", "family", "id"),
)

# The audit history: one row per allocate and release of each address.
address_events = sa.Table(
    "address_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", UtcDateTime(), nullable=False, server_default=_now()),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("subnet", sa.String(253), nullable=False),
    sa.Column("family", sa.SmallInteger, nullable=False),
    sa.Column("address", IPAddressBytes, nullable=False),
    sa.Column("allocation_id", sa.Integer, nullable=True),
    sa.Column("cluster", sa.String(63), nullable=True),
    sa.Column("network_key", sa.String(253), nullable=True),
    sa.Column("namespace", sa.String(253), nullable=True),
    sa.Column("pod", sa.String(253), nullable=True),
    sa.Column("interface", sa.String(64), nullable=True),
    sa.Column("container_id", sa.String(253), nullable=True),
    sa.Column("reason", sa.String(253), nullable=True),
    # A page of one address's history: its allocations in id order (ipamd.store.history).
    sa.Index("ix_address_events_address_family_allocation_id", "address", "family", "allocation_id"),
)

# One row per daemon (by node name), rewritten to find out whether writes work again
# while they fail (ipamd.store.faults): a write that must land, and that touches nothing else.
write_checks = sa.Table(
    "write_checks",
    metadata,
    sa.Column("node", sa.String(253), primary_key=True),
    sa.Column("checked_at", UtcDateTime(), nullable=False, server_default=_now()),
)
