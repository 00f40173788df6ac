"""The registry of cluster names sharing the database (table ``clusters``).

Each function runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ipamd.errors import NameTaken
from ipamd.store.schema import allocations, clusters

_CLUSTER_NAMES = sa.select(clusters.c.name).order_by(clusters.c.name)
_HOLDS_ALLOCATIONS = sa.select(allocations.c.id).where(allocations.c.cluster == sa.bindparam("cluster")).limit(1)


def cluster_names(conn: Connection) -> list[str]:
    """Returns the registered cluster names, sorted."""
    return list(conn.execute(_CLUSTER_NAMES).scalars())


def holds_allocations(conn: Connection, cluster: str) -> bool:
    return conn.execute(_HOLDS_ALLOCATIONS, {"cluster": cluster}).first() is not None


def register(conn: Connection, cluster: str) -> None:
    """Registers ``cluster``; raises NameTaken when another transaction just did."""
    try:
        conn.execute(sa.insert(clusters).values(name=cluster))
    except sa.exc.IntegrityError as e:
        raise NameTaken(f"cluster {cluster} is registered already") from e


def forget(conn: Connection, names: Iterable[str]) -> None:
    conn.execute(sa.delete(clusters).where(clusters.c.name.in_(list(names))))
