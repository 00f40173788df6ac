"""Allocation and release: the hot path. One transaction per request: find the
attachment (ADD is idempotent), pick or claim addresses, insert the row and its audit rows."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from ipamd.core import intervals as iv
from ipamd.core import model
from ipamd.core.addresses import ip_text, parse_ip
from ipamd.core.allocation import Owner, canonical_mac, parse_static_request, reservation_admits
from ipamd.core.placement import Placement, Subject, admit, refusal, refusals_text
from ipamd.core.subnet import SubnetSpec
from ipamd.errors import (
    AddressConflict,
    AlreadyExists,
    ConcurrentWrite,
    Exhausted,
    InvalidInput,
    NameTaken,
    NotAdmitted,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from ipamd.logs import allocation_fields
from ipamd.service.base import (
    CONFLICT_RETRIES,
    TRANSACTION_TIMEOUT_SECONDS,
    ServiceBase,
    _allocation,
    _held_addresses,
    _Subnet,
    log,
)
from ipamd.service.requests import AddRequest, HeldByAnotherPod, LabelsNeeded
from ipamd.store import catalog, history, procedures, records, space
from ipamd.store.database import Command, Connection
from ipamd.store.procedures import AllocationResult
from ipamd.store.records import Record

EXHAUSTED_NAMES = 5


def _unserved(network_key: str) -> NotFound:
    return NotFound(f"no subnet serves provider {network_key}; create one with provider {network_key!r}")


def _dynamic_by_provider(request: AddRequest) -> bool:
    """Whether the request asks only for the next free address of its provider's subnets:
    what ipamd.store.procedures.ALLOCATE does in one call."""
    return not (
        request.static_ips
        or request.pool_name is not None
        or request.pool_entries
        or request.mac
        or request.subnet_name is not None
        or request.network.inline_subnet is not None
    )


def _held_by_another(request: AddRequest, held_uid: str) -> HeldByAnotherPod:
    return HeldByAnotherPod(
        f"{request.owner.label} is held for pod uid {held_uid}, not {request.pod_uid or 'unknown'}; "
        "this ADD comes from another instance of the pod",
        held_uid=held_uid,
    )


class Allocations(ServiceBase):
    """Allocate, release and look up what attachments hold."""

    async def allocate(self, request: AddRequest) -> model.Allocation:
        """Returns the allocation of the request's attachment, creating it if needed."""
        if self.unregistered is not None:
            raise Unavailable(self.unregistered)
        for attempt in range(CONFLICT_RETRIES):
            try:
                if _dynamic_by_provider(request):
                    allocation, created = await self._allocate_one_call(request)
                else:
                    allocation, created = await self._write(lambda conn: self._allocate_in(conn, request))
                if created:
                    self._notify(model.Allocated(allocation))
                    log.info(
                        "allocated id=%s owner=%s addresses=%s subnet=%s container=%s",
                        allocation.id,
                        request.owner.label,
                        ",".join(allocation.address_texts),
                        allocation.subnet,
                        request.container_id,
                        extra=allocation_fields("allocated", allocation),
                    )
                return allocation
            except Exhausted as e:
                self._notify(
                    model.ExhaustedSpace(subnets=tuple(e.details.get("subnets") or ()), pool=e.details.get("pool"))
                )
                raise
            except (ConcurrentWrite, NameTaken) as e:
                # Another daemon inserted the same attachment (or inline subnet) or took the
                # address between our read and insert: the next attempt sees its row and
                # answers accordingly.
                log.debug("allocation race (attempt %d): %s", attempt + 1, e.message)
                continue
        raise Unavailable("allocation kept colliding with concurrent requests; retry")

    async def _allocate_one_call(self, request: AddRequest) -> tuple[model.Allocation, bool]:
        """The allocation (or the attachment's existing one) in one call (ipamd.store.procedures)."""
        row = await self._call_allocate(request, subnet_ids=None)
        if row.outcome == "placement":
            # The walk reached a subnet with placement rules: the subnets are chosen here.
            subnet_ids = await self._read(lambda conn: self._admitted_ids(conn, request))
            row = await self._call_allocate(request, subnet_ids=subnet_ids)
        if row.outcome == "expired" and not self._clock_warned:
            # Answered within the timeout, so not late: the database's clock is ahead of ours.
            self._clock_warned = True
            log.warning(
                "the database's clock is more than %.0f s ahead of this node's: allocating with several "
                "statements per request until it agrees",
                TRANSACTION_TIMEOUT_SECONDS,
            )
        if row.outcome in ("exhausted", "overlap", "expired"):
            # Nothing was written: the errors, inline ranges sharing addresses and a skewed
            # clock are the multi-statement path's.
            return await self._write(lambda conn: self._allocate_in(conn, request))
        if row.outcome == "held":
            assert row.pod_uid is not None, "held for another pod UID"
            raise _held_by_another(request, row.pod_uid)
        return _allocation(row, self._result_spec(row), owner=request.owner), row.outcome == "created"

    async def _call_allocate(self, request: AddRequest, *, subnet_ids: list[int] | None) -> AllocationResult | Record:
        """ALLOCATE's row (PostgreSQL's has the same columns)."""
        rows = await self._call(
            procedures.ALLOCATE,
            procedures.allocate_params(
                subnet_ids=subnet_ids,
                family=request.family,
                owner=request.owner,
                cluster=self.cluster,
                container_id=request.container_id,
                pod_uid=request.pod_uid,
                netns=request.netns,
                node=request.node or self.node,
                origin=request.origin,
                hold=request.hold,
                check_uid=request.check_uid,
                replaces_uid=request.replaces_uid,
                deadline=datetime.now(UTC) + timedelta(seconds=TRANSACTION_TIMEOUT_SECONDS),
            ),
        )
        row: AllocationResult | Record = rows[0]
        return row

    def _admitted_ids(self, conn: Connection, request: AddRequest) -> list[int]:
        """The provider's subnets whose placement rules admit the request, in priority
        order; NotAdmitted when none does. O(subnets): only a provider with rules reads them."""
        candidates = self._all_candidates(conn, request, None)
        return [subnet.id for subnet in self._admitted(candidates, request)]

    def _allocate_in(self, conn: Connection, request: AddRequest) -> tuple[model.Allocation, bool]:
        owner = request.owner
        existing = records.allocation_by_owner(conn, owner, cluster=self.cluster)
        if existing is not None:
            reused = self._reuse(conn, existing, request)
            if reused is not None:
                return reused, False
            # A DEL released the row between our read and our update (PostgreSQL readers do
            # not lock); it committed first, so this ADD allocates afresh.

        # None: every subnet of the provider, walked in priority order only as far as needed.
        candidates = self._candidate_subnets(conn, request)
        mac = canonical_mac(request.mac, field="mac") if request.mac else None
        if mac is not None:
            self._check_mac(conn, mac, network_key=owner.network_key)

        if request.pool_name is not None:
            if candidates is None and not catalog.provider_has_subnet(conn, owner.network_key):
                raise _unserved(owner.network_key)
            return self._allocate_from_pool(conn, request, mac=mac), True
        if request.pool_entries:
            return self._allocate_from_entries(
                conn, request, self._all_candidates(conn, request, candidates), mac=mac
            ), True
        if request.static_ips:
            subnet = self._subnet_for_static(
                self._all_candidates(conn, request, candidates), request.static_ips, field=request.field_prefix
            )
            self._check_admits(subnet, request)
            subnet = self._locked(conn, subnet)
            wanted = parse_static_request(subnet.spec, request.static_ips, field=request.field_prefix)
            self._check_family(subnet, request, wanted)
            return self._insert(
                conn, subnet, request, self._complete_static(conn, subnet, wanted, request), mac=mac
            ), True

        walk = candidates if candidates is not None else self._provider_subnets_with_space(conn, request)
        for subnet in walk:
            if request.family is not None and subnet.spec.family(request.family) is None:
                continue
            if self._refusal(subnet, request) is not None:
                continue
            subnet = self._locked(conn, subnet)
            picks = self._take_dynamic(conn, subnet, family=request.family)
            if picks is not None:
                return self._insert(conn, subnet, request, picks, mac=mac, taken=True), True
        # Off the dynamic path: every subnet of the provider is read, to tell "full" from
        # "none admits this pod" (full subnets were never walked).
        every = self._admitted(self._all_candidates(conn, request, candidates), request)
        if request.family is not None:
            every = [c for c in every if c.spec.family(request.family) is not None]
            if not every:
                raise InvalidInput(
                    f"IPv{request.family} asked, but no subnet of network {owner.network_key} has IPv{request.family}",
                    field=request.family_field,
                )
        named = [subnet.name for subnet in every[:EXHAUSTED_NAMES]]
        more = len(every) - len(named)
        raise Exhausted(
            f"no free address in subnet {', '.join(named)}{f' and {more} more' if more else ''} (network {owner.network_key})",
            subnets=named,
            **({"more": more} if more else {}),
        )

    def _provider_subnets_with_space(self, conn: Connection, request: AddRequest) -> Iterator[_Subnet]:
        """Yields the provider's subnets that have free dynamic space, in priority order.

        Each step is one query walking ix_subnets_provider_order to the next subnet with a
        free range or a released address: full subnets are skipped in SQL, and an ADD reads
        only the subnet it allocates from. The space is checked without locks; the caller
        takes the subnet's lock and moves on if another daemon took the last address.
        """
        families = (request.family,) if request.family is not None else (4, 6)
        provider = request.network.network_key
        first = catalog.first_subnet_with_space(conn, provider=provider, families=families)
        batch: Sequence[Record] = [first] if first is not None else []
        while batch:
            for row in batch:
                yield self._subnet(row)
            batch = catalog.next_subnets_with_space(conn, provider=provider, families=families, after=batch[-1])

    def _all_candidates(self, conn: Connection, request: AddRequest, candidates: list[_Subnet] | None) -> list[_Subnet]:
        """Every subnet the request may use (static requests and errors: O(subnets), off the dynamic path)."""
        if candidates is not None:
            return candidates
        rows = catalog.provider_subnets(conn, request.network.network_key)
        if not rows:
            raise _unserved(request.network.network_key)
        return [self._subnet(row) for row in rows]

    def _subject(self, request: AddRequest) -> Subject:
        return Subject(
            namespace=request.owner.namespace,
            node=request.node or self.node,
            pod_labels=request.pod_labels,
            namespace_labels=request.namespace_labels,
            node_labels=request.node_labels,
            cluster=self.cluster,
        )

    def _refusal(self, subnet: _Subnet, request: AddRequest) -> str | None:
        """Returns why the subnet's placement rules refuse the request's pod, or None."""
        placement = subnet.spec.placement
        if not placement.binds:
            return None
        subject = self._subject(request)
        self._check_labels_known(placement, request, subject)
        return refusal(placement, subject)

    @staticmethod
    def _check_labels_known(placement: Placement, request: AddRequest, subject: Subject) -> None:
        """Raises LabelsNeeded when a rule needs labels the caller left to read on demand."""
        missing = frozenset(
            kind
            for kind in placement.needs_labels & request.labels_on_demand
            if getattr(subject, f"{kind}_labels") is None
        )
        if missing:
            raise LabelsNeeded(missing)

    def _admitted(self, candidates: list[_Subnet], request: AddRequest) -> list[_Subnet]:
        """Returns the candidates whose rules admit the request, in their order; raises
        NotAdmitted, naming each subnet's excluding rule, when none does."""
        subject = self._subject(request)
        for subnet in candidates:
            self._check_labels_known(subnet.spec.placement, request, subject)
        result = admit(((subnet, subnet.spec.placement) for subnet in candidates), subject)
        if result.admitted:
            return list(result.admitted)
        refused = [(subnet.name, reason) for subnet, reason in result.refused]
        raise NotAdmitted(
            f"no subnet of network {request.owner.network_key} admits {self._who(request)}: "
            f"{refusals_text(refused, limit=EXHAUSTED_NAMES)}",
            subnets=[name for name, _ in refused[:EXHAUSTED_NAMES]],
        )

    def _check_admits(self, subnet: _Subnet, request: AddRequest) -> None:
        reason = self._refusal(subnet, request)
        if reason is not None:
            raise NotAdmitted(
                f"subnet {subnet.name} does not admit {self._who(request)}: {reason}", subnets=[subnet.name]
            )

    def _who(self, request: AddRequest) -> str:
        """The pod and where it is, as refusals name it: ``lab/web-0 (namespace lab, node edge-1)``."""
        owner = request.owner
        pod = f"{owner.namespace}/{owner.pod}" if owner.namespace else owner.pod
        return f"{pod} ({self._subject(request).label})"

    @staticmethod
    def _families(subnet: _Subnet, request: AddRequest) -> list[int]:
        """The families an attachment gets: every one of the subnet's, or the one ``ip_family`` asks."""
        versions = [layout.version for layout in subnet.spec.families]
        if request.family is None:
            return versions
        if request.family not in versions:
            raise InvalidInput(
                f"IPv{request.family} asked, but subnet {subnet.name} is {subnet.spec.cidr_block}",
                field=request.family_field,
            )
        return [request.family]

    def _check_family(self, subnet: _Subnet, request: AddRequest, wanted: dict[int, int]) -> None:
        if request.family is not None and set(wanted) - {request.family}:
            raise InvalidInput(
                f"{request.field_prefix} asks for IPv{next(iter(set(wanted) - {request.family}))} but ip_family asks for IPv{request.family} only",
                field=request.family_field,
            )
        self._families(subnet, request)

    def _take_dynamic(self, conn: Connection, subnet: _Subnet, *, family: int | None = None) -> dict[int, int] | None:
        """Takes one dynamic address per family of the subnet (or of ``family``), or none at all."""
        families = [layout for layout in subnet.spec.families if family is None or layout.version == family]
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

    def _complete_static(
        self, conn: Connection, subnet: _Subnet, wanted: dict[int, int], request: AddRequest
    ) -> dict[int, int]:
        """Fills families the static request left out with dynamic picks (dual stack is all or nothing)."""
        picks = dict(wanted)
        families = self._families(subnet, request)
        for layout in subnet.spec.families:
            if layout.version in picks or layout.version not in families:
                continue
            address = space.peek_dynamic(conn, subnet_id=subnet.id, family=layout.version)
            if address is None:
                raise Exhausted(
                    f"no free IPv{layout.version} address in subnet {subnet.name} to pair with the static one"
                )
            picks[layout.version] = address
        return picks

    def _reuse(self, conn: Connection, row: Record, request: AddRequest) -> model.Allocation | None:
        """An ADD for an attachment that already holds addresses: same answer, fresh sandbox facts.

        Returns None when the row is gone by the time it is updated.
        """
        subnet = self._subnet_by_id(conn, row.subnet_id)
        if request.check_uid and row.pod_uid and request.pod_uid != row.pod_uid and row.pod_uid != request.replaces_uid:
            # Another instance of the pod holds it (a recreated pod, or an ADD racing ours):
            # a compare-and-swap on the holder's UID, so a live holder is never overwritten.
            raise _held_by_another(request, row.pod_uid)
        if request.static_ips:
            wanted = parse_static_request(subnet.spec, request.static_ips, field=request.field_prefix)
            held = dict(records.addresses_of(row))
            for family, address in wanted.items():
                if held.get(family) != address:
                    raise AddressConflict(
                        f"{request.owner.label} already holds {ip_text(held[family], family) if family in held else 'another address'} "
                        f"in subnet {subnet.name}; release it before asking for {ip_text(address, family)}"
                    )
        changes: dict[str, str] = {}
        for column, value in (
            ("container_id", request.container_id),
            ("pod_uid", request.pod_uid),
            ("netns", request.netns),
            ("node", request.node or self.node),
        ):
            if value is not None and getattr(row, column) != value:
                changes[column] = value
        if request.origin == "cni" and row.origin != "cni":
            # The pod's own ADD on its node takes over an adopted allocation: from now on
            # it is that node's CNI GC's to collect.
            changes["origin"] = "cni"
        if request.hold != row.hold and request.hold is not None:
            changes["hold"] = request.hold
        if changes:
            if not records.update_allocation(conn, row.id, changes):
                return None
            updated = records.allocation_by_id(conn, row.id)
            assert updated is not None, "updated in this transaction"
            row = updated
        return _allocation(row, subnet.spec)

    def _candidate_subnets(self, conn: Connection, request: AddRequest) -> list[_Subnet] | None:
        """The one subnet a request names (logical_switch, inline range), or None for all of the provider's."""
        network = request.network
        if request.subnet_name is not None:
            subnet = self._subnet_by_name(conn, request.subnet_name)
            if network.inline_subnet is None and subnet.spec.provider not in (None, network.network_key):
                raise InvalidInput(
                    f"subnet {subnet.name} serves provider {subnet.spec.provider}, not {network.network_key}",
                    field="logical_switch",
                )
            # A subnet named outright (logical_switch, REST) obeys its rules too: a tenant
            # must not reach another tenant's subnet by naming it.
            self._check_admits(subnet, request)
            return [subnet]
        if network.inline_subnet is not None:
            return [self._ensure_inline(conn, network.inline_subnet)]
        # Whether any subnet serves the provider is asked only once an ADD finds none (see
        # _unserved): a dynamic ADD that succeeds pays no query for it.
        return None

    def _ensure_inline(self, conn: Connection, spec: SubnetSpec) -> _Subnet:
        """Returns the daemon-owned subnet of an inline NAD range, creating it on first use."""
        row = catalog.subnet_by_name(conn, spec.name)
        if row is None:
            self._check_overlap(conn, spec, exclude_id=None)
            self._lock_overlap_group(conn, spec)
            subnet_id = catalog.insert_subnet(
                conn,
                name=spec.name,
                provider=spec.provider,
                priority=spec.priority,
                spec=spec.to_json(),
                origin="inline",
            )
            for layout in spec.families:
                space.add_ranges(
                    conn, subnet_id=subnet_id, family=layout.version, pool_id=None, intervals=layout.dynamic_space()
                )
            created = self._subnet_by_id(conn, subnet_id)
            self._join_overlap(conn, created)
            log.info("inline subnet created name=%s cidr=%s", spec.name, spec.cidr_block)
            return created
        existing = self._subnet(row)
        if existing.spec.overlap is None and replace(existing.spec, overlap=spec.overlap) == spec:
            # Created before inline ranges shared address spaces: join its peers now.
            self._lock_overlap_group(conn, spec)
            catalog.revise_subnet_spec(conn, row.id, spec=spec.to_json(), revision=row.revision + 1)
            upgraded = self._subnet_by_id(conn, row.id)
            self._join_overlap(conn, upgraded)
            log.info("inline subnet %s now shares addresses with overlapping inline ranges", spec.name)
            return upgraded
        if existing.spec.overlap != spec.overlap and replace(existing.spec, overlap=spec.overlap) == spec:
            assert existing.spec.overlap is not None and spec.overlap is not None
            raise AlreadyExists(
                f"network {spec.name} is already defined with enable_overlapping_ranges "
                f"{str(existing.spec.overlap.protect).lower()}, this config says {str(spec.overlap.protect).lower()}; "
                "give one of them its own network_name"
            )
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
        # Blame only what is outside: in a dual-stack request one family is often right.
        fits = {
            index: [
                s.name for s in candidates if (layout := s.spec.family(a.version)) is not None and a in layout.network
            ]
            for index, a in enumerate(addresses)
        }
        outside = [index for index, found in fits.items() if not found]
        if outside:
            verb = "is" if len(outside) == 1 else "are"
            raise InvalidInput(
                f"{', '.join(str(addresses[i]) for i in outside)} {verb} outside subnet {names}", field=field
            )
        placed = "; ".join(f"{addresses[i]} is in {', '.join(found)}" for i, found in fits.items())
        raise InvalidInput(
            f"the requested addresses are in different subnets ({placed}): one allocation takes them from one subnet",
            field=field,
        )

    def _insert(
        self,
        conn: Connection,
        subnet: _Subnet,
        request: AddRequest,
        picks: dict[int, int],
        *,
        mac: str | None,
        pool_id: int | None = None,
        taken: bool = False,
    ) -> model.Allocation:
        """Claims the picked addresses and inserts the allocation with its audit rows.

        ``taken`` says the picks were already taken out of the free space (so nobody holds
        them and none is reserved), which spares three statements per address on the hot path.
        """
        owner = request.owner
        peers = subnet.peers or []
        for family, address in picks.items():
            if peers:
                # Dynamic picks never collide here (peers' holdings are claimed out of this
                # subnet's free space), static and pool requests can.
                self._claim_in_peers(conn, peers, family, address)
            if taken:
                continue
            holder = records.holder_of(conn, subnet_id=subnet.id, family=family, address=address)
            if holder is None and peers:
                holder = self._peer_holder(conn, peers, family, address)
            if holder is not None:
                raise AddressConflict(
                    f"{ip_text(address, family)} in subnet {subnet.name} is held by {self._holder_label(holder)}"
                )
            reservation = records.reservation_at(conn, subnet_id=subnet.id, family=family, address=address)
            if reservation is not None and not reservation_admits(reservation.owner, owner):
                raise AddressConflict(
                    f"{ip_text(address, family)} in subnet {subnet.name} is reserved (reservation {reservation.id}"
                    f"{', for ' + reservation.owner if reservation.owner else ''}{', ' + reservation.note if reservation.note else ''})"
                )
            if reservation is not None and mac is None and reservation.mac:
                mac = reservation.mac
            space.claim(conn, subnet_id=subnet.id, family=family, address=address)
        node = request.node or self.node
        created_at = datetime.now(UTC)
        values = {
            "subnet_id": subnet.id,
            "cluster": self.cluster,
            "network_key": owner.network_key,
            "namespace": owner.namespace,
            "pod": owner.pod,
            "interface": owner.interface,
            "address_v4": picks.get(4),
            "address_v6": picks.get(6),
            "mac": mac,
            "pool_id": pool_id,
            "container_id": request.container_id,
            "pod_uid": request.pod_uid,
            "netns": request.netns,
            "node": node,
            "hold": request.hold,
            "origin": request.origin,
            "created_at": created_at,
        }
        allocation_id = records.insert_allocation(conn, values)
        history.record_events(
            conn,
            [
                {
                    "action": "allocate",
                    "subnet": subnet.name,
                    "family": family,
                    "address": address,
                    "allocation_id": allocation_id,
                    "cluster": self.cluster,
                    "network_key": owner.network_key,
                    "namespace": owner.namespace,
                    "pod": owner.pod,
                    "interface": owner.interface,
                    "container_id": request.container_id,
                }
                for family, address in picks.items()
            ],
        )
        return model.Allocation(
            id=allocation_id,
            subnet=subnet.name,
            cluster=self.cluster,
            owner=owner,
            container_id=request.container_id,
            pod_uid=request.pod_uid,
            addresses=_held_addresses(subnet.spec, picks.items()),
            mac=mac,
            pool=None if pool_id is None else catalog.pool_name(conn, pool_id),
            node=node,
            hold=request.hold,
            origin=request.origin,
            routes=subnet.spec.routes,
            dns=subnet.spec.dns,
            created_at=created_at,
        )

    def _check_mac(self, conn: Connection, mac: str, *, network_key: str) -> None:
        holder = records.allocation_with_mac(conn, mac=mac, network_key=network_key)
        if holder is not None:
            raise AddressConflict(f"MAC {mac} is already used by {self._holder_label(holder)} in network {network_key}")

    def _allocate_from_pool(self, conn: Connection, request: AddRequest, *, mac: str | None) -> model.Allocation:
        assert request.pool_name is not None, "only pool requests get here"
        row = catalog.pool_by_name(conn, request.pool_name)
        if row is None:
            raise NotFound(f"pool {request.pool_name} not found")
        subnet = self._subnet_by_id(conn, row.subnet_id)
        self._check_pool_network(subnet, request)
        self._check_admits(subnet, request)
        subnet = self._locked(conn, subnet)
        spec = self._pool_spec(subnet.spec, pool_id=row.id, name=row.name, ips=row.ips, rules=row.rules)
        if spec.placement.binds:
            subject = self._subject(request)
            self._check_labels_known(spec.placement, request, subject)
            reason = refusal(spec.placement, subject)
            if reason is not None:
                raise NotAdmitted(f"pool {spec.name} does not admit {self._who(request)}: {reason}", pools=[spec.name])
        picks: dict[int, int] = {}
        families = self._families(subnet, request)
        members_of = [(version, members) for version, members in spec.members if version in families]
        if not members_of:
            raise InvalidInput(
                f"pool {spec.name} has no IPv{request.family} member",
                field=request.family_field,
            )
        if request.ordinal is not None:
            # A StatefulSet pod takes the member at its ordinal, in the order the pool lists them.
            for version, members in members_of:
                address = iv.nth(members, request.ordinal)
                if address is None:
                    raise Exhausted(
                        f"pool {spec.name} has {iv.size(members)} IPv{version} address(es); no member for ordinal {request.ordinal}"
                    )
                picks[version] = address
        else:
            for version, _ in members_of:
                address = space.peek_pool(conn, pool_id=row.id, family=version)
                while address is not None and records.reservation_at(
                    conn, subnet_id=subnet.id, family=version, address=address
                ):
                    # A reserved member is never free for the pool (a database written before
                    # that rule may still list one): take it out of the free members, go on.
                    space.claim(conn, subnet_id=subnet.id, family=version, address=address)
                    address = space.peek_pool(conn, pool_id=row.id, family=version)
                if address is None:
                    raise Exhausted(
                        f"pool {spec.name} is exhausted (subnet {subnet.name})", subnets=[subnet.name], pool=spec.name
                    )
                picks[version] = address
        # Dual stack is all or nothing, whatever names the addresses: a family the pool does
        # not list comes from the subnet's dynamic space, as for a static address or an
        # ip_pool address list.
        return self._insert(
            conn, subnet, request, self._complete_static(conn, subnet, picks, request), mac=mac, pool_id=row.id
        )

    @staticmethod
    def _check_pool_network(subnet: _Subnet, request: AddRequest) -> None:
        """A pool serves the L2 network of its subnet only: another NAD's pod must not get its addresses."""
        network = request.network
        if network.inline_subnet is not None:
            ok = subnet.name == network.inline_subnet.name
            serves = f"the inline range of network {network.network_key} (subnet {network.inline_subnet.name})"
        else:
            ok = subnet.spec.provider == network.network_key
            serves = f"provider {network.network_key}"
        if ok and request.subnet_name is not None and request.subnet_name != subnet.name:
            ok, serves = False, f"subnet {request.subnet_name} named by logical_switch"
        if not ok:
            raise InvalidInput(
                f"pool {request.pool_name} belongs to subnet {subnet.name} of provider {subnet.spec.provider or 'none'}, "
                f"but {request.owner.label} asks for {serves}; name a pool of that network",
                field="ip_pool",
            )

    def _allocate_from_entries(
        self, conn: Connection, request: AddRequest, candidates: list[_Subnet], *, mac: str | None
    ) -> model.Allocation:
        """Kube-OVN ``ip_pool`` as an address list: the ordinal's entry, or the first entry nobody holds."""
        entries = list(request.pool_entries)
        if request.ordinal is not None:
            if request.ordinal >= len(entries):
                raise Exhausted(f"ip_pool lists {len(entries)} entries; none for ordinal {request.ordinal}")
            entries = [entries[request.ordinal]]
        for entry in entries:
            subnet = self._subnet_for_static(candidates, entry, field="ip_pool")
            self._check_admits(subnet, request)
            subnet = self._locked(conn, subnet)
            wanted = parse_static_request(subnet.spec, entry, field="ip_pool")
            self._check_family(subnet, request, wanted)
            if request.ordinal is None:
                taken = False
                for family, address in wanted.items():
                    if records.holder_of(conn, subnet_id=subnet.id, family=family, address=address) is not None:
                        taken = True
                    elif self._peer_holder(conn, subnet.peers or [], family, address) is not None:
                        taken = True
                if taken:
                    continue
            return self._insert(conn, subnet, request, self._complete_static(conn, subnet, wanted, request), mac=mac)
        raise Exhausted(f"every address of ip_pool {', '.join(','.join(e) for e in request.pool_entries)} is held")

    async def release(
        self,
        allocation_id: int,
        *,
        reason: str = "api",
        if_match: Collection[str] | None = None,
        container_id: str | None = None,
    ) -> model.Allocation:
        """Releases an allocation by id; with ``if_match``, only if its entity tag is one of them.

        With ``container_id``, only while the allocation still belongs to that container: a
        decision taken on an earlier read (CNI GC) must not release a new sandbox's takeover.
        """

        def check(row: Record | None, spec_of: Callable[[Record], SubnetSpec]) -> Record:
            if row is None:
                raise NotFound(f"allocation {allocation_id} not found")
            if container_id is not None and row.container_id != container_id:
                raise NotFound(f"allocation {allocation_id} now belongs to another container")
            if if_match is not None and "*" not in if_match:
                etag = _allocation(row, spec_of(row)).etag
                if etag not in if_match:
                    raise PreconditionFailed(
                        f"allocation {allocation_id} is now {etag}, not {', '.join(if_match)}: it passed to another "
                        "pod instance since it was read; read it again before releasing it"
                    )
            return row

        def run(conn: Connection) -> model.Allocation | None:
            def read() -> Record:
                row = records.allocation_by_id(conn, allocation_id)
                return check(row, lambda row: self._subnet_by_id(conn, row.subnet_id).spec)

            # Changed meanwhile: gone (404) or checked again.
            return self._release_current(conn, read(), read, what=f"allocation {allocation_id}", reason=reason)

        allocation = await self._release(
            procedures.FOR_RELEASE_BY_ID,
            {"allocation_id": allocation_id},
            lambda row: check(row, self._result_spec),
            run=run,
            what=f"allocation {allocation_id}",
            reason=reason,
        )
        # check() raises instead of finding nothing.
        assert allocation is not None
        self._log_release(allocation, reason)
        return allocation

    async def release_owner(
        self, owner: Owner, *, reason: str, container_id: str | None = None
    ) -> list[model.Allocation]:
        """Releases the attachment's allocation, if any (DEL is idempotent).

        With ``container_id`` only an allocation made for that container is released, so a
        late DEL of an old sandbox cannot take the address of its replacement.
        """

        def check(row: Record | None) -> Record | None:
            if row is None or (container_id is not None and row.container_id not in (None, container_id)):
                return None
            return row

        def run(conn: Connection) -> model.Allocation | None:
            def read() -> Record | None:
                return check(records.allocation_by_owner(conn, owner, cluster=self.cluster))

            # Changed meanwhile: released (DEL is idempotent) or taken over by a new sandbox.
            return self._release_current(conn, read(), read, what=owner.label, reason=reason)

        allocation = await self._release(
            procedures.FOR_RELEASE_BY_OWNER,
            records.owner_params(owner, cluster=self.cluster),
            check,
            run=run,
            what=owner.label,
            reason=reason,
        )
        if allocation is None:
            return []
        self._log_release(allocation, reason)
        return [allocation]

    async def _release(
        self,
        statement: Command,
        params: dict[str, object],
        check: Callable[[Record | None], Record | None],
        *,
        run: Callable[[Connection], model.Allocation | None],
        what: str,
        reason: str,
    ) -> model.Allocation | None:
        """Returns the allocation released, or None when ``check`` finds nothing.

        ``run`` releases in one transaction. On PostgreSQL the allocation is read (by
        ``statement``), where its addresses go back is decided here, and one statement
        (ipamd_release) deletes it, writes its audit rows and gives them back, but only on
        the row as read and under the spec and pools the decision was taken on; otherwise
        it is read and decided again. The subnet's lock lasts that one statement.
        """
        if not self._release_by_call:
            return await self._write(run)
        for _ in range(CONFLICT_RETRIES):
            row = check(next(iter(await self._call(statement, params)), None))
            if row is None:
                return None
            spec = self._result_spec(row)
            if spec.overlap is not None:
                # Inline ranges sharing addresses give them back to their peers too.
                return await self._write(run)
            # Where an address goes back depends on the pools' members only; their placement
            # rules (which ipamd_pools_of does not read) play no part in it.
            pools = [
                (pool_id, self._pool_spec(spec, pool_id=pool_id, name=name, ips=ips, rules=None))
                for pool_id, name, ips in row.subnet_pools
            ]
            give_back = {}
            for family, address in records.addresses_of(row):
                returns, pool_id = self._free_list_of(spec, pools, family, address)
                if returns:
                    give_back[family] = pool_id
            outcome = (
                await self._call(procedures.RELEASE, procedures.release_params(row, give_back=give_back, reason=reason))
            )[0].outcome
            if outcome == "released":
                return _allocation(row, spec)
        raise Unavailable(f"{what} kept changing while being released; retry")

    async def release_ids(self, ids: Iterable[tuple[int, str | None]], *, reason: str) -> list[model.Allocation]:
        """Releases each (id, container id) pair whose allocation still belongs to that container."""
        released = []
        for allocation_id, container_id in ids:
            try:
                released.append(await self.release(allocation_id, reason=reason, container_id=container_id))
            except NotFound:
                continue
        return released

    async def network_key_of(self, subnet_name: str) -> str:
        """Returns the network key REST allocations in the subnet get: its provider, else its name.

        Reads one row: the subnet's usage (what GET /v1/subnets/{name} shows) costs
        O(pool members and free ranges), too much for every allocation.
        """

        def run(conn: Connection) -> str:
            row = catalog.subnet_provider(conn, subnet_name)
            if row is None:
                raise NotFound(f"subnet {subnet_name} not found")
            return str(row.provider or row.name)

        return await self._read(run)

    async def list_allocations(
        self,
        *,
        subnet: str | None = None,
        namespace: str | None = None,
        pod: str | None = None,
        provider: str | None = None,
        node: str | None = None,
        cluster: str | None = None,
        limit: int | None = None,
    ) -> list[model.Allocation]:
        """Returns the allocations matching every filter given, of every cluster unless ``cluster`` names one."""

        def run(conn: Connection) -> list[model.Allocation]:
            rows = records.allocations_matching(
                conn,
                cluster=cluster,
                subnet=subnet,
                namespace=namespace,
                pod=pod,
                network_key=provider,
                node=node,
                limit=limit,
            )
            return self._allocations(conn, rows)

        return await self._read(run)

    async def get_allocation(self, allocation_id: int) -> model.Allocation:
        def run(conn: Connection) -> model.Allocation:
            row = records.allocation_by_id(conn, allocation_id)
            if row is None:
                raise NotFound(f"allocation {allocation_id} not found")
            return _allocation(row, self._subnet_by_id(conn, row.subnet_id).spec)

        return await self._read(run)

    async def find_owner(self, owner: Owner) -> model.Allocation | None:
        """Returns the allocation of the attachment ``owner`` of this daemon's cluster, if any."""

        def run(conn: Connection) -> model.Allocation | None:
            row = records.allocation_by_owner(conn, owner, cluster=self.cluster)
            if row is None:
                return None
            return _allocation(row, self._subnet_by_id(conn, row.subnet_id).spec)

        return await self._read(run)

    async def allocations_for_network(
        self, network_key: str, *, origin: str | None = None, this_node: bool = False
    ) -> list[model.Allocation]:
        """Returns the network's allocations; ``origin`` and ``this_node`` narrow them to one
        door and to the allocations this daemon's node made (a CNI GC's scope). Node names
        are unique in a cluster only: this node is this node of this daemon's cluster."""

        def run(conn: Connection) -> list[model.Allocation]:
            made_by = (self.cluster, self.node) if this_node else None
            return self._allocations(
                conn, records.allocations_of_network(conn, network_key, origin=origin, made_by=made_by)
            )

        return await self._read(run)
