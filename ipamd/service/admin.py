"""Administration of subnets, pools and reservations, each change one transaction that
also keeps the free-space rows (``ipamd.store.space``) true."""

from __future__ import annotations

from collections.abc import Mapping

from ipamd.core import intervals as iv
from ipamd.core import model
from ipamd.core.addresses import ip_text
from ipamd.core.pool import (
    canonical_pool,
    canonical_reservation,
    holds_pool_member,
    merge_members,
    pool_capacity,
    pools_overlap,
)
from ipamd.core.subnet import requested_subnet
from ipamd.core.usage import classify
from ipamd.errors import AddressConflict, AlreadyExists, InUse, InvalidInput, NameTaken, NotFound
from ipamd.service.base import ServiceBase, _Subnet, log
from ipamd.store import catalog, records, space
from ipamd.store.database import Connection
from ipamd.store.records import Record


def _reservation(row: Record, subnet_name: str) -> model.Reservation:
    return model.Reservation(
        id=row.id,
        subnet=subnet_name,
        family=row.family,
        address=ip_text(int(row.address), row.family),
        mac=row.mac,
        owner=row.owner,
        note=row.note,
        origin=row.origin,
        created_at=row.created_at,
    )


# The reason of the releases a forced subnet deletion makes.
SUBNET_DELETED = "subnet deleted"


class Administration(ServiceBase):
    """Subnets, pools and reservations: created, listed, changed, deleted."""

    async def create_subnet(self, raw: object, *, origin: str = "api") -> model.Subnet:
        spec = requested_subnet(raw)

        def run(conn: Connection) -> model.Subnet:
            self._check_overlap(conn, spec, exclude_id=None)
            subnet_id = catalog.insert_subnet(
                conn, name=spec.name, provider=spec.provider, priority=spec.priority, spec=spec.to_json(), origin=origin
            )
            for layout in spec.families:
                space.add_ranges(
                    conn, subnet_id=subnet_id, family=layout.version, pool_id=None, intervals=layout.dynamic_space()
                )
            log.info(
                "subnet created name=%s cidr=%s provider=%s origin=%s",
                spec.name,
                spec.cidr_block,
                spec.provider,
                origin,
            )
            return self._described_subnet(conn, self._subnet_by_id(conn, subnet_id))

        return await self._write(run)

    async def list_subnets(self) -> list[model.Subnet]:
        def run(conn: Connection) -> list[model.Subnet]:
            return [self._described_subnet(conn, self._subnet(row)) for row in catalog.all_subnets(conn)]

        return await self._read(run)

    async def get_subnet(self, name: str) -> model.Subnet:
        def run(conn: Connection) -> model.Subnet:
            return self._described_subnet(conn, self._subnet_by_name(conn, name))

        return await self._read(run)

    def _described_subnet(self, conn: Connection, subnet: _Subnet) -> model.Subnet:
        """The subnet with its usage per family."""
        pool_specs = [spec for _, spec in self._pools_of(conn, subnet)]
        usage = []
        for layout in subnet.spec.families:
            version = layout.version
            free = space.ranges(conn, subnet_id=subnet.id, family=version, pool_id=None)
            reused = space.released_addresses(conn, subnet_id=subnet.id, family=version)
            counts = classify(
                layout,
                held=records.held_addresses(conn, subnet_id=subnet.id, family=version),
                reserved=catalog.reserved_addresses(conn, subnet_id=subnet.id, family=version),
                pooled=merge_members(pool_specs, version),
            )
            usage.append(
                model.FamilyUsage(
                    family=version,
                    total=counts.total,
                    used=counts.used,
                    available=iv.size(free) + len(reused),
                    excluded=counts.excluded,
                    reserved=counts.reserved,
                    pooled=counts.pooled,
                    free=tuple(iv.normalize([*free, *iv.from_points(reused)])),
                )
            )
        return model.Subnet(spec=subnet.spec, origin=subnet.origin, created_at=subnet.created_at, usage=tuple(usage))

    async def patch_subnet(self, name: str, patch: object) -> model.Subnet:
        if not isinstance(patch, Mapping):
            raise InvalidInput("expected a JSON object with the fields to change")
        if "name" in patch and patch["name"] != name:
            raise InvalidInput("a subnet cannot be renamed", field="name")
        if "overlap" in patch:
            raise InvalidInput(
                "overlap follows the NAD's network_name and enable_overlapping_ranges; edit the NAD", field="overlap"
            )

        def run(conn: Connection) -> model.Subnet:
            subnet = self._subnet_by_name(conn, name, lock=True)
            merged = {**subnet.spec.to_json(), **patch}
            spec = requested_subnet(merged, inline=subnet.origin == "inline", starting_from=subnet.spec)
            self._check_overlap(conn, spec, exclude_id=subnet.id)
            # Every held address must stay inside the new CIDRs and off the new gateway.
            for layout in spec.families:
                held = records.held_addresses(conn, subnet_id=subnet.id, family=layout.version)
                outside = [
                    a
                    for a in held
                    if not int(layout.network.first) <= a <= int(layout.network.last) or a == layout.gateway
                ]
                if outside:
                    raise InUse(
                        f"{ip_text(outside[0], layout.version)} is allocated and would fall outside the subnet or on its gateway"
                    )
            for old in subnet.spec.families:
                if spec.family(old.version) is None and records.count_held(
                    conn, subnet_id=subnet.id, family=old.version
                ):
                    raise InUse(f"IPv{old.version} addresses of subnet {name} are allocated; release them first")
            catalog.update_subnet(
                conn,
                subnet.id,
                provider=spec.provider,
                priority=spec.priority,
                spec=spec.to_json(),
                revision=subnet.revision + 1,
            )
            updated = self._subnet_by_id(conn, subnet.id)
            self._rebuild_space(conn, updated)
            log.info("subnet updated name=%s cidr=%s", name, spec.cidr_block)
            return self._described_subnet(conn, updated)

        return await self._write(run)

    def _rebuild_space(self, conn: Connection, subnet: _Subnet) -> None:
        """Recomputes all free ranges of a subnet from its spec, pools, reservations and holders.

        Costs a read of the subnet's allocations: only spec and pool changes call it.
        """
        pool_list = self._pools_of(conn, subnet)
        space.clear(conn, subnet_id=subnet.id, everything=True)
        for layout in subnet.spec.families:
            version = layout.version
            held_points = records.held_addresses(conn, subnet_id=subnet.id, family=version)
            for peer, families in self._overlap_peers(conn, subnet):
                if version in families:
                    held_points += [
                        a
                        for a in records.held_addresses(conn, subnet_id=peer.id, family=version)
                        if layout.network.first <= a <= layout.network.last
                    ]
            held = iv.from_points(held_points)
            reserved = iv.from_points(catalog.reserved_addresses(conn, subnet_id=subnet.id, family=version))
            pooled = merge_members([spec for _, spec in pool_list], version)
            reused = iv.from_points(space.released_addresses(conn, subnet_id=subnet.id, family=version))
            dynamic = iv.subtract(layout.dynamic_space(), [*pooled, *reserved, *held])
            # Released addresses that are still dynamic stay in the reuse queue; others leave it.
            stale = iv.subtract(reused, dynamic)
            for first, last in stale:
                space.forget_released(conn, subnet_id=subnet.id, family=version, first=first, last=last)
            space.add_ranges(
                conn, subnet_id=subnet.id, family=version, pool_id=None, intervals=iv.subtract(dynamic, reused)
            )
            for pool_id, pool_spec in pool_list:
                members = iv.subtract(pool_spec.intervals(version), [*held, *reserved, *layout.unassignable()])
                space.add_ranges(conn, subnet_id=subnet.id, family=version, pool_id=pool_id, intervals=members)

    async def delete_subnet(self, name: str, *, force: bool = False) -> int:
        """Deletes the subnet; returns how many allocations it released (``force``: any at all)."""

        def run(conn: Connection) -> list[model.Allocation]:
            subnet = self._locked(conn, self._subnet_by_name(conn, name))
            rows = records.allocations_of_subnet(conn, subnet.id)
            if rows and not force:
                raise InUse(
                    f"subnet {name} has {len(rows)} live allocation(s); release them or delete with ?force=true"
                )
            released = []
            for row in rows:
                # An ADD of a new sandbox may update the row after it was read: release it as it is now.
                allocation = self._release_current(
                    conn, row, what=f"allocation {row.id}", reason=SUBNET_DELETED, subnet=subnet, give_back=False
                )
                if allocation is None:
                    continue
                released.append(allocation)
                for family, address in records.addresses_of(row):
                    self._return_to_peers(conn, subnet.peers or [], family, address)
            catalog.delete_subnet(conn, subnet.id)
            log.info("subnet deleted name=%s released=%d", name, len(released))
            return released

        released = await self._write(run)
        # Logged and told once committed, like any release (the metrics count them).
        for allocation in released:
            self._log_release(allocation, SUBNET_DELETED)
        return len(released)

    async def create_pool(self, raw: object, *, origin: str = "api") -> model.Pool:
        if not isinstance(raw, Mapping):
            raise InvalidInput("expected a JSON object describing a pool")
        subnet_name = raw.get("subnet")
        if not isinstance(subnet_name, str):
            raise InvalidInput("required: the name of the subnet the pool belongs to", field="subnet")

        def run(conn: Connection) -> model.Pool:
            subnet = self._subnet_by_name(conn, subnet_name, lock=True)
            spec = canonical_pool(raw, subnet=subnet.spec)
            for _, other in self._pools_of(conn, subnet):
                if pools_overlap(spec, other):
                    raise AlreadyExists(f"pool {spec.name} overlaps pool {other.name} of subnet {subnet.name}")
            pool_id = catalog.insert_pool(
                conn,
                name=spec.name,
                subnet_id=subnet.id,
                ips=list(spec.ips),
                rules=spec.placement.to_json() or None,
                origin=origin,
            )
            self._rebuild_space(conn, subnet)
            log.info("pool created name=%s subnet=%s ips=%s", spec.name, subnet.name, ",".join(spec.ips))
            return self._described_pool(conn, pool_id)

        return await self._write(run)

    def _described_pool(self, conn: Connection, pool_id: int) -> model.Pool:
        """The pool with its usage."""
        row = catalog.pool_by_id(conn, pool_id)
        if row is None:
            raise NotFound(f"pool #{pool_id} not found")
        subnet = self._subnet_by_id(conn, row.subnet_id)
        spec = self._pool_spec(subnet.spec, pool_id=row.id, name=row.name, ips=row.ips, rules=row.rules)
        free = []
        available = used = 0
        for version, _ in spec.members:
            ranges = space.ranges(conn, subnet_id=subnet.id, family=version, pool_id=pool_id)
            free.append((version, tuple(ranges)))
            available += iv.size(ranges)
            used += records.count_held(conn, subnet_id=subnet.id, family=version, pool_id=pool_id)
        return model.Pool(
            spec=spec,
            origin=row.origin,
            created_at=row.created_at,
            capacity=pool_capacity(spec),
            used=used,
            available=available,
            free=tuple(free),
        )

    async def list_pools(self) -> list[model.Pool]:
        def run(conn: Connection) -> list[model.Pool]:
            return [self._described_pool(conn, pool_id) for pool_id in catalog.pool_ids(conn)]

        return await self._read(run)

    async def get_pool(self, name: str) -> model.Pool:
        def run(conn: Connection) -> model.Pool:
            row = catalog.pool_by_name(conn, name)
            if row is None:
                raise NotFound(f"pool {name} not found")
            return self._described_pool(conn, row.id)

        return await self._read(run)

    async def delete_pool(self, name: str) -> None:
        def run(conn: Connection) -> None:
            row = catalog.pool_by_name(conn, name)
            if row is None:
                raise NotFound(f"pool {name} not found")
            subnet = self._subnet_by_id(conn, row.subnet_id, lock=True)
            catalog.delete_pool(conn, row.id)
            self._rebuild_space(conn, subnet)
            log.info("pool deleted name=%s subnet=%s", name, subnet.name)

        await self._write(run)

    async def replace_pool(self, name: str, raw: object, *, origin: str = "api") -> tuple[model.Pool, bool]:
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

        def run(conn: Connection) -> tuple[model.Pool, bool]:
            subnet = self._subnet_by_name(conn, subnet_name, lock=True)
            spec = canonical_pool(raw, subnet=subnet.spec)
            existing = catalog.pool_by_name(conn, name)
            for pool_id, other in self._pools_of(conn, subnet):
                if (existing is None or pool_id != existing.id) and pools_overlap(spec, other):
                    raise AlreadyExists(f"pool {spec.name} overlaps pool {other.name} of subnet {subnet.name}")
            if existing is None:
                pool_id = catalog.insert_pool(
                    conn,
                    name=name,
                    subnet_id=subnet.id,
                    ips=list(spec.ips),
                    rules=spec.placement.to_json() or None,
                    origin=origin,
                )
            else:
                pool_id = existing.id
                old_subnet = (
                    self._subnet_by_id(conn, existing.subnet_id, lock=True)
                    if existing.subnet_id != subnet.id
                    else subnet
                )
                catalog.update_pool(
                    conn,
                    pool_id,
                    subnet_id=subnet.id,
                    ips=list(spec.ips),
                    rules=spec.placement.to_json() or None,
                    origin=origin,
                )
                for row in records.allocations_in_pool(conn, pool_id):
                    if row.subnet_id != subnet.id or not holds_pool_member(spec, records.addresses_of(row)):
                        records.leave_pool(conn, row.id)
                if old_subnet is not subnet:
                    self._rebuild_space(conn, old_subnet)
            self._rebuild_space(conn, subnet)
            log.info(
                "pool %s name=%s subnet=%s ips=%s",
                "created" if existing is None else "replaced",
                name,
                subnet.name,
                ",".join(spec.ips),
            )
            return self._described_pool(conn, pool_id), existing is None

        try:
            return await self._write(run)
        except NameTaken as e:
            raise NameTaken(f"pool {name} was created concurrently; retry") from e

    async def create_reservation(self, raw: object, *, origin: str = "api") -> model.Reservation:
        if not isinstance(raw, Mapping):
            raise InvalidInput("expected a JSON object describing a reservation")
        subnet_name = raw.get("subnet")
        if not isinstance(subnet_name, str):
            raise InvalidInput("required: the name of the subnet", field="subnet")

        def run(conn: Connection) -> model.Reservation:
            subnet = self._subnet_by_name(conn, subnet_name, lock=True)
            spec = canonical_reservation(raw, subnet=subnet.spec)
            text = ip_text(spec.address, spec.version)
            existing = records.reservation_at(conn, subnet_id=subnet.id, family=spec.version, address=spec.address)
            if existing is not None:
                raise AlreadyExists(f"{text} in subnet {subnet.name} is already reserved (reservation {existing.id})")
            holder = records.holder_of(conn, subnet_id=subnet.id, family=spec.version, address=spec.address)
            if holder is not None:
                raise AddressConflict(f"{text} in subnet {subnet.name} is held by {self._holder_label(holder)}")
            space.claim(conn, subnet_id=subnet.id, family=spec.version, address=spec.address)
            row = catalog.insert_reservation(
                conn,
                subnet_id=subnet.id,
                family=spec.version,
                address=spec.address,
                mac=spec.mac,
                owner=spec.owner,
                note=spec.note,
                origin=origin,
            )
            log.info("reservation created subnet=%s address=%s owner=%s", subnet.name, text, spec.owner)
            return _reservation(row, subnet.name)

        return await self._write(run)

    async def replace_reservation(self, reservation_id: int, raw: object) -> model.Reservation:
        """Rewrites the reservation's MAC, owner and note in place, in one transaction: its
        address stays reserved throughout (no ADD can take it meanwhile), and its id, origin
        and creation time stay. ``raw`` is the whole reservation as for a create (a field
        left out becomes null); its subnet and address, when given, must be the
        reservation's: another address is another reservation (delete it, create that one).

        An allocation holding the address keeps it: the new owner applies to later requests.
        """
        if not isinstance(raw, Mapping):
            raise InvalidInput("expected a JSON object describing a reservation")

        def run(conn: Connection) -> model.Reservation:
            row = catalog.reservation_by_id(conn, reservation_id)
            if row is None:
                raise NotFound(f"reservation {reservation_id} not found")
            subnet = self._subnet_by_id(conn, row.subnet_id, lock=True)
            text = ip_text(int(row.address), row.family)
            body = {"subnet": subnet.name, "address": text, **raw}
            if body["subnet"] != subnet.name:
                raise InvalidInput(
                    f"reservation {reservation_id} is in subnet {subnet.name}; to reserve an address of another "
                    "subnet, delete it and create another",
                    field="subnet",
                )
            spec = canonical_reservation(body, subnet=subnet.spec)
            if (spec.version, spec.address) != (row.family, int(row.address)):
                raise InvalidInput(
                    f"reservation {reservation_id} reserves {text}; to reserve another address, delete it and "
                    "create another",
                    field="address",
                )
            updated = catalog.update_reservation(conn, reservation_id, mac=spec.mac, owner=spec.owner, note=spec.note)
            if updated is None:
                # Deleted by a concurrent request while this one waited for the subnet lock.
                raise NotFound(f"reservation {reservation_id} not found")
            log.info("reservation updated subnet=%s address=%s owner=%s", subnet.name, text, spec.owner)
            return _reservation(updated, subnet.name)

        return await self._write(run)

    async def list_reservations(self) -> list[model.Reservation]:
        def run(conn: Connection) -> list[model.Reservation]:
            return [_reservation(row, row.subnet_name) for row in catalog.reservations_with_subnet(conn)]

        return await self._read(run)

    async def get_reservation(self, reservation_id: int) -> model.Reservation:
        def run(conn: Connection) -> model.Reservation:
            row = catalog.reservation_with_subnet(conn, reservation_id)
            if row is None:
                raise NotFound(f"reservation {reservation_id} not found")
            return _reservation(row, row.subnet_name)

        return await self._read(run)

    async def delete_reservation(self, reservation_id: int) -> None:
        def run(conn: Connection) -> None:
            row = catalog.reservation_by_id(conn, reservation_id)
            if row is None:
                raise NotFound(f"reservation {reservation_id} not found")
            subnet = self._subnet_by_id(conn, row.subnet_id, lock=True)
            if not catalog.delete_reservation(conn, reservation_id):
                # Deleted by a concurrent request while this one waited for the subnet lock:
                # its address is back already, and must not be listed as free twice.
                raise NotFound(f"reservation {reservation_id} not found")
            address = int(row.address)
            holder = records.holder_of(conn, subnet_id=subnet.id, family=row.family, address=address)
            if holder is None:
                self._return_address(conn, subnet, row.family, address)
            log.info("reservation deleted subnet=%s address=%s", subnet.name, ip_text(address, row.family))

        await self._write(run)
