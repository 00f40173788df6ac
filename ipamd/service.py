"""The IPAM service: every operation as one database transaction.

It owns transactions, idempotency and the order of checks; the HTTP layer calls it with
parsed requests, the Kubernetes layer enriches ADD requests from pod annotations before
calling it. Database failures leave here as ``Unavailable`` (CNI code 11).

Concurrency: on PostgreSQL each pick-and-insert locks only its subnet row
(``SELECT ... FOR UPDATE``), so daemons on different nodes allocate from different subnets
without waiting for each other and never pick the same address from one subnet; the
unique constraints are the last line. On SQLite one writer thread runs every write
transaction (grouped commits, ``ipamd.store.database``), so writers never meet.
See docs/design/concurrency.md.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row
from sqlalchemy.ext.asyncio import AsyncEngine

from ipamd.core import intervals as iv
from ipamd.core.addresses import format_intervals, ip_text, parse_ip
from ipamd.core.allocation import Owner, canonical_mac, parse_static_request, reservation_admits
from ipamd.core.nad import NetworkRequest
from ipamd.core.pool import PoolSpec, canonical_pool, canonical_reservation, merge_members, pool_capacity, pools_overlap
from ipamd.core.subnet import SubnetSpec, canonical_subnet
from ipamd.errors import (
    AddressConflict,
    AlreadyExists,
    Exhausted,
    InUse,
    InvalidInput,
    IpamError,
    NotFound,
    Unavailable,
)
from ipamd.logs import allocation_fields
from ipamd.store import records, space
from ipamd.store.database import AsyncEngineDatabase, Database
from ipamd.store.engine import head_revision
from ipamd.store.schema import address_events, allocations, pools, released, reservations, subnets

log = logging.getLogger("ipamd.service")

T = TypeVar("T")

# Statements of the allocation and release paths, built once (see ipamd.store.space).
_SUBNET_BY_ID = sa.select(subnets).where(subnets.c.id == sa.bindparam("subnet_id"))
_SUBNET_BY_ID_LOCKED = _SUBNET_BY_ID.with_for_update()
_SUBNETS_OF_PROVIDER = (
    sa.select(subnets).where(subnets.c.provider == sa.bindparam("provider")).order_by(subnets.c.priority, subnets.c.name)
)
_INSERT_ALLOCATION = sa.insert(allocations)
_DELETE_ALLOCATION = sa.delete(allocations).where(allocations.c.id == sa.bindparam("allocation_id"))
# PostgreSQL only: a transaction-scoped lock on one provider's set of subnets.
_PROVIDER_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))")
_INSERT_EVENT = sa.insert(address_events)
_POOLS_OF_SUBNET = sa.select(pools.c.id, pools.c.name, pools.c.ips).where(pools.c.subnet_id == sa.bindparam("subnet_id"))

TRANSACTION_TIMEOUT_SECONDS = 10.0
CONFLICT_RETRIES = 5


@dataclass(frozen=True)
class AddRequest:
    """An allocation request after parsing, whatever door it came through."""

    owner: Owner
    network: NetworkRequest
    container_id: str | None = None
    pod_uid: str | None = None
    netns: str | None = None
    static_ips: tuple[str, ...] = ()
    mac: str | None = None
    subnet_name: str | None = None
    pool_name: str | None = None
    # Kube-OVN ip_pool given as a list of addresses: each entry one address per family.
    pool_entries: tuple[tuple[str, ...], ...] = ()
    ordinal: int | None = None
    hold: str | None = None
    node: str | None = None
    field_prefix: str = "ips"


@dataclass
class _Subnet:
    id: int
    name: str
    spec: SubnetSpec
    origin: str
    revision: int
    created_at: Any = None
    pools: list[tuple[int, PoolSpec]] = field(default_factory=list)


class Ipam:
    """Allocation, release and the administration of subnets, pools and reservations."""

    def __init__(self, database: Database | AsyncEngine, *, node: str | None = None, release_on_del: bool = True) -> None:
        self.database: Database = AsyncEngineDatabase(database) if isinstance(database, AsyncEngine) else database
        self.node = node
        # In Kubernetes mode the pod lifecycle releases addresses, not CNI DEL.
        self.release_on_del = release_on_del
        # Subnet rows are locked (FOR UPDATE) on PostgreSQL only: SQLite has one writer anyway.
        self._row_locks = self.database.dialect != "sqlite"
        # Parsed specs, checked against the stored form on every hit: SQLite reuses the id of
        # a deleted row, so (id, revision) alone could hand a new subnet its predecessor's spec.
        self._spec_cache: dict[tuple[int, int], tuple[Any, SubnetSpec]] = {}
        self._pool_cache: dict[int, tuple[Any, SubnetSpec, PoolSpec]] = {}
        self.listeners: list[Any] = []
        # Outages are logged when they start and end, not once per refused request.
        self._database_down = False

    # ----------------------------------------------------------------- plumbing

    async def _write(self, body: Callable[[Connection], T]) -> T:
        """Returns ``body`` run in a write transaction; database failures become Unavailable."""
        return await self._run(self.database.write, body)

    async def read(self, body: Callable[[Connection], T]) -> T:
        """Returns ``body`` run in a read transaction; database failures become Unavailable."""
        return await self._run(self.database.read, body)

    _read = read

    async def _run(self, runner: Callable[[Callable[[Connection], T]], Awaitable[T]], body: Callable[[Connection], T]) -> T:
        try:
            result = await self._attempt(runner, body)
        except Unavailable as e:
            if not self._database_down:
                self._database_down = True
                log.warning("database unavailable (%s): answering 'try again later' until it is back", e.message)
            raise
        if self._database_down:
            self._database_down = False
            log.info("database reachable again")
        return result

    @staticmethod
    async def _attempt(runner: Callable[[Callable[[Connection], T]], Awaitable[T]], body: Callable[[Connection], T]) -> T:
        try:
            async with asyncio.timeout(TRANSACTION_TIMEOUT_SECONDS):
                return await runner(body)
        except (IpamError, sa.exc.IntegrityError):
            raise
        except TimeoutError as e:
            raise Unavailable("the database did not answer in time; retry later") from e
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, OSError) as e:
            raise Unavailable(f"database unavailable ({type(e).__name__}); retry later") from e
        except sa.exc.DBAPIError as e:
            if e.connection_invalidated or not isinstance(e, (sa.exc.ProgrammingError, sa.exc.DataError)):
                raise Unavailable(f"database unavailable ({type(e.orig).__name__}); retry later") from e
            raise

    async def close(self) -> None:
        await self.database.dispose()

    async def ready(self) -> tuple[bool, str]:
        """Returns whether the database answers and carries the newest schema, and why not."""
        try:
            revision = await asyncio.wait_for(self.database.revision(), timeout=3)
        except Exception as e:  # noqa: BLE001 - readiness reports any failure as not ready
            return False, f"database unavailable ({type(e).__name__})"
        if revision != head_revision():
            return False, f"database schema at {revision}, expected {head_revision()}: run ipamd db upgrade"
        return True, "ready"

    def _spec(self, row: Row[Any]) -> SubnetSpec:
        key = (row.id, row.revision)
        cached = self._spec_cache.get(key)
        if cached is not None and cached[0] == row.spec:
            return cached[1]
        spec = canonical_subnet(row.spec)
        self._spec_cache[key] = (row.spec, spec)
        return spec

    def _pool_spec(self, row: Any, subnet: SubnetSpec) -> PoolSpec:
        cached = self._pool_cache.get(row.id)
        if cached is not None and cached[0] == (row.name, row.ips) and (cached[1] is subnet or cached[1] == subnet):
            return cached[2]
        spec = canonical_pool({"name": row.name, "subnet": subnet.name, "ips": row.ips}, subnet=subnet)
        self._pool_cache[row.id] = ((row.name, row.ips), subnet, spec)
        return spec

    def _subnet_by_name(self, conn: Connection, name: str, *, lock: bool = False) -> _Subnet:
        statement = sa.select(subnets).where(subnets.c.name == name)
        if lock and self._row_locks:
            statement = statement.with_for_update()
        row = (conn.execute(statement)).first()
        if row is None:
            raise NotFound(f"subnet {name} not found")
        return self._subnet(row)

    def _subnet_by_id(self, conn: Connection, subnet_id: int, *, lock: bool = False) -> _Subnet:
        statement = _SUBNET_BY_ID_LOCKED if lock and self._row_locks else _SUBNET_BY_ID
        row = conn.execute(statement, {"subnet_id": subnet_id}).first()
        if row is None:
            raise NotFound(f"subnet #{subnet_id} not found")
        return self._subnet(row)

    def _subnet(self, row: Row[Any]) -> _Subnet:
        return _Subnet(row.id, row.name, self._spec(row), row.origin, row.revision, row.created_at)

    def _pools_of(self, conn: Connection, subnet: _Subnet) -> list[tuple[int, PoolSpec]]:
        result = conn.execute(_POOLS_OF_SUBNET, {"subnet_id": subnet.id})
        return [(row.id, self._pool_spec(row, subnet.spec)) for row in result]

    def _event(self, conn: Connection, *, action: str, subnet: _Subnet, family: int, address: int,
        allocation_id: int | None, row: Any, reason: str | None = None,
    ) -> None:
        """Writes one audit row; ``row`` is the allocation row the address belonged to."""
        conn.execute(
            _INSERT_EVENT,
            {
                "action": action, "subnet": subnet.name, "family": family, "address": address,
                "allocation_id": allocation_id, "network_key": row.network_key, "namespace": row.namespace,
                "pod": row.pod, "interface": row.interface, "container_id": row.container_id, "reason": reason,
            },
        )

    def _notify(self, event: str, **data: Any) -> None:
        for listener in self.listeners:
            try:
                listener(event, **data)
            except Exception:  # noqa: BLE001 - observers never break an allocation
                log.exception("listener failed on %s", event)

    # ----------------------------------------------------------------- subnets

    async def create_subnet(self, raw: object, *, origin: str = "api") -> dict[str, Any]:
        spec = canonical_subnet(raw)
        try:
            def run(conn: Connection) -> Any:
                self._check_overlap(conn, spec, exclude_id=None)
                subnet_id = (
                    conn.execute(
                        sa.insert(subnets)
                        .values(name=spec.name, provider=spec.provider, priority=spec.priority, spec=spec.to_json(), origin=origin)
                        .returning(subnets.c.id)
                    )
                ).scalar_one()
                for layout in spec.families:
                    space.add_ranges(conn, subnet_id=subnet_id, family=layout.version, pool_id=None, intervals=layout.dynamic_space())
                log.info("subnet created name=%s cidr=%s provider=%s origin=%s", spec.name, spec.cidr_block, spec.provider, origin)
                return self._subnet_json(conn, self._subnet_by_id(conn, subnet_id))

            return await self._write(run)
        except sa.exc.IntegrityError as e:
            raise AlreadyExists(f"subnet {spec.name} already exists") from e

    def _check_overlap(self, conn: Connection, spec: SubnetSpec, *, exclude_id: int | None) -> None:
        """Rejects a CIDR overlapping another subnet of the same provider (one L2 domain)."""
        if self._row_locks:
            # Nothing else serialises two daemons creating subnets of one provider at once:
            # both would pass this check and both insert. The lock lasts until commit; the
            # second one then sees the first's row (READ COMMITTED reads per statement).
            conn.execute(_PROVIDER_LOCK, {"key": f"ipamd subnets of provider {spec.provider}"})
        statement = sa.select(subnets)
        statement = statement.where(subnets.c.provider.is_(None) if spec.provider is None else subnets.c.provider == spec.provider)
        for row in conn.execute(statement):
            # A row of the same name is a name clash, not an overlap: the insert's unique
            # constraint reports it, and an inline subnet created meanwhile by another daemon
            # (seen once the lock above is ours) is then found by the retried ADD.
            if row.id == exclude_id or row.name == spec.name:
                continue
            other = self._spec(row)
            for layout in spec.families:
                theirs = other.family(layout.version)
                if theirs is not None and (layout.network in theirs.network or theirs.network in layout.network):
                    raise AlreadyExists(
                        f"{layout.network} overlaps {theirs.network} of subnet {row.name} under provider {spec.provider}; "
                        "use another provider for a separate L2 domain"
                    )

    async def list_subnets(self) -> list[dict[str, Any]]:
        def run(conn: Connection) -> Any:
            rows = (conn.execute(sa.select(subnets).order_by(subnets.c.name))).all()
            return [self._subnet_json(conn, self._subnet(row)) for row in rows]

        return await self._read(run)

    async def get_subnet(self, name: str) -> dict[str, Any]:
        def run(conn: Connection) -> Any:
            return self._subnet_json(conn, self._subnet_by_name(conn, name))

        return await self._read(run)

    def _subnet_json(self, conn: Connection, subnet: _Subnet) -> dict[str, Any]:
        body = subnet.spec.to_json()
        body["origin"] = subnet.origin
        body["createdAt"] = records.timestamp(subnet.created_at)
        pool_specs = [spec for _, spec in self._pools_of(conn, subnet)]
        usage = {}
        for layout in subnet.spec.families:
            version = layout.version
            allocatable = [layout.allocatable]
            free = space.ranges(conn, subnet_id=subnet.id, family=version, pool_id=None)
            reused = space.released_addresses(conn, subnet_id=subnet.id, family=version)
            reserved = (
                conn.execute(
                    sa.select(sa.func.count()).select_from(reservations)
                    .where(reservations.c.subnet_id == subnet.id, reservations.c.family == version)
                )
            ).scalar_one()
            usage[f"v{version}"] = {
                "total": iv.size(allocatable),
                "used": records.count_held(conn, subnet_id=subnet.id, family=version),
                "available": iv.size(free) + len(reused),
                "excluded": iv.size(iv.subtract(iv.normalize([*layout.excluded, *layout.unassignable()]), iv.subtract([(int(layout.network.first), int(layout.network.last))], allocatable))),
                "reserved": int(reserved),
                "pooled": iv.size(merge_members(pool_specs, version)),
                "freeRanges": format_intervals(iv.normalize([*free, *iv.from_points(reused)]), version),
            }
        body["usage"] = usage
        return body

    async def patch_subnet(self, name: str, patch: object) -> dict[str, Any]:
        if not isinstance(patch, Mapping):
            raise InvalidInput("expected a JSON object with the fields to change")
        if "name" in patch and patch["name"] != name:
            raise InvalidInput("a subnet cannot be renamed", field="name")
        def run(conn: Connection) -> Any:
            subnet = self._subnet_by_name(conn, name, lock=True)
            merged = {**subnet.spec.to_json(), **patch}
            spec = canonical_subnet(merged)
            self._check_overlap(conn, spec, exclude_id=subnet.id)
            # Every held address must stay inside the new CIDRs and off the new gateway.
            for layout in spec.families:
                held = records.held_addresses(conn, subnet_id=subnet.id, family=layout.version)
                outside = [a for a in held if not int(layout.network.first) <= a <= int(layout.network.last) or a == layout.gateway]
                if outside:
                    raise InUse(f"{ip_text(outside[0], layout.version)} is allocated and would fall outside the subnet or on its gateway")
            for old in subnet.spec.families:
                if spec.family(old.version) is None and records.count_held(conn, subnet_id=subnet.id, family=old.version):
                    raise InUse(f"IPv{old.version} addresses of subnet {name} are allocated; release them first")
            conn.execute(
                sa.update(subnets).where(subnets.c.id == subnet.id).values(
                    provider=spec.provider, priority=spec.priority, spec=spec.to_json(), revision=subnet.revision + 1
                )
            )
            updated = self._subnet_by_id(conn, subnet.id)
            self._rebuild_space(conn, updated)
            log.info("subnet updated name=%s cidr=%s", name, spec.cidr_block)
            return self._subnet_json(conn, updated)

        return await self._write(run)

    def _rebuild_space(self, conn: Connection, subnet: _Subnet) -> None:
        """Recomputes all free ranges of a subnet from its spec, pools, reservations and holders.

        Costs a read of the subnet's allocations: only spec and pool changes call it.
        """
        pool_list = self._pools_of(conn, subnet)
        space.clear(conn, subnet_id=subnet.id, everything=True)
        for layout in subnet.spec.families:
            version = layout.version
            held = iv.from_points(records.held_addresses(conn, subnet_id=subnet.id, family=version))
            reserved_rows = conn.execute(
                sa.select(reservations.c.address).where(reservations.c.subnet_id == subnet.id, reservations.c.family == version)
            )
            reserved = iv.from_points(int(row.address) for row in reserved_rows)
            pooled = merge_members([spec for _, spec in pool_list], version)
            reused = iv.from_points(space.released_addresses(conn, subnet_id=subnet.id, family=version))
            dynamic = iv.subtract(layout.dynamic_space(), [*pooled, *reserved, *held])
            # Released addresses that are still dynamic stay in the reuse queue; others leave it.
            stale = iv.subtract(reused, dynamic)
            for first, last in stale:
                conn.execute(
                    sa.delete(released).where(
                        released.c.subnet_id == subnet.id, released.c.address >= first, released.c.address <= last
                    )
                )
            space.add_ranges(conn, subnet_id=subnet.id, family=version, pool_id=None, intervals=iv.subtract(dynamic, reused))
            for pool_id, pool_spec in pool_list:
                members = iv.subtract(pool_spec.intervals(version), [*held, *reserved, *layout.unassignable()])
                space.add_ranges(conn, subnet_id=subnet.id, family=version, pool_id=pool_id, intervals=members)

    async def delete_subnet(self, name: str, *, force: bool = False) -> dict[str, Any]:
        def run(conn: Connection) -> Any:
            subnet = self._subnet_by_name(conn, name, lock=True)
            rows = (conn.execute(records.allocation_query().where(allocations.c.subnet_id == subnet.id))).all()
            if rows and not force:
                raise InUse(f"subnet {name} has {len(rows)} live allocation(s); release them or delete with ?force=true")
            for row in rows:
                self._release_row(conn, row, subnet=subnet, reason="subnet deleted", give_back=False)
            conn.execute(sa.delete(subnets).where(subnets.c.id == subnet.id))
            log.info("subnet deleted name=%s released=%d", name, len(rows))
            return {"deleted": name, "released": len(rows)}

        return await self._write(run)

    # ----------------------------------------------------------------- pools

    async def create_pool(self, raw: object, *, origin: str = "api") -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise InvalidInput("expected a JSON object describing a pool")
        subnet_name = raw.get("subnet")
        if not isinstance(subnet_name, str):
            raise InvalidInput("required: the name of the subnet the pool belongs to", field="subnet")
        try:
            def run(conn: Connection) -> Any:
                subnet = self._subnet_by_name(conn, subnet_name, lock=True)
                spec = canonical_pool(raw, subnet=subnet.spec)
                for _, other in self._pools_of(conn, subnet):
                    if pools_overlap(spec, other):
                        raise AlreadyExists(f"pool {spec.name} overlaps pool {other.name} of subnet {subnet.name}")
                pool_id = (
                    conn.execute(
                        sa.insert(pools).values(name=spec.name, subnet_id=subnet.id, ips=list(spec.ips), origin=origin).returning(pools.c.id)
                    )
                ).scalar_one()
                self._rebuild_space(conn, subnet)
                log.info("pool created name=%s subnet=%s ips=%s", spec.name, subnet.name, ",".join(spec.ips))
                return self._pool_json(conn, pool_id)

            return await self._write(run)
        except sa.exc.IntegrityError as e:
            raise AlreadyExists(f"pool {raw.get('name')} already exists") from e

    def _pool_json(self, conn: Connection, pool_id: int) -> dict[str, Any]:
        row = (conn.execute(sa.select(pools).where(pools.c.id == pool_id))).first()
        if row is None:
            raise NotFound(f"pool #{pool_id} not found")
        subnet = self._subnet_by_id(conn, row.subnet_id)
        spec = self._pool_spec(row, subnet.spec)
        free: list[str] = []
        available = used = 0
        for version, _ in spec.members:
            ranges = space.ranges(conn, subnet_id=subnet.id, family=version, pool_id=pool_id)
            free += format_intervals(ranges, version)
            available += iv.size(ranges)
            used += records.count_held(conn, subnet_id=subnet.id, family=version, pool_id=pool_id)
        return {
            "name": row.name,
            "subnet": subnet.name,
            "ips": list(row.ips),
            "origin": row.origin,
            "createdAt": records.timestamp(row.created_at),
            "usage": {"total": pool_capacity(spec), "used": used, "available": available, "freeRanges": free},
        }

    async def list_pools(self) -> list[dict[str, Any]]:
        def run(conn: Connection) -> Any:
            ids = (conn.execute(sa.select(pools.c.id).order_by(pools.c.name))).scalars().all()
            return [self._pool_json(conn, pool_id) for pool_id in ids]

        return await self._read(run)

    async def get_pool(self, name: str) -> dict[str, Any]:
        def run(conn: Connection) -> Any:
            pool_id = (conn.execute(sa.select(pools.c.id).where(pools.c.name == name))).scalar()
            if pool_id is None:
                raise NotFound(f"pool {name} not found")
            return self._pool_json(conn, pool_id)

        return await self._read(run)

    async def delete_pool(self, name: str) -> dict[str, Any]:
        def run(conn: Connection) -> Any:
            row = (conn.execute(sa.select(pools).where(pools.c.name == name))).first()
            if row is None:
                raise NotFound(f"pool {name} not found")
            subnet = self._subnet_by_id(conn, row.subnet_id, lock=True)
            conn.execute(sa.delete(pools).where(pools.c.id == row.id))
            self._rebuild_space(conn, subnet)
            log.info("pool deleted name=%s subnet=%s", name, subnet.name)
            return {"deleted": name}

        return await self._write(run)

    async def replace_pool(self, name: str, raw: object, *, origin: str = "api") -> tuple[dict[str, Any], bool]:
        """Creates the pool or replaces its members in one transaction; returns it and whether it is new.

        Allocations of addresses that leave the pool keep them (they are no longer pool
        members), so a replace never takes an address from a running workload.
        """
        if not isinstance(raw, Mapping):
            raise InvalidInput("expected a JSON object describing a pool")
        if raw.get("name", name) != name:
            raise InvalidInput(f"the body names pool {raw.get('name')!r} but the path {name!r}", field="name")
        raw = {**raw, "name": name}
        subnet_name = raw.get("subnet")
        if not isinstance(subnet_name, str):
            raise InvalidInput("required: the name of the subnet the pool belongs to", field="subnet")

        def run(conn: Connection) -> tuple[dict[str, Any], bool]:
            subnet = self._subnet_by_name(conn, subnet_name, lock=True)
            spec = canonical_pool(raw, subnet=subnet.spec)
            existing = conn.execute(sa.select(pools).where(pools.c.name == name)).first()
            for pool_id, other in self._pools_of(conn, subnet):
                if (existing is None or pool_id != existing.id) and pools_overlap(spec, other):
                    raise AlreadyExists(f"pool {spec.name} overlaps pool {other.name} of subnet {subnet.name}")
            if existing is None:
                pool_id = conn.execute(
                    sa.insert(pools).values(name=name, subnet_id=subnet.id, ips=list(spec.ips), origin=origin).returning(pools.c.id)
                ).scalar_one()
            else:
                pool_id = existing.id
                old_subnet = self._subnet_by_id(conn, existing.subnet_id, lock=True) if existing.subnet_id != subnet.id else subnet
                conn.execute(sa.update(pools).where(pools.c.id == pool_id).values(subnet_id=subnet.id, ips=list(spec.ips), origin=origin))
                for row in conn.execute(records.allocation_query().where(allocations.c.pool_id == pool_id)).all():
                    if row.subnet_id != subnet.id or not all(
                        iv.contains(spec.intervals(family), address) for family, address in records.addresses_of(row)
                    ):
                        conn.execute(sa.update(allocations).where(allocations.c.id == row.id).values(pool_id=None))
                if old_subnet is not subnet:
                    self._rebuild_space(conn, old_subnet)
            self._rebuild_space(conn, subnet)
            log.info("pool %s name=%s subnet=%s ips=%s", "created" if existing is None else "replaced", name, subnet.name, ",".join(spec.ips))
            return self._pool_json(conn, pool_id), existing is None

        try:
            return await self._write(run)
        except sa.exc.IntegrityError as e:
            raise AlreadyExists(f"pool {name} was created concurrently; retry") from e

    # ----------------------------------------------------------------- reservations

    async def create_reservation(self, raw: object, *, origin: str = "api") -> dict[str, Any]:
        if not isinstance(raw, Mapping):
            raise InvalidInput("expected a JSON object describing a reservation")
        subnet_name = raw.get("subnet")
        if not isinstance(subnet_name, str):
            raise InvalidInput("required: the name of the subnet", field="subnet")
        def run(conn: Connection) -> Any:
            subnet = self._subnet_by_name(conn, subnet_name, lock=True)
            spec = canonical_reservation(raw, subnet=subnet.spec)
            text = ip_text(spec.address, spec.version)
            existing = records.reservation_at(conn, subnet_id=subnet.id, address=spec.address)
            if existing is not None:
                raise AlreadyExists(f"{text} in subnet {subnet.name} is already reserved (reservation {existing.id})")
            holder = records.holder_of(conn, subnet_id=subnet.id, family=spec.version, address=spec.address)
            if holder is not None:
                raise AddressConflict(f"{text} in subnet {subnet.name} is held by {self._holder_label(holder)}")
            space.claim(conn, subnet_id=subnet.id, family=spec.version, address=spec.address)
            reservation_id = (
                conn.execute(
                    sa.insert(reservations).values(
                        subnet_id=subnet.id, family=spec.version, address=spec.address, mac=spec.mac,
                        owner=spec.owner, note=spec.note, origin=origin,
                    ).returning(reservations.c.id)
                )
            ).scalar_one()
            log.info("reservation created subnet=%s address=%s owner=%s", subnet.name, text, spec.owner)
            row = (conn.execute(sa.select(reservations).where(reservations.c.id == reservation_id))).one()
            return records.reservation_json(row, subnet.name)

        return await self._write(run)

    async def list_reservations(self) -> list[dict[str, Any]]:
        def run(conn: Connection) -> Any:
            result = conn.execute(
                sa.select(reservations, subnets.c.name.label("subnet_name"))
                .join(subnets, reservations.c.subnet_id == subnets.c.id)
                .order_by(reservations.c.id)
            )
            return [records.reservation_json(row, row.subnet_name) for row in result]

        return await self._read(run)

    async def get_reservation(self, reservation_id: int) -> dict[str, Any]:
        def run(conn: Connection) -> Any:
            row = (
                conn.execute(
                    sa.select(reservations, subnets.c.name.label("subnet_name"))
                    .join(subnets, reservations.c.subnet_id == subnets.c.id)
                    .where(reservations.c.id == reservation_id)
                )
            ).first()
            if row is None:
                raise NotFound(f"reservation {reservation_id} not found")
            return records.reservation_json(row, row.subnet_name)

        return await self._read(run)

    async def delete_reservation(self, reservation_id: int) -> dict[str, Any]:
        def run(conn: Connection) -> Any:
            row = (conn.execute(sa.select(reservations).where(reservations.c.id == reservation_id))).first()
            if row is None:
                raise NotFound(f"reservation {reservation_id} not found")
            subnet = self._subnet_by_id(conn, row.subnet_id, lock=True)
            if conn.execute(sa.delete(reservations).where(reservations.c.id == reservation_id)).rowcount == 0:
                # Deleted by a concurrent request while this one waited for the subnet lock:
                # its address is back already, and must not be listed as free twice.
                raise NotFound(f"reservation {reservation_id} not found")
            address = int(row.address)
            holder = records.holder_of(conn, subnet_id=subnet.id, family=row.family, address=address)
            if holder is None:
                self._return_address(conn, subnet, row.family, address)
            log.info("reservation deleted subnet=%s address=%s", subnet.name, ip_text(address, row.family))
            return {"deleted": reservation_id}

        return await self._write(run)

    def _return_address(self, conn: Connection, subnet: _Subnet, family: int, address: int) -> None:
        """Puts a no-longer-held address back where dynamic or pool allocation finds it."""
        layout = subnet.spec.family(family)
        if layout is None:
            return
        for pool_id, pool_spec in self._pools_of(conn, subnet):
            if iv.contains(pool_spec.intervals(family), address):
                space.give_back(conn, subnet_id=subnet.id, family=family, address=address, pool_id=pool_id)
                return
        if iv.contains(layout.dynamic_space(), address):
            if records.reservation_at(conn, subnet_id=subnet.id, address=address) is None:
                space.give_back(conn, subnet_id=subnet.id, family=family, address=address, pool_id=None)

    # ----------------------------------------------------------------- allocation

    async def allocate(self, request: AddRequest) -> dict[str, Any]:
        """Returns the allocation of the request's attachment, creating it if needed."""
        for attempt in range(CONFLICT_RETRIES):
            try:
                body, created = await self._write(lambda conn: self._allocate_in(conn, request))
                if created:
                    self._notify("allocated", allocation=body, request=request)
                    log.info(
                        "allocated id=%s owner=%s addresses=%s subnet=%s container=%s",
                        body["id"], request.owner.label, ",".join(a["address"] for a in body["addresses"]),
                        body["subnet"], request.container_id, extra=allocation_fields("allocated", body),
                    )
                return body
            except Exhausted as e:
                self._notify("exhausted", **e.details)
                raise
            except sa.exc.IntegrityError as e:
                # Another daemon inserted the same attachment or took the address between our
                # read and insert: the next attempt sees its row and answers accordingly.
                log.debug("allocation race (attempt %d): %s", attempt + 1, e.orig)
                continue
        raise Unavailable("allocation kept colliding with concurrent requests; retry")

    def _allocate_in(self, conn: Connection, request: AddRequest) -> tuple[dict[str, Any], bool]:
        owner = request.owner
        existing = conn.execute(records.ALLOCATION_BY_OWNER, records.owner_params(owner)).first()
        if existing is not None:
            return self._reuse(conn, existing, request), False

        candidates = self._candidate_subnets(conn, request)
        mac = canonical_mac(request.mac, field="mac") if request.mac else None
        if mac is not None:
            self._check_mac(conn, mac, network_key=owner.network_key)

        if request.pool_name is not None:
            return self._allocate_from_pool(conn, request, mac=mac), True
        if request.pool_entries:
            return self._allocate_from_entries(conn, request, candidates, mac=mac), True
        if request.static_ips:
            subnet = self._subnet_for_static(candidates, request.static_ips, field=request.field_prefix)
            subnet = self._subnet_by_id(conn, subnet.id, lock=True)
            wanted = parse_static_request(subnet.spec, request.static_ips, field=request.field_prefix)
            return self._insert(conn, subnet, request, self._complete_static(conn, subnet, wanted, request), mac=mac), True

        tried = []
        for subnet in candidates:
            if self._row_locks:
                subnet = self._subnet_by_id(conn, subnet.id, lock=True)
            picks = self._take_dynamic(conn, subnet)
            if picks is not None:
                return self._insert(conn, subnet, request, picks, mac=mac, taken=True), True
            tried.append(subnet.name)
        raise Exhausted(f"no free address in subnet {', '.join(tried)} (network {owner.network_key})", subnets=tried)

    def _take_dynamic(self, conn: Connection, subnet: _Subnet) -> dict[int, int] | None:
        """Takes one dynamic address per family of the subnet, or none at all."""
        families = subnet.spec.families
        if len(families) == 1:
            address = space.take_dynamic(conn, subnet_id=subnet.id, family=families[0].version)
            return None if address is None else {families[0].version: address}
        # Dual stack: a savepoint gives back the first family's address if the second is gone.
        savepoint = conn.begin_nested()
        picks: dict[int, int] = {}
        for layout in families:
            address = space.take_dynamic(conn, subnet_id=subnet.id, family=layout.version)
            if address is None:
                savepoint.rollback()
                return None
            picks[layout.version] = address
        savepoint.commit()
        return picks

    def _complete_static(self, conn: Connection, subnet: _Subnet, wanted: dict[int, int], request: AddRequest) -> dict[int, int]:
        """Fills families the static request left out with dynamic picks (dual stack is all or nothing)."""
        picks = dict(wanted)
        for layout in subnet.spec.families:
            if layout.version in picks:
                continue
            address = space.peek_dynamic(conn, subnet_id=subnet.id, family=layout.version)
            if address is None:
                raise Exhausted(f"no free IPv{layout.version} address in subnet {subnet.name} to pair with the static one")
            picks[layout.version] = address
        return picks

    def _reuse(self, conn: Connection, row: Row[Any], request: AddRequest) -> dict[str, Any]:
        """An ADD for an attachment that already holds addresses: same answer, fresh sandbox facts."""
        subnet = self._subnet_by_id(conn, row.subnet_id)
        if request.static_ips:
            wanted = parse_static_request(subnet.spec, request.static_ips, field=request.field_prefix)
            held = dict(records.addresses_of(row))
            for family, address in wanted.items():
                if held.get(family) != address:
                    raise AddressConflict(
                        f"{request.owner.label} already holds {ip_text(held[family], family) if family in held else 'another address'} "
                        f"in subnet {subnet.name}; release it before asking for {ip_text(address, family)}"
                    )
        changes = {}
        for column, value in (("container_id", request.container_id), ("pod_uid", request.pod_uid), ("netns", request.netns), ("node", request.node or self.node)):
            if value is not None and getattr(row, column) != value:
                changes[column] = value
        if request.hold != row.hold and request.hold is not None:
            changes["hold"] = request.hold
        if changes:
            conn.execute(sa.update(allocations).where(allocations.c.id == row.id).values(**changes))
            row = (conn.execute(records.allocation_query().where(allocations.c.id == row.id))).one()
        return records.allocation_json(row, subnet.spec)

    def _candidate_subnets(self, conn: Connection, request: AddRequest) -> list[_Subnet]:
        network = request.network
        if request.subnet_name is not None:
            subnet = self._subnet_by_name(conn, request.subnet_name)
            if network.inline_subnet is None and subnet.spec.provider not in (None, network.network_key):
                raise InvalidInput(
                    f"subnet {subnet.name} serves provider {subnet.spec.provider}, not {network.network_key}",
                    field="logical_switch",
                )
            return [subnet]
        if network.inline_subnet is not None:
            return [self._ensure_inline(conn, network.inline_subnet)]
        rows = conn.execute(_SUBNETS_OF_PROVIDER, {"provider": network.network_key}).all()
        if not rows:
            raise NotFound(
                f"no subnet serves provider {network.network_key}; create one with provider {network.network_key!r}"
            )
        return [self._subnet(row) for row in rows]

    def _ensure_inline(self, conn: Connection, spec: SubnetSpec) -> _Subnet:
        """Returns the daemon-owned subnet of an inline NAD range, creating it on first use."""
        row = (conn.execute(sa.select(subnets).where(subnets.c.name == spec.name))).first()
        if row is None:
            self._check_overlap(conn, spec, exclude_id=None)
            subnet_id = (
                conn.execute(
                    sa.insert(subnets).values(name=spec.name, provider=spec.provider, priority=spec.priority, spec=spec.to_json(), origin="inline").returning(subnets.c.id)
                )
            ).scalar_one()
            for layout in spec.families:
                space.add_ranges(conn, subnet_id=subnet_id, family=layout.version, pool_id=None, intervals=layout.dynamic_space())
            log.info("inline subnet created name=%s cidr=%s", spec.name, spec.cidr_block)
            return self._subnet_by_id(conn, subnet_id)
        existing = self._subnet(row)
        if existing.spec.to_json() != spec.to_json():
            raise AlreadyExists(
                f"network {spec.name} is already defined with range {existing.spec.cidr_block} "
                f"(excludes {', '.join(existing.spec.exclude_ips) or 'none'}), this config says {spec.cidr_block} "
                f"(excludes {', '.join(spec.exclude_ips) or 'none'}); give one of them its own network_name"
            )
        return existing

    def _subnet_for_static(self, candidates: list[_Subnet], requested: Iterable[str], *, field: str) -> _Subnet:
        addresses = []
        for index, text in enumerate(requested):
            if not isinstance(text, str):
                raise InvalidInput(f"expected an address, got {text!r}", field=f"{field}[{index}]")
            addresses.append(parse_ip(text.strip().partition("/")[0], field=f"{field}[{index}]"))
        for subnet in candidates:
            if all(
                (layout := subnet.spec.family(address.version)) is not None and address in layout.network
                for address in addresses
            ):
                return subnet
        names = ", ".join(f"{s.name} ({s.spec.cidr_block})" for s in candidates)
        raise InvalidInput(f"{', '.join(map(str, addresses))} is outside subnet {names}", field=field)

    def _insert(self, conn: Connection, subnet: _Subnet, request: AddRequest, picks: dict[int, int], *,
        mac: str | None, pool_id: int | None = None, taken: bool = False,
    ) -> dict[str, Any]:
        """Claims the picked addresses and inserts the allocation with its audit rows.

        ``taken`` says the picks were already taken out of the free space (so nobody holds
        them and none is reserved), which spares three statements per address on the hot path.
        """
        owner = request.owner
        for family, address in picks.items():
            if taken:
                break
            holder = records.holder_of(conn, subnet_id=subnet.id, family=family, address=address)
            if holder is not None:
                raise AddressConflict(f"{ip_text(address, family)} in subnet {subnet.name} is held by {self._holder_label(holder)}")
            reservation = records.reservation_at(conn, subnet_id=subnet.id, address=address)
            if reservation is not None and not reservation_admits(reservation.owner, owner):
                raise AddressConflict(
                    f"{ip_text(address, family)} in subnet {subnet.name} is reserved (reservation {reservation.id}"
                    f"{', for ' + reservation.owner if reservation.owner else ''}{', ' + reservation.note if reservation.note else ''})"
                )
            if reservation is not None and mac is None and reservation.mac:
                mac = reservation.mac
            space.claim(conn, subnet_id=subnet.id, family=family, address=address)
        values = {
            "subnet_id": subnet.id, "network_key": owner.network_key, "namespace": owner.namespace, "pod": owner.pod,
            "interface": owner.interface, "address_v4": picks.get(4), "address_v6": picks.get(6), "mac": mac,
            "pool_id": pool_id, "container_id": request.container_id, "pod_uid": request.pod_uid,
            "netns": request.netns, "node": request.node or self.node, "hold": request.hold,
            "created_at": datetime.now(timezone.utc),
        }
        # inserted_primary_key: SQLite's lastrowid, PostgreSQL's RETURNING; no result set to read.
        inserted = conn.execute(_INSERT_ALLOCATION, values).inserted_primary_key
        assert inserted is not None
        allocation_id = inserted[0]
        conn.execute(
            _INSERT_EVENT,
            [
                {
                    "action": "allocate", "subnet": subnet.name, "family": family, "address": address,
                    "allocation_id": allocation_id, "network_key": owner.network_key, "namespace": owner.namespace,
                    "pod": owner.pod, "interface": owner.interface, "container_id": request.container_id,
                }
                for family, address in picks.items()
            ],
        )
        pool_name = None
        if pool_id is not None:
            pool_name = conn.execute(sa.select(pools.c.name).where(pools.c.id == pool_id)).scalar()
        return records.allocation_json(
            SimpleNamespace(id=allocation_id, subnet_name=subnet.name, pool_name=pool_name, **values), subnet.spec
        )

    def _check_mac(self, conn: Connection, mac: str, *, network_key: str) -> None:
        holder = (
            conn.execute(records.allocation_query().where(allocations.c.mac == mac, allocations.c.network_key == network_key))
        ).first()
        if holder is not None:
            raise AddressConflict(f"MAC {mac} is already used by {self._holder_label(holder)} in network {network_key}")

    def _allocate_from_pool(self, conn: Connection, request: AddRequest, *, mac: str | None) -> dict[str, Any]:
        row = (conn.execute(sa.select(pools).where(pools.c.name == request.pool_name))).first()
        if row is None:
            raise NotFound(f"pool {request.pool_name} not found")
        subnet = self._subnet_by_id(conn, row.subnet_id, lock=True)
        spec = self._pool_spec(row, subnet.spec)
        picks: dict[int, int] = {}
        if request.ordinal is not None:
            # A StatefulSet pod takes the member at its ordinal, in the order the pool lists them.
            for version, members in spec.members:
                address = iv.nth(members, request.ordinal)
                if address is None:
                    raise Exhausted(f"pool {spec.name} has {iv.size(members)} IPv{version} address(es); no member for ordinal {request.ordinal}")
                picks[version] = address
        else:
            for version, _ in spec.members:
                address = space.peek_pool(conn, pool_id=row.id, family=version)
                if address is None:
                    raise Exhausted(f"pool {spec.name} is exhausted (subnet {subnet.name})", subnets=[subnet.name], pool=spec.name)
                picks[version] = address
        return self._insert(conn, subnet, request, picks, mac=mac, pool_id=row.id)

    def _allocate_from_entries(self, conn: Connection, request: AddRequest, candidates: list[_Subnet], *, mac: str | None
    ) -> dict[str, Any]:
        """Kube-OVN ``ip_pool`` as an address list: the ordinal's entry, or the first entry nobody holds."""
        entries = list(request.pool_entries)
        if request.ordinal is not None:
            if request.ordinal >= len(entries):
                raise Exhausted(f"ip_pool lists {len(entries)} entries; none for ordinal {request.ordinal}")
            entries = [entries[request.ordinal]]
        for entry in entries:
            subnet = self._subnet_for_static(candidates, entry, field="ip_pool")
            subnet = self._subnet_by_id(conn, subnet.id, lock=True)
            wanted = parse_static_request(subnet.spec, entry, field="ip_pool")
            if request.ordinal is None:
                taken = False
                for family, address in wanted.items():
                    if records.holder_of(conn, subnet_id=subnet.id, family=family, address=address) is not None:
                        taken = True
                if taken:
                    continue
            return self._insert(conn, subnet, request, self._complete_static(conn, subnet, wanted, request), mac=mac)
        raise Exhausted(f"every address of ip_pool {', '.join(','.join(e) for e in request.pool_entries)} is held")

    @staticmethod
    def _holder_label(row: Row[Any]) -> str:
        pod = f"{row.namespace}/{row.pod}" if row.namespace else row.pod
        return f"{pod} {row.interface} (network {row.network_key}, allocation {row.id})"

    # ----------------------------------------------------------------- release

    async def release(self, allocation_id: int, *, reason: str = "api") -> dict[str, Any]:
        def run(conn: Connection) -> Any:
            row = conn.execute(records.ALLOCATION_BY_ID, {"allocation_id": allocation_id}).first()
            if row is None:
                raise NotFound(f"allocation {allocation_id} not found")
            return self._release_row(conn, row, reason=reason)

        body: dict[str, Any] = await self._write(run)
        self._log_release(body, reason)
        return body

    async def release_owner(self, owner: Owner, *, reason: str, container_id: str | None = None) -> list[dict[str, Any]]:
        """Releases the attachment's allocation, if any (DEL is idempotent).

        With ``container_id`` only an allocation made for that container is released, so a
        late DEL of an old sandbox cannot take the address of its replacement.
        """
        def run(conn: Connection) -> Any:
            row = conn.execute(records.ALLOCATION_BY_OWNER, records.owner_params(owner)).first()
            if row is None or (container_id is not None and row.container_id not in (None, container_id)):
                return None
            try:
                return self._release_row(conn, row, reason=reason)
            except NotFound:
                return None  # released concurrently: DEL is idempotent

        body = await self._write(run)
        if body is None:
            return []
        self._log_release(body, reason)
        return [body]

    async def release_ids(self, ids: Iterable[int], *, reason: str) -> list[dict[str, Any]]:
        released_bodies = []
        for allocation_id in ids:
            try:
                released_bodies.append(await self.release(allocation_id, reason=reason))
            except NotFound:
                continue
        return released_bodies

    def _log_release(self, body: dict[str, Any], reason: str) -> None:
        owner = body["owner"]
        log.info(
            "released id=%s owner=%s/%s %s (%s) addresses=%s subnet=%s reason=%s",
            body["id"], owner["namespace"], owner["pod"], owner["interface"], body["networkKey"],
            ",".join(a["address"] for a in body["addresses"]), body["subnet"], reason,
            extra=allocation_fields("released", body, reason=reason),
        )
        self._notify("released", allocation=body, reason=reason)

    def _release_row(self, conn: Connection, row: Row[Any], *, reason: str, subnet: _Subnet | None = None, give_back: bool = True
    ) -> dict[str, Any]:
        subnet = subnet or self._subnet_by_id(conn, row.subnet_id, lock=True)
        body = records.allocation_json(row, subnet.spec)
        if conn.execute(_DELETE_ALLOCATION, {"allocation_id": row.id}).rowcount == 0:
            # ``row`` was read before the subnet lock: a concurrent release (another daemon's
            # DEL, CNI GC, the API) committed meanwhile. Giving the addresses back again would
            # list them as free twice (or, once retaken, free while held).
            raise NotFound(f"allocation {row.id} was released meanwhile")
        for family, address in records.addresses_of(row):
            self._event(conn, action="release", subnet=subnet, family=family, address=address, allocation_id=row.id, row=row, reason=reason)
            if give_back:
                self._return_address(conn, subnet, family, address)
        return body

    # ----------------------------------------------------------------- queries

    async def list_allocations(
        self, *, subnet: str | None = None, namespace: str | None = None, pod: str | None = None,
        provider: str | None = None, node: str | None = None, limit: int | None = None,
    ) -> list[dict[str, Any]]:
        def run(conn: Connection) -> Any:
            statement = records.allocation_query().order_by(allocations.c.id)
            if subnet is not None:
                statement = statement.where(subnets.c.name == subnet)
            if namespace is not None:
                statement = statement.where(allocations.c.namespace == namespace)
            if pod is not None:
                statement = statement.where(allocations.c.pod == pod)
            if provider is not None:
                statement = statement.where(allocations.c.network_key == provider)
            if node is not None:
                statement = statement.where(allocations.c.node == node)
            if limit is not None:
                statement = statement.limit(limit)
            rows = (conn.execute(statement)).all()
            specs: dict[int, SubnetSpec] = {}
            bodies = []
            for row in rows:
                if row.subnet_id not in specs:
                    specs[row.subnet_id] = (self._subnet_by_id(conn, row.subnet_id)).spec
                bodies.append(records.allocation_json(row, specs[row.subnet_id]))
            return bodies

        return await self._read(run)

    async def get_allocation(self, allocation_id: int) -> dict[str, Any]:
        def run(conn: Connection) -> Any:
            row = conn.execute(records.ALLOCATION_BY_ID, {"allocation_id": allocation_id}).first()
            if row is None:
                raise NotFound(f"allocation {allocation_id} not found")
            return records.allocation_json(row, (self._subnet_by_id(conn, row.subnet_id)).spec)

        return await self._read(run)

    async def find_owner(self, owner: Owner) -> dict[str, Any] | None:
        def run(conn: Connection) -> Any:
            row = (
                conn.execute(
                    records.allocation_query().where(
                        allocations.c.network_key == owner.network_key, allocations.c.namespace == owner.namespace,
                        allocations.c.pod == owner.pod, allocations.c.interface == owner.interface,
                    )
                )
            ).first()
            if row is None:
                return None
            return records.allocation_json(row, (self._subnet_by_id(conn, row.subnet_id)).spec)

        return await self._read(run)

    async def ip_info(self, text: str) -> dict[str, Any]:
        address = parse_ip(text, field="address")
        value, family = int(address), address.version
        column = allocations.c.address_v4 if family == 4 else allocations.c.address_v6
        def run(conn: Connection) -> Any:
            rows = (conn.execute(records.allocation_query().where(column == value))).all()
            holders = [records.allocation_json(row, (self._subnet_by_id(conn, row.subnet_id)).spec) for row in rows]
            events = (
                conn.execute(
                    sa.select(address_events).where(address_events.c.address == value, address_events.c.family == family).order_by(address_events.c.id)
                )
            ).all()
            return holders, events

        holders, events = await self._read(run)
        history: list[dict[str, Any]] = []
        open_spans: dict[tuple[str, int | None], dict[str, Any]] = {}
        for event in events:
            key = (event.subnet, event.allocation_id)
            if event.action == "allocate":
                span = {
                    "subnet": event.subnet, "networkKey": event.network_key, "namespace": event.namespace,
                    "pod": event.pod, "interface": event.interface, "containerId": event.container_id,
                    "allocationId": event.allocation_id, "from": records.timestamp(event.at), "to": None, "releaseReason": None,
                }
                open_spans[key] = span
                history.append(span)
            elif key in open_spans:
                span = open_spans.pop(key)
                span["to"] = records.timestamp(event.at)
                span["releaseReason"] = event.reason
        return {"address": str(address), "holders": holders, "history": history}

    async def allocations_for_network(self, network_key: str) -> list[Row[Any]]:
        def run(conn: Connection) -> Any:
            return list((conn.execute(records.allocation_query().where(allocations.c.network_key == network_key))).all())

        return await self._read(run)


def owner_from(raw: object, *, network_key: str, field: str = "owner") -> Owner:
    """Returns the owner of a REST allocation request."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected an object {namespace, pod, interface}", field=field)
    unknown = sorted(set(raw) - {"namespace", "pod", "interface"})
    if unknown:
        raise InvalidInput("unknown field", field=f"{field}.{unknown[0]}")
    values = {}
    for key, required, limit in (("namespace", False, 253), ("pod", True, 253), ("interface", False, 64)):
        value = raw.get(key)
        if value is None and not required:
            value = "" if key == "namespace" else "eth0"
        if not isinstance(value, str) or (required and not value) or len(value) > limit:
            raise InvalidInput(f"expected a string of at most {limit} characters", field=f"{field}.{key}")
        values[key] = value
    return Owner(network_key=network_key, namespace=values["namespace"], pod=values["pod"], interface=values["interface"])


def with_network(request: AddRequest, network: NetworkRequest) -> AddRequest:
    return replace(request, network=network, owner=replace(request.owner, network_key=network.network_key))


