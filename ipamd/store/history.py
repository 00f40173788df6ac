"""Reading and pruning ``address_events``, the audit history.

Writing: one row per address allocated or released, in the transaction that does it.

Reading: a page of an address's history is a page of allocation ids (keyset on the index
``(address, family, allocation_id)``), then the events of those allocations.

Pruning deletes the oldest events in short transactions, oldest id first: it reads the
first ``batch`` rows by primary key and deletes the leading run of them older than the
retention, by the database's clock (the same clock that stamped them). Neither statement
reads past the batch, so a round costs the same whether the table holds a thousand rows
or a hundred million, and no index on the timestamp is needed. Deleting only the leading
run keeps an event stamped a little late (a transaction that started before an older one
but inserted after it) for one more round, never deletes one too early.

All functions run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from ipamd.core.history import HistoryQuery
from ipamd.store.records import AllocationRow
from ipamd.store.schema import address_events

# pg_try_advisory_xact_lock key: one daemon prunes at a time, the others skip the round.
PRUNE_LOCK_KEY = 0x6970616D6468  # "ipamdh"

_EVENTS = address_events.c
INSERT_EVENT = sa.insert(address_events)


def record_events(conn: Connection, events: Sequence[Mapping[str, object]]) -> None:
    """Writes audit rows, one per dict of columns (an allocation's addresses, in one statement)."""
    conn.execute(INSERT_EVENT, events)


def record_event(
    conn: Connection,
    *,
    action: str,
    subnet: str,
    family: int,
    address: int,
    allocation_id: int | None,
    holder: AllocationRow,
    reason: str | None = None,
) -> None:
    """Writes one audit row; ``holder`` is the allocation row the address belonged to."""
    conn.execute(
        INSERT_EVENT,
        {
            "action": action,
            "subnet": subnet,
            "family": family,
            "address": address,
            "allocation_id": allocation_id,
            "cluster": holder.cluster,
            "network_key": holder.network_key,
            "namespace": holder.namespace,
            "pod": holder.pod,
            "interface": holder.interface,
            "container_id": holder.container_id,
            "reason": reason,
        },
    )


def _older_than(conn: Connection, retention_seconds: float) -> sa.ColumnElement[bool]:
    if conn.dialect.name == "sqlite":
        # CURRENT_TIMESTAMP stamped the rows as 'YYYY-MM-DD HH:MM:SS' UTC; datetime() writes
        # the same form, and SQLite compares the text.
        cutoff: sa.ColumnElement[Any] = sa.func.datetime(
            "now", sa.literal(f"-{retention_seconds:f} seconds", sa.String)
        )
    else:
        cutoff = sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, sa.literal(retention_seconds, sa.Float))
    return _EVENTS.at < cutoff


def prune_batch(conn: Connection, *, retention_seconds: float, batch: int) -> tuple[int, bool]:
    """Deletes at most ``batch`` of the oldest events older than the retention; returns how
    many it deleted and whether older ones may remain."""
    if (
        conn.dialect.name == "postgresql"
        and not conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(PRUNE_LOCK_KEY))).scalar()
    ):
        return 0, False  # another daemon is pruning right now
    expired = _older_than(conn, retention_seconds)
    window = conn.execute(sa.select(_EVENTS.id, expired.label("expired")).order_by(_EVENTS.id).limit(batch)).all()
    last = None
    for row in window:
        if not row.expired:
            break
        last = row.id
    if last is None:
        return 0, False
    deleted = conn.execute(sa.delete(address_events).where(_EVENTS.id <= last, expired)).rowcount
    return deleted, len(window) == batch and last == window[-1].id


def _moment(conn: Connection, value: datetime) -> sa.ColumnElement[Any]:
    if conn.dialect.name == "sqlite":
        # Compared as text with the stored 'YYYY-MM-DD HH:MM:SS[.ffffff]': SQLAlchemy's own
        # binding would always add the fraction, and 'HH:MM:05' would sort before 'HH:MM:05.000000'.
        text = value.strftime("%Y-%m-%d %H:%M:%S") + (f".{value.microsecond:06d}" if value.microsecond else "")
        return sa.literal(text, sa.String)
    return sa.literal(value, address_events.c.at.type)


def span_ids(conn: Connection, *, family: int, address: int, query: HistoryQuery) -> list[int]:
    """Returns up to ``query.limit + 1`` allocation ids holding the address in the
    window, in the query's order: one more than a page, to tell whether another follows."""
    statement = (
        sa.select(_EVENTS.allocation_id)
        .where(_EVENTS.address == address, _EVENTS.family == family, _EVENTS.allocation_id.is_not(None))
        .group_by(_EVENTS.allocation_id)
    )
    if query.after is not None:
        statement = statement.where(
            _EVENTS.allocation_id < query.after if query.newest_first else _EVENTS.allocation_id > query.after
        )
    # Spans overlapping [since, until): started before until (or before the kept history),
    # and not released before since.
    if query.until is not None:
        started = sa.func.min(sa.case((_EVENTS.action == "allocate", _EVENTS.at)))
        statement = statement.having(sa.or_(started.is_(None), started < _moment(conn, query.until)))
    if query.since is not None:
        ended = sa.func.max(sa.case((_EVENTS.action == "release", _EVENTS.at)))
        statement = statement.having(sa.or_(ended.is_(None), ended >= _moment(conn, query.since)))
    order = _EVENTS.allocation_id.desc() if query.newest_first else _EVENTS.allocation_id
    return [row.allocation_id for row in conn.execute(statement.order_by(order).limit(query.limit + 1))]


def span_events(
    conn: Connection, *, family: int, address: int, ids: Sequence[int], newest_first: bool
) -> list[Row[Any]]:
    """Returns the events of the allocations ``ids`` on the address, grouped by allocation
    in the order of ``ids``, each group oldest event first."""
    if not ids:
        return []
    wanted = set(ids)
    order = _EVENTS.allocation_id.desc() if newest_first else _EVENTS.allocation_id
    rows = conn.execute(
        sa.select(address_events)
        .where(_EVENTS.address == address, _EVENTS.family == family, _EVENTS.allocation_id.between(min(ids), max(ids)))
        .order_by(order, _EVENTS.id)
    )
    return [row for row in rows if row.allocation_id in wanted]
