"""What the service answers: allocations, subnets, pools, reservations, an address's
history, and the events it tells its listeners. Frozen values, no I/O.

The service builds them from what the store reads; the HTTP layer alone turns them into
the API's JSON (``ipamd.api.wire``); the Kubernetes layer, the metrics, the logs and the
declarative config read them as they are. An allocation's addresses are kept as text with
their family, prefix and gateway: every reader wants the text (results, annotations, log
lines, the entity tag), so it is made once. They sit in the core with the usage report's
values (``ipamd.core.usage``): the other answer of the service.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ipamd.core.allocation import Owner
from ipamd.core.history import Span
from ipamd.core.intervals import Interval
from ipamd.core.pool import PoolSpec
from ipamd.core.subnet import Route, SubnetSpec


def rfc3339(value: datetime | None) -> str | None:
    """Returns an RFC 3339 UTC timestamp to the second (a naive value is taken as UTC)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    # Fields rather than strftime: a third of the cost, on every allocation answered.
    return f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}:{value.second:02d}Z"


@dataclass(frozen=True, slots=True)
class HeldAddress:
    """One address of an allocation, with what its subnet says about it."""

    family: int
    address: str
    prefixlen: int
    gateway: str | None

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True, slots=True)
class Allocation:
    """The addresses one attachment holds, and who holds them."""

    id: int
    subnet: str
    cluster: str
    owner: Owner
    container_id: str | None
    pod_uid: str | None
    addresses: tuple[HeldAddress, ...]
    mac: str | None
    pool: str | None
    node: str | None
    hold: str | None
    """Why the address outlives its pod (ipamd.core.release): a StatefulSet, a VM; None."""
    origin: str
    """The door it came through: ``cni``, ``api``, ``import``."""
    routes: tuple[Route, ...]
    """The subnet's routes."""
    dns: Mapping[str, Any]
    """The subnet's DNS settings."""
    created_at: datetime | None

    @property
    def network_key(self) -> str:
        return self.owner.network_key

    @property
    def address_texts(self) -> list[str]:
        return [held.address for held in self.addresses]

    @property
    def etag(self) -> str:
        """The entity tag of the allocation: it names one holder of these addresses.

        It changes when the row is another one (a new id), or when the same row passes to
        another pod instance (pod UID); a new sandbox of the same pod keeps it.
        """
        identity = [
            self.id,
            self.subnet,
            self.owner.network_key,
            self.owner.namespace,
            self.owner.pod,
            self.owner.interface,
            self.pod_uid,
            self.address_texts,
            rfc3339(self.created_at),
        ]
        return '"' + hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:20] + '"'


@dataclass(frozen=True, slots=True)
class FamilyUsage:
    """One family of a subnet: every allocatable address is in exactly one class
    (ipamd.core.usage); ``free`` is what dynamic allocation may still hand out."""

    family: int
    total: int
    used: int
    available: int
    excluded: int
    reserved: int
    pooled: int
    free: tuple[Interval, ...]


@dataclass(frozen=True, slots=True)
class Subnet:
    spec: SubnetSpec
    origin: str
    """Who made it: ``api``, ``config``, ``inline`` (a NAD's range)."""
    created_at: datetime | None
    usage: tuple[FamilyUsage, ...]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def used(self) -> int:
        """Addresses held by live allocations, every family."""
        return sum(family.used for family in self.usage)


@dataclass(frozen=True, slots=True)
class Pool:
    spec: PoolSpec
    origin: str
    created_at: datetime | None
    capacity: int
    """Members, every family."""
    used: int
    """Members held by allocations."""
    available: int
    free: tuple[tuple[int, tuple[Interval, ...]], ...]
    """``(family, free members)`` per family of the pool, in its order."""

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class Reservation:
    """An address no allocation may take unless asked for by its MAC or owner."""

    id: int
    subnet: str
    family: int
    address: str
    mac: str | None
    owner: str | None
    note: str | None
    origin: str
    created_at: datetime | None


@dataclass(frozen=True, slots=True)
class AddressHistory:
    """Who holds an address now, and one page of who held it."""

    address: str
    holders: tuple[Allocation, ...]
    spans: tuple[Span, ...]
    continue_token: str | None
    """What asks for the next page; None on the last."""


# Events the service tells ``Ipam.listeners`` (the metrics count them).


@dataclass(frozen=True, slots=True)
class Allocated:
    allocation: Allocation


@dataclass(frozen=True, slots=True)
class Released:
    allocation: Allocation
    reason: str


@dataclass(frozen=True, slots=True)
class ExhaustedSpace:
    """An allocation found no free address in these subnets (and this pool, if it named one)."""

    subnets: tuple[str, ...]
    pool: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryPruned:
    count: int


@dataclass(frozen=True, slots=True)
class HistoryPruneFailed:
    pass


Event = Allocated | Released | ExhaustedSpace | HistoryPruned | HistoryPruneFailed
