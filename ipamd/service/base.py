"""What every part of the service shares: running transaction bodies, parsing cached specs,
looking subnets up, audit rows, giving addresses back and releasing allocations."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, TypeVar

from ipamd.core import intervals as iv
from ipamd.core import model
from ipamd.core.addresses import ip_text
from ipamd.core.allocation import DEFAULT_CLUSTER, Owner
from ipamd.core.placement import parse_placement
from ipamd.core.pool import PoolSpec, canonical_pool
from ipamd.core.subnet import SubnetSpec, canonical_subnet, shared_families
from ipamd.errors import AlreadyExists, DatabaseFault, NotFound, Unavailable
from ipamd.logs import allocation_fields
from ipamd.store import catalog, faults, history, records, space
from ipamd.store.database import (
    Command,
    Connection,
    Database,
    DatabaseOrEngine,
    as_database,
    current_revision,
    guarded,
)
from ipamd.store.engine import head_revision
from ipamd.store.procedures import AllocationResult
from ipamd.store.records import AllocationRow, Record

log = logging.getLogger("ipamd.service")

T = TypeVar("T")

TRANSACTION_TIMEOUT_SECONDS = 10.0
# While writes fail, how often a write is tried to see whether they work again.
WRITE_CHECK_SECONDS = 1.0
# The longest a readiness answer waits for the database.
READY_SECONDS = 3.0
CONFLICT_RETRIES = 5


class AllocationChanged(NotFound):
    """The allocation row was deleted or changed after it was read (PostgreSQL, where
    readers do not lock): the caller reads it again and decides afresh."""


@dataclass
class _Subnet:
    id: int
    name: str
    spec: SubnetSpec
    origin: str
    revision: int
    created_at: datetime | None = None
    pools: list[tuple[int, PoolSpec]] = field(default_factory=list)
    # Inline subnets sharing this one's address space, with the families shared (see
    # ipamd.core.nad); filled by ServiceBase._locked.
    peers: list[tuple[_Subnet, tuple[int, ...]]] | None = None


@lru_cache(maxsize=1024)
def _gateway_text(gateway: int, family: int) -> str:
    """A subnet's gateway as text: the same one in every allocation of the subnet."""
    return ip_text(gateway, family)


def _held_addresses(spec: SubnetSpec, addresses: Iterable[tuple[int, int]]) -> tuple[model.HeldAddress, ...]:
    """The ``(family, address)`` pairs of an allocation in ``spec``'s subnet, with its prefix and gateway."""
    held = []
    for family, address in addresses:
        layout = spec.family(family)
        assert layout is not None, "an allocation's family always exists in its subnet"
        gateway = None if layout.gateway is None else _gateway_text(layout.gateway, family)
        held.append(model.HeldAddress(family, ip_text(address, family), layout.prefixlen, gateway))
    return tuple(held)


def _allocation(row: AllocationRow, spec: SubnetSpec, *, owner: Owner | None = None) -> model.Allocation:
    """The allocation ``row`` of the subnet whose spec is ``spec``; ``owner``: the row's,
    when the caller has it (an ADD's request names the attachment it found), else read off the row."""
    return model.Allocation(
        id=row.id,
        subnet=row.subnet_name,
        cluster=row.cluster,
        owner=Owner(row.network_key, row.namespace, row.pod, row.interface) if owner is None else owner,
        container_id=row.container_id,
        pod_uid=row.pod_uid,
        addresses=_held_addresses(spec, records.addresses_of(row)),
        mac=row.mac,
        pool=row.pool_name,
        node=row.node,
        hold=row.hold,
        origin=row.origin,
        routes=spec.routes,
        dns=spec.dns,
        created_at=row.created_at,
    )


@dataclass
class _CachedPool:
    stored: tuple[str, Sequence[str]]
    """(name, ips) as stored: what the members are made of, with the subnet's spec."""
    subnet: SubnetSpec
    members: PoolSpec
    """The pool without placement rules."""
    with_rules: tuple[Mapping[str, Any], PoolSpec] | None = None
    """(stored rules, the pool with them) of the last row read with rules."""


class ServiceBase:
    """The database plumbing and lookups every part of the service shares."""

    def __init__(
        self,
        database: DatabaseOrEngine,
        *,
        node: str | None = None,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        self.database: Database = as_database(database)
        self.node = node
        # The cluster this daemon serves: part of every attachment identity it looks up or
        # creates (subnets, pools and reservations are shared by every cluster).
        self.cluster = cluster
        # Subnet rows are locked (FOR UPDATE) on PostgreSQL only: SQLite has one writer anyway.
        self._row_locks = self.database.dialect != "sqlite"
        # PostgreSQL releases through a server-side function (migration 0009).
        self._release_by_call = self.database.dialect == "postgresql"
        self._clock_warned = False
        # Parsed specs, checked against the stored form on every hit: SQLite reuses the id of
        # a deleted row, so (id, revision) alone could hand a new subnet its predecessor's spec.
        self._spec_cache: dict[tuple[int, int], tuple[object, SubnetSpec]] = {}
        self._pool_cache: dict[int, _CachedPool] = {}
        self.listeners: list[Callable[[model.Event], None]] = []
        # Faults are logged when they start, change and end, not once per refused request.
        self.health = faults.Health()
        self._writes_checked_at = 0.0
        # Why nothing may be allocated yet: set while the daemon's cluster waits to be
        # registered (ipamd.service.clusters), which is what refuses a second cluster on SQLite.
        self.unregistered: str | None = None

    async def _write(self, body: Callable[[Connection], T]) -> T:
        """Returns ``body`` run in a write transaction; database failures become DatabaseFault."""
        return await self._run(lambda: self.database.write(body), "writes")

    async def read(self, body: Callable[[Connection], T]) -> T:
        """Returns ``body`` run in a read transaction; database failures become DatabaseFault."""
        return await self._run(lambda: self.database.read(body), "reads")

    _read = read

    async def _call(self, command: Command, params: dict[str, object]) -> list[Any]:
        """Returns the rows of one statement run as a transaction by itself (ipamd.store.procedures)."""
        return await self._run(lambda: self.database.call(command, params), "writes")

    async def _run(self, operation: Callable[[], Awaitable[T]], channel: str, *, counted: bool = True) -> T:
        return await guarded(
            self.database, self.health, operation, channel, timeout=TRANSACTION_TIMEOUT_SECONDS, counted=counted
        )

    async def close(self) -> None:
        await self.database.dispose()

    async def ready(self) -> tuple[bool, str]:
        """Returns whether allocations can be served: the database answers, takes writes and
        carries the newest schema, and this daemon's cluster is registered in it; and why not."""
        failing = await self.check_writes()
        if failing is not None:
            return False, f"database writes fail: {failing.message}"
        ready, reason = await self.schema_ready()
        if ready and self.unregistered is not None:
            return False, self.unregistered
        return ready, reason

    async def schema_ready(self) -> tuple[bool, str]:
        """Returns whether the database answers and carries the newest schema, and why not."""
        try:
            revision = await asyncio.wait_for(self.read(current_revision), READY_SECONDS)
        except TimeoutError:
            return False, f"database {self.database.label} did not answer within {READY_SECONDS:g} s"
        except Unavailable as e:
            return False, f"database reads fail: {e.message}"
        if revision != head_revision():
            return False, f"database schema at {revision}, expected {head_revision()}: run ipamd db upgrade"
        return True, "ready"

    async def check_writes(self) -> DatabaseFault | None:
        """Returns the fault writes fail with now, or None.

        While they fail, a small write (ipamd.store.records.check_writes), at most once per
        WRITE_CHECK_SECONDS, finds out whether they work again: readiness recovers by itself
        when the disk has space again, even if no request tries.
        """
        moved = self.database.check_file()
        if moved is not None:
            self.health.failed("writes", moved, counted=False)
            return moved
        failing = self.health.current("writes")
        if failing is None or time.monotonic() - self._writes_checked_at < WRITE_CHECK_SECONDS:
            return failing
        if failing.fault == faults.DISK_FULL.name:
            # A small write may fit where an allocation does not: wait for real room.
            short = self.database.check_space()
            if short is not None:
                return failing
        self._writes_checked_at = time.monotonic()
        node = self.node or ""
        try:
            # Bounded like the read below: readiness answers within seconds, hung database or not.
            await asyncio.wait_for(
                self._run(
                    lambda: self.database.write(lambda conn: records.check_writes(conn, node=node)),
                    "writes",
                    counted=False,
                ),
                READY_SECONDS,
            )
        except DatabaseFault as e:
            return e
        except TimeoutError:
            return failing
        return None

    def _spec(self, subnet_id: int, revision: int, stored: object, *, origin: str) -> SubnetSpec:
        """Returns the parsed spec of a subnet (its row's id, revision, spec and origin), cached."""
        key = (subnet_id, revision)
        cached = self._spec_cache.get(key)
        if cached is not None and cached[0] == stored:
            return cached[1]
        spec = canonical_subnet(stored, inline=origin == "inline")
        self._spec_cache[key] = (stored, spec)
        return spec

    def _result_spec(self, row: AllocationResult | Record) -> SubnetSpec:
        """Returns the spec of the subnet an ipamd.store.procedures row names (subnet_* columns)."""
        return self._spec(row.subnet_id, row.subnet_revision, row.subnet_spec, origin=row.subnet_origin)

    def _pool_spec(
        self, subnet: SubnetSpec, *, pool_id: int, name: str, ips: Sequence[str], rules: Mapping[str, Any] | None
    ) -> PoolSpec:
        """Returns the parsed spec of a pool of ``subnet`` (its row's id, name, ips and rules), cached.

        The members are cached on what they are made of (name, ips, the subnet's spec) and
        the placement rules apart, on their stored form: a release reads a pool's members
        without its rules (ipamd_pools_of), and must not evict what allocations reuse."""
        cached = self._pool_cache.get(pool_id)
        if cached is None or cached.stored != (name, ips) or not (cached.subnet is subnet or cached.subnet == subnet):
            members = canonical_pool({"name": name, "subnet": subnet.name, "ips": ips}, subnet=subnet)
            cached = self._pool_cache[pool_id] = _CachedPool((name, ips), subnet, members)
        if not rules:
            return cached.members
        if cached.with_rules is None or cached.with_rules[0] != rules:
            cached.with_rules = (rules, replace(cached.members, placement=parse_placement(rules)))
        return cached.with_rules[1]

    def _subnet_by_name(self, conn: Connection, name: str, *, lock: bool = False) -> _Subnet:
        row = catalog.subnet_by_name(conn, name, lock=lock and self._row_locks)
        if row is None:
            raise NotFound(f"subnet {name} not found")
        return self._subnet(row)

    def _subnet_by_id(self, conn: Connection, subnet_id: int, *, lock: bool = False) -> _Subnet:
        row = catalog.subnet_by_id(conn, subnet_id, lock=lock and self._row_locks)
        if row is None:
            raise NotFound(f"subnet #{subnet_id} not found")
        return self._subnet(row)

    def _subnet(self, row: Record) -> _Subnet:
        spec = self._spec(row.id, row.revision, row.spec, origin=row.origin)
        return _Subnet(row.id, row.name, spec, row.origin, row.revision, row.created_at)

    def _pools_of(self, conn: Connection, subnet: _Subnet) -> list[tuple[int, PoolSpec]]:
        return [
            (row.id, self._pool_spec(subnet.spec, pool_id=row.id, name=row.name, ips=row.ips, rules=row.rules))
            for row in catalog.pools_of_subnet(conn, subnet.id)
        ]

    def _allocations(self, conn: Connection, rows: Iterable[Record]) -> list[model.Allocation]:
        """The allocations ``rows``, each subnet's spec read once."""
        specs: dict[int, SubnetSpec] = {}
        allocations = []
        for row in rows:
            spec = specs.get(row.subnet_id)
            if spec is None:
                spec = specs[row.subnet_id] = self._subnet_by_id(conn, row.subnet_id).spec
            allocations.append(_allocation(row, spec))
        return allocations

    def _event(
        self,
        conn: Connection,
        *,
        action: str,
        subnet: _Subnet,
        family: int,
        address: int,
        allocation_id: int | None,
        row: AllocationRow,
        reason: str | None = None,
    ) -> None:
        """Writes one audit row; ``row`` is the allocation row the address belonged to."""
        history.record_event(
            conn,
            action=action,
            subnet=subnet.name,
            family=family,
            address=address,
            allocation_id=allocation_id,
            holder=row,
            reason=reason,
        )

    def _notify(self, event: model.Event) -> None:
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - observers never break an allocation
                log.exception("listener failed on %s", type(event).__name__)

    def _check_overlap(self, conn: Connection, spec: SubnetSpec, *, exclude_id: int | None) -> None:
        """Rejects a CIDR overlapping another subnet of the same provider (one L2 domain)."""
        if self._row_locks:
            # Nothing else serialises two daemons creating subnets of one provider at once:
            # both would pass this check and both insert. The lock lasts until commit; the
            # second one then sees the first's row (READ COMMITTED reads per statement).
            catalog.lock_group(conn, f"ipamd subnets of provider {spec.provider}")
        for row in catalog.subnets_of_provider(conn, spec.provider):
            # A row of the same name is a name clash, not an overlap: the insert's unique
            # constraint reports it, and an inline subnet created meanwhile by another daemon
            # (seen once the lock above is ours) is then found by the retried ADD.
            if row.id == exclude_id or row.name == spec.name:
                continue
            other = self._subnet(row).spec
            for layout in spec.families:
                theirs = other.family(layout.version)
                if theirs is not None and (layout.network in theirs.network or theirs.network in layout.network):
                    raise AlreadyExists(
                        f"{layout.network} overlaps {theirs.network} of subnet {row.name} under provider {spec.provider}; "
                        "use another provider for a separate L2 domain"
                    )

    def _overlap_peers(self, conn: Connection, subnet: _Subnet) -> list[tuple[_Subnet, tuple[int, ...]]]:
        """Returns the inline subnets sharing an address space with ``subnet``."""
        if subnet.spec.overlap is None:
            return []
        peers = []
        for row in catalog.inline_subnets(conn):
            if row.id == subnet.id:
                continue
            other = self._subnet(row)
            families = shared_families(subnet.spec, other.spec)
            if families:
                peers.append((other, families))
        return peers

    def _lock_overlap_group(self, conn: Connection, spec: SubnetSpec) -> None:
        """Serialises writers of one shared address space (PostgreSQL; SQLite writes are serial).

        Taken before any subnet row lock, so two daemons locking peers in either order
        cannot deadlock.
        """
        if spec.overlap is not None and self._row_locks:
            catalog.lock_group(conn, f"ipamd overlapping inline ranges {spec.overlap.group}")

    def _locked(self, conn: Connection, subnet: _Subnet) -> _Subnet:
        """Returns ``subnet`` read again under its row lock, with its peers locked and listed."""
        if subnet.spec.overlap is None:
            locked = self._subnet_by_id(conn, subnet.id, lock=True) if self._row_locks else subnet
            locked.peers = []
            return locked
        self._lock_overlap_group(conn, subnet.spec)
        peers = self._overlap_peers(conn, subnet)
        if self._row_locks:
            for subnet_id in sorted([subnet.id, *(peer.id for peer, _ in peers)]):
                row = self._subnet_by_id(conn, subnet_id, lock=True)
                if subnet_id == subnet.id:
                    subnet = row
        subnet.peers = peers
        return subnet

    def _peer_holder(
        self, conn: Connection, peers: list[tuple[_Subnet, tuple[int, ...]]], family: int, address: int
    ) -> Record | None:
        """Returns the allocation holding ``address`` in a peer sharing it, if any."""
        for peer, families in peers:
            layout = peer.spec.family(family)
            if family in families and layout is not None and layout.network.first <= address <= layout.network.last:
                holder = records.holder_of(conn, subnet_id=peer.id, family=family, address=address)
                if holder is not None:
                    return holder
        return None

    def _claim_in_peers(
        self, conn: Connection, peers: list[tuple[_Subnet, tuple[int, ...]]], family: int, address: int
    ) -> None:
        for peer, families in peers:
            layout = peer.spec.family(family)
            if family in families and layout is not None and layout.network.first <= address <= layout.network.last:
                space.claim(conn, subnet_id=peer.id, family=family, address=address)

    def _join_overlap(self, conn: Connection, subnet: _Subnet) -> None:
        """Makes a new (or newly marked) inline subnet and its peers agree on what is taken."""
        for peer, families in self._overlap_peers(conn, subnet):
            for family in families:
                for address in records.held_addresses(conn, subnet_id=peer.id, family=family):
                    self._claim_in_peers(conn, [(subnet, families)], family, address)
                for address in records.held_addresses(conn, subnet_id=subnet.id, family=family):
                    self._claim_in_peers(conn, [(peer, families)], family, address)

    def _return_address(self, conn: Connection, subnet: _Subnet, family: int, address: int) -> None:
        """Puts a no-longer-held address back where dynamic or pool allocation finds it,
        in this subnet and in every inline subnet sharing its address space."""
        if subnet.spec.overlap is None:
            self._return_one(conn, subnet, family, address)
            return
        peers = subnet.peers if subnet.peers is not None else self._overlap_peers(conn, subnet)
        if self._peer_holder(conn, peers, family, address) is None:
            self._return_one(conn, subnet, family, address)
        self._return_to_peers(conn, peers, family, address)

    def _return_to_peers(
        self, conn: Connection, peers: list[tuple[_Subnet, tuple[int, ...]]], family: int, address: int
    ) -> None:
        for peer, families in peers:
            layout = peer.spec.family(family)
            if family not in families or layout is None or not layout.network.first <= address <= layout.network.last:
                continue
            if records.holder_of(conn, subnet_id=peer.id, family=family, address=address) is not None:
                continue
            if self._peer_holder(conn, self._overlap_peers(conn, peer), family, address) is None:
                self._return_one(conn, peer, family, address)

    def _return_one(self, conn: Connection, subnet: _Subnet, family: int, address: int) -> None:
        if records.reservation_at(conn, subnet_id=subnet.id, family=family, address=address) is not None:
            return  # the reservation keeps it, in a pool or not: never free for dynamic use
        returns, pool_id = self._free_list_of(subnet.spec, self._pools_of(conn, subnet), family, address)
        if returns:
            space.give_back(conn, subnet_id=subnet.id, family=family, address=address, pool_id=pool_id)

    @staticmethod
    def _free_list_of(
        spec: SubnetSpec, pools: list[tuple[int, PoolSpec]], family: int, address: int
    ) -> tuple[bool, int | None]:
        """Returns whether an unreserved address given back is free again, and for which
        pool (None: the subnet's dynamic space); an excluded address or the gateway is not."""
        layout = spec.family(family)
        if layout is None:
            return False, None
        for pool_id, pool_spec in pools:
            if iv.contains(pool_spec.intervals(family), address):
                return True, pool_id
        return iv.contains(layout.dynamic_space(), address), None

    def _release_row(
        self, conn: Connection, row: Record, *, reason: str, subnet: _Subnet | None = None, give_back: bool = True
    ) -> model.Allocation:
        if subnet is None:
            subnet = self._locked(conn, self._subnet_by_id(conn, row.subnet_id))
        allocation = _allocation(row, subnet.spec)
        if not records.delete_allocation_as_read(conn, row):
            # ``row`` was read before the subnet lock: a concurrent release (another daemon's
            # DEL, CNI GC, the API) committed meanwhile, or an ADD of a new sandbox took the
            # row over. Giving the addresses back would list them as free twice (or free
            # while held).
            raise AllocationChanged(f"allocation {row.id} was released or changed meanwhile")
        for family, address in records.addresses_of(row):
            self._event(
                conn,
                action="release",
                subnet=subnet,
                family=family,
                address=address,
                allocation_id=row.id,
                row=row,
                reason=reason,
            )
            if give_back:
                self._return_address(conn, subnet, family, address)
        return allocation

    def _release_current(
        self,
        conn: Connection,
        row: Record | None,
        read_again: Callable[[], Record | None] | None = None,
        *,
        what: str,
        reason: str,
        subnet: _Subnet | None = None,
        give_back: bool = True,
    ) -> model.Allocation | None:
        """Releases ``row``; while a concurrent writer changes or deletes it first (see
        AllocationChanged), releases what ``read_again`` (default: the row by id) finds
        instead. None: nothing to release."""
        for _ in range(CONFLICT_RETRIES):
            if row is None:
                return None
            try:
                return self._release_row(conn, row, reason=reason, subnet=subnet, give_back=give_back)
            except AllocationChanged:
                row = read_again() if read_again is not None else records.allocation_by_id(conn, row.id)
        raise Unavailable(f"{what} kept changing while being released; retry")

    def _log_release(self, allocation: model.Allocation, reason: str) -> None:
        owner = allocation.owner
        log.info(
            "released id=%s owner=%s/%s %s (%s) addresses=%s subnet=%s reason=%s",
            allocation.id,
            owner.namespace,
            owner.pod,
            owner.interface,
            owner.network_key,
            ",".join(allocation.address_texts),
            allocation.subnet,
            reason,
            extra=allocation_fields("released", allocation, reason=reason),
        )
        self._notify(model.Released(allocation, reason))

    def _holder_label(self, row: Record) -> str:
        pod = f"{row.namespace}/{row.pod}" if row.namespace else row.pod
        # A holder in another cluster sharing the database must not read as one of ours.
        cluster = f"cluster {row.cluster}, " if row.cluster != self.cluster else ""
        return f"{pod} {row.interface} ({cluster}network {row.network_key}, allocation {row.id})"
