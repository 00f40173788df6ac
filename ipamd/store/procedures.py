"""Allocation and release as single named commands (``Database.call``).

On PostgreSQL each is one statement calling a server-side function of migration 0009, one
round trip on a connection outside an explicit transaction, so a subnet's row lock lasts
that statement instead of several round trips. On SQLite, which has no stored procedures,
the allocation runs the same steps from Python on the writer's sqlite3 connection: the
writer is the one place all writes queue, and SQLAlchemy's execution machinery cost it
several times what SQLite itself did for these few statements.

The rows come back in the shape of ``records.allocation_query``, with the outcome and what
the service needs to parse the subnet's spec from its cache.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.expression import Executable

from ipamd.core.allocation import Owner
from ipamd.core.placement import RULE_FIELDS
from ipamd.store import records
from ipamd.store.schema import IPAddressBytes, UtcDateTime, allocations, subnets


@dataclass(frozen=True)
class Procedure:
    """A named command: a statement on PostgreSQL, the same steps in Python on SQLite."""

    postgresql: Executable
    sqlite: Callable[[sqlite3.Connection, dict[str, Any]], list[Any]]


_ALLOCATE_PARAMETERS = (
    "subnet_ids",
    "family",
    "cluster",
    "network_key",
    "namespace",
    "pod",
    "interface",
    "container_id",
    "pod_uid",
    "netns",
    "node",
    "origin",
    "hold",
    "check_uid",
    "replaces_uid",
    "deadline",
)
# Outcomes: 'created', 'existing' (the attachment's allocation, sandbox facts refreshed),
# 'held' (another instance of the pod holds it; the row is its), 'exhausted' (no candidate
# had space), 'overlap' (a candidate shares addresses with other inline ranges),
# 'placement' (the provider's walk reached a subnet with placement rules, which the daemon
# applies: it calls again with the subnets it chose; migrations 0011, 0012) and 'expired' (the
# database's clock is past the deadline): the last four leave everything as it was.
_ALLOCATE_ON_POSTGRESQL = sa.text(
    f"SELECT * FROM ipamd_allocate({', '.join(':' + name for name in _ALLOCATE_PARAMETERS)})"
).columns(
    address_v4=IPAddressBytes,
    address_v6=IPAddressBytes,
    created_at=UtcDateTime(),
    subnet_spec=sa.JSON,
)


class AllocationResult(NamedTuple):
    """ALLOCATE's row: the outcome, the allocation in the shape of
    ``records.allocation_query`` (``records.AllocationRow``) and what the service needs to
    parse its subnet's spec from its cache. Rows of the outcomes that write nothing carry
    the outcome alone (every other field None)."""

    outcome: str
    id: int
    subnet_id: int
    cluster: str
    network_key: str
    namespace: str
    pod: str
    interface: str
    address_v4: int | None
    address_v6: int | None
    mac: str | None
    pool_id: int | None
    container_id: str | None
    pod_uid: str | None
    netns: str | None
    node: str | None
    origin: str
    hold: str | None
    created_at: datetime | None
    subnet_name: str
    pool_name: str | None
    subnet_revision: int
    subnet_spec: Any
    subnet_origin: str


_NOTHING = AllocationResult._make([None] * len(AllocationResult._fields))

# ipamd_allocate's steps for SQLite, where the writer is alone: nothing changes between a
# read and the write after it.
_HELD = (
    "SELECT id, container_id, pod_uid, netns, node, origin, hold FROM allocations "
    "WHERE cluster = ? AND network_key = ? AND namespace = ? AND pod = ? AND interface = ?"
)
_REFRESH = (
    "UPDATE allocations SET container_id = coalesce(?, container_id), pod_uid = coalesce(?, pod_uid), "
    "netns = coalesce(?, netns), node = coalesce(?, node), origin = CASE WHEN ? = 'cni' THEN 'cni' ELSE origin END, "
    "hold = coalesce(?, hold) WHERE id = ?"
)
# What a created allocation's result needs of its subnet comes with the candidate itself.
_SUBNET_COLUMNS = "s.id, s.name, s.spec, s.priority, s.revision, s.origin"
_SUBNET = f"SELECT {_SUBNET_COLUMNS} FROM subnets s WHERE s.id = ?"
# The provider's next subnet after (priority, name) with free space in a family asked,
# one step of a walk along ix_subnets_provider_order.
_NEXT_WITH_SPACE = (
    f"SELECT {_SUBNET_COLUMNS} FROM subnets s WHERE s.provider = ?1 AND (s.priority, s.name) > (?3, ?4) AND ("
    " EXISTS (SELECT 1 FROM free_ranges r WHERE r.subnet_id = s.id AND r.pool_id IS NULL AND (?2 IS NULL OR r.family = ?2))"
    " OR EXISTS (SELECT 1 FROM released r WHERE r.subnet_id = s.id AND (?2 IS NULL OR r.family = ?2))"
    ") ORDER BY s.priority, s.name LIMIT 1"
)
# The attachment's allocation, or else the provider's first subnet with space: one
# statement (the second arm runs only when the first finds nothing) where there were two,
# each a GIL hand-off of the writer. A row is ('held', _HELD's columns) or ('subnet',
# _SUBNET_COLUMNS, NULL); ?5-?8 are the rest of the attachment's key.
_HELD_OR_FIRST_WITH_SPACE = (
    "SELECT 'held', id, container_id, pod_uid, netns, node, origin, hold FROM allocations "
    "WHERE cluster = ?5 AND network_key = ?1 AND namespace = ?6 AND pod = ?7 AND interface = ?8 "
    f"UNION ALL SELECT 'subnet', *, NULL FROM ({_NEXT_WITH_SPACE}) LIMIT 1"
)
# Below every priority and name: a walk from the provider's first subnet.
_WALK_START = (-(2**62), "")
_LOWEST_FREE = "SELECT id, first, last FROM free_ranges WHERE subnet_id = ? AND family = ? AND pool_id IS NULL ORDER BY first LIMIT 1"
_OLDEST_RELEASED = "SELECT id, address FROM released WHERE subnet_id = ? AND family = ? ORDER BY id LIMIT 1"
_INSERT = (
    "INSERT INTO allocations (subnet_id, cluster, network_key, namespace, pod, interface, address_v4, address_v6, "
    "container_id, pod_uid, netns, node, origin, hold, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = (
    "INSERT INTO address_events (action, subnet, family, address, allocation_id, cluster, network_key, namespace, pod, "
    "interface, container_id) VALUES ('allocate', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_RESULT = (
    "SELECT a.id, a.subnet_id, a.cluster, a.network_key, a.namespace, a.pod, a.interface, a.address_v4, a.address_v6, a.mac, "
    "a.pool_id, a.container_id, a.pod_uid, a.netns, a.node, a.origin, a.hold, a.created_at, s.name, p.name, "
    "s.revision, s.spec, s.origin FROM allocations a JOIN subnets s ON s.id = a.subnet_id "
    "LEFT JOIN pools p ON p.id = a.pool_id WHERE a.id = ?"
)


def _allocate_on_sqlite(db: sqlite3.Connection, params: dict[str, Any]) -> list[AllocationResult]:
    """ipamd_allocate (migration 0009) for SQLite; see that function for the rules."""
    if datetime.now(UTC) > params["deadline"]:
        return [_NOTHING._replace(outcome="expired")]
    owner = (params["cluster"], params["network_key"], params["namespace"], params["pod"], params["interface"])
    sandbox = (params["container_id"], params["pod_uid"], params["netns"], params["node"])
    walk_start = None
    if params["subnet_ids"] is None:
        first = db.execute(
            _HELD_OR_FIRST_WITH_SPACE,
            (params["network_key"], params["family"], *_WALK_START, params["cluster"], *owner[2:]),
        ).fetchone()
        if first is not None and first[0] == "subnet":
            walk_start = first[1:7]
        held = first[1:] if first is not None and first[0] == "held" else None
    else:
        held = db.execute(_HELD, owner).fetchone()
    if held is not None:
        held_id, *held_sandbox, held_origin, held_hold = held
        held_uid = held_sandbox[1]
        if (
            params["check_uid"]
            and held_uid is not None
            and params["pod_uid"] != held_uid
            and held_uid != params["replaces_uid"]
        ):
            return [_result(db, "held", held_id)]
        changed = any(new is not None and new != old for new, old in zip(sandbox, held_sandbox))
        if (
            changed
            or (params["origin"] == "cni" and held_origin != "cni")
            or (params["hold"] is not None and params["hold"] != held_hold)
        ):
            db.execute(_REFRESH, (*sandbox, params["origin"], params["hold"], held_id))
        return [_result(db, "existing", held_id)]

    if params["subnet_ids"] is not None:
        candidates: Any = (db.execute(_SUBNET, (subnet_id,)).fetchone() for subnet_id in params["subnet_ids"])
    else:
        candidates = _provider_subnets_with_space(db, params["network_key"], params["family"], walk_start)
    for candidate in candidates:
        if candidate is None:
            continue
        subnet_id, subnet_name, spec_text, _, revision, subnet_origin = candidate
        spec = _parsed_spec(spec_text)
        if spec.get("overlap") is not None:
            return [_NOTHING._replace(outcome="overlap")]
        if params["subnet_ids"] is None and any(key in spec for key in RULE_FIELDS):
            return [_NOTHING._replace(outcome="placement")]
        picks = _take_in_subnet(db, subnet_id, _families(spec, params["family"]))
        if picks is None:
            continue
        created_at = datetime.now(UTC)
        allocation_id = db.execute(
            _INSERT,
            (
                subnet_id,
                *owner,
                _blob(picks.get(4)),
                _blob(picks.get(6)),
                *sandbox,
                params["origin"],
                params["hold"],
                created_at.strftime("%Y-%m-%d %H:%M:%S.%f"),
            ),
        ).lastrowid
        assert allocation_id is not None
        db.executemany(
            _INSERT_EVENT,
            [
                (subnet_name, family, _blob(address), allocation_id, *owner, params["container_id"])
                for family, address in picks.items()
            ],
        )
        # The row as inserted: reading it back (_RESULT) would cost the writer a statement.
        return [
            AllocationResult(
                "created",
                allocation_id,
                subnet_id,
                *owner,
                picks.get(4),
                picks.get(6),
                None,  # mac: the dynamic path takes none
                None,  # pool_id: nor a pool
                *sandbox,
                params["origin"],
                params["hold"],
                created_at,
                subnet_name,
                None,
                revision,
                spec,
                subnet_origin,
            )
        ]
    return [_NOTHING._replace(outcome="exhausted")]


def _provider_subnets_with_space(
    db: sqlite3.Connection, provider: str, family: int | None, first: Any
) -> Iterator[Any]:
    """Yields the provider's subnets with free space in priority order from ``first`` (the
    first of them, already read; None: there is none), reading no further than asked."""
    row = first
    while row is not None:
        yield row
        row = db.execute(_NEXT_WITH_SPACE, (provider, family, row[3], row[1])).fetchone()


def _families(spec: dict[str, Any], family: int | None) -> list[int]:
    """The families an allocation in the subnet takes: all of its own, or the one asked (if it has it)."""
    own = [6 if ":" in block else 4 for block in spec["cidrBlock"].split(",")]
    return own if family is None else [family] if family in own else []


def _take_in_subnet(db: sqlite3.Connection, subnet_id: int, families: list[int]) -> dict[int, int] | None:
    """Takes one address per family (dual stack: all or none), as ipamd.store.space.take_dynamic does."""
    free_ranges, reused = {}, {}
    for family in families:
        free = db.execute(_LOWEST_FREE, (subnet_id, family)).fetchone()
        if free is not None:
            free_ranges[family] = free
            continue
        released = db.execute(_OLDEST_RELEASED, (subnet_id, family)).fetchone()
        if released is None:
            return None
        reused[family] = released
    if not families:
        return None
    picks = {}
    for family, (range_id, first, last) in free_ranges.items():
        if first == last:
            db.execute("DELETE FROM free_ranges WHERE id = ?", (range_id,))
        else:
            db.execute(
                "UPDATE free_ranges SET first = ? WHERE id = ?", (_blob(int.from_bytes(first, "big") + 1), range_id)
            )
        picks[family] = int.from_bytes(first, "big")
    for family, (released_id, address) in reused.items():
        db.execute("DELETE FROM released WHERE id = ?", (released_id,))
        picks[family] = int.from_bytes(address, "big")
    return dict(sorted(picks.items()))


def _result(db: sqlite3.Connection, outcome: str, allocation_id: int) -> AllocationResult:
    (
        allocation_id,
        subnet_id,
        cluster,
        network_key,
        namespace,
        pod,
        interface,
        address_v4,
        address_v6,
        *middle,
        created_at,
        subnet_name,
        pool_name,
        revision,
        spec,
        subnet_origin,
    ) = db.execute(_RESULT, (allocation_id,)).fetchone()
    return AllocationResult._make(
        [
            outcome,
            allocation_id,
            subnet_id,
            cluster,
            network_key,
            namespace,
            pod,
            interface,
            _integer(address_v4),
            _integer(address_v6),
            *middle,
            datetime.fromisoformat(created_at).replace(tzinfo=UTC),
            subnet_name,
            pool_name,
            revision,
            _parsed_spec(spec),
            subnet_origin,
        ]
    )


@lru_cache(maxsize=256)
def _parsed_spec(text: str) -> dict[str, Any]:
    """A subnet's stored spec, parsed once per text: every ADD reads its subnet's. Shared
    between results, so never modified (ServiceBase._spec only compares and parses it)."""
    parsed: dict[str, Any] = json.loads(text)
    return parsed


def _blob(address: int | None) -> bytes | None:
    return None if address is None else address.to_bytes(16, "big")


def _integer(blob: bytes | None) -> int | None:
    return None if blob is None else int.from_bytes(blob, "big")


ALLOCATE = Procedure(postgresql=_ALLOCATE_ON_POSTGRESQL, sqlite=_allocate_on_sqlite)


def allocate_params(
    *,
    subnet_ids: list[int] | None,
    family: int | None,
    owner: Owner,
    cluster: str,
    container_id: str | None,
    pod_uid: str | None,
    netns: str | None,
    node: str | None,
    origin: str,
    hold: str | None,
    check_uid: bool,
    replaces_uid: str | None,
    deadline: datetime,
) -> dict[str, object]:
    """Returns ALLOCATE's parameters; ``subnet_ids`` None: the provider's subnets by priority.
    Past ``deadline`` (UTC) the database allocates nothing: the caller has given up by then."""
    return {
        "subnet_ids": subnet_ids,
        "family": family,
        **records.owner_params(owner, cluster=cluster),
        "container_id": container_id,
        "pod_uid": pod_uid,
        "netns": netns,
        "node": node,
        "origin": origin,
        "hold": hold,
        "check_uid": check_uid,
        "replaces_uid": replaces_uid,
        "deadline": deadline,
    }


# An allocation with what a release decides on: the subnet's revision and spec, and its
# pools as ipamd_release compares them (a change since the read makes it answer 'stale').
_FOR_RELEASE = records.allocation_query().add_columns(
    subnets.c.revision.label("subnet_revision"),
    subnets.c.spec.label("subnet_spec"),
    subnets.c.origin.label("subnet_origin"),
    sa.func.ipamd_pools_of(allocations.c.subnet_id, type_=JSONB).label("subnet_pools"),
)
FOR_RELEASE_BY_ID = _FOR_RELEASE.where(allocations.c.id == sa.bindparam("allocation_id"))
FOR_RELEASE_BY_OWNER = _FOR_RELEASE.where(*records.BY_OWNER)

# Outcomes: 'released', 'changed' (deleted or taken over since it was read), 'stale' (the
# subnet's spec or pools changed since: decide where the addresses go again).
RELEASE = sa.text(
    "SELECT ipamd_release(:allocation_id, :container_id, :pod_uid, :subnet_revision, :pools, :give_back, :reason) AS outcome"
).bindparams(sa.bindparam("pools", type_=JSONB), sa.bindparam("give_back", type_=JSONB))


def release_params(row: records.Record, *, give_back: dict[int, int | None], reason: str) -> dict[str, object]:
    """Returns RELEASE's parameters for ``row`` (read by FOR_RELEASE_*): each family in
    ``give_back`` returns to that pool id, or to the reuse queue for None."""
    return {
        "allocation_id": row.id,
        "container_id": row.container_id,
        "pod_uid": row.pod_uid,
        "subnet_revision": row.subnet_revision,
        "pools": row.subnet_pools,
        "give_back": {str(family): pool_id for family, pool_id in give_back.items()},
        "reason": reason,
    }
