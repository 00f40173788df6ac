"""The API's JSON: the one place service results (``ipamd.core.model``) become wire objects.

The shapes are TypedDicts so that mypy checks each field; their names and meaning are the
API's (docs/api.md, ``ipamd.api.openapi``).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any, TypedDict

from ipamd.core.addresses import format_intervals
from ipamd.core.history import Span
from ipamd.core.model import (
    AddressHistory,
    Allocation,
    FamilyUsage,
    HeldAddress,
    Pool,
    Reservation,
    Subnet,
    rfc3339,
)
from ipamd.core.subnet import Route


class AddressJson(TypedDict):
    address: str
    family: int
    cidr: str
    gateway: str | None


class OwnerJson(TypedDict):
    namespace: str
    pod: str
    interface: str
    containerId: str | None
    podUid: str | None


class AllocationJson(TypedDict):
    id: int
    subnet: str
    cluster: str
    networkKey: str
    owner: OwnerJson
    addresses: list[AddressJson]
    mac: str | None
    pool: str | None
    node: str | None
    hold: str | None
    routes: list[dict[str, str]]
    dns: dict[str, Any]
    createdAt: str | None


class FamilyUsageJson(TypedDict):
    total: int
    used: int
    available: int
    excluded: int
    reserved: int
    pooled: int
    freeRanges: list[str]


class PoolUsageJson(TypedDict):
    total: int
    used: int
    available: int
    freeRanges: list[str]


class ReservationJson(TypedDict):
    id: int
    subnet: str
    address: str
    mac: str | None
    owner: str | None
    note: str | None
    origin: str
    createdAt: str | None


SpanJson = TypedDict(
    "SpanJson",
    {
        "subnet": str,
        "cluster": str,
        "networkKey": str,
        "namespace": str,
        "pod": str,
        "interface": str,
        "containerId": str | None,
        "allocationId": int,
        "from": str | None,
        "to": str | None,
        "releaseReason": str | None,
    },
)

AddressHistoryJson = TypedDict(
    "AddressHistoryJson",
    {"address": str, "holders": list[AllocationJson], "history": list[SpanJson], "continue": str | None},
)


class ItemsJson(TypedDict):
    items: list[Any]


class DeletedJson(TypedDict):
    deleted: str | int
    """The name or id of what was deleted."""


class DeletedSubnetJson(TypedDict):
    deleted: str
    released: int
    """Allocations the deletion released (``?force=true``)."""


def items(values: Iterable[Any]) -> ItemsJson:
    """A list answer: ``{"items": [...]}``."""
    return {"items": list(values)}


def deleted(key: str | int) -> DeletedJson:
    return {"deleted": key}


def deleted_subnet(name: str, released: int) -> DeletedSubnetJson:
    return {"deleted": name, "released": released}


def address(held: HeldAddress) -> AddressJson:
    return {"address": held.address, "family": held.family, "cidr": held.cidr, "gateway": held.gateway}


def routes(values: tuple[Route, ...]) -> list[dict[str, str]]:
    """A subnet's routes in the API's form (``Route.to_json``), fresh dicts for the caller."""
    return [dict(route) for route in _routes(values)]


@lru_cache(maxsize=256)
def _routes(values: tuple[Route, ...]) -> tuple[dict[str, str], ...]:
    # The same ones in every allocation of the subnet: made once.
    return tuple(route.to_json() for route in values)


def allocation(value: Allocation) -> AllocationJson:
    owner = value.owner
    return {
        "id": value.id,
        "subnet": value.subnet,
        "cluster": value.cluster,
        "networkKey": owner.network_key,
        "owner": {
            "namespace": owner.namespace,
            "pod": owner.pod,
            "interface": owner.interface,
            "containerId": value.container_id,
            "podUid": value.pod_uid,
        },
        "addresses": [address(held) for held in value.addresses],
        "mac": value.mac,
        "pool": value.pool,
        "node": value.node,
        "hold": value.hold,
        "routes": routes(value.routes),
        "dns": dict(value.dns),
        "createdAt": rfc3339(value.created_at),
    }


def family_usage(usage: FamilyUsage) -> FamilyUsageJson:
    return {
        "total": usage.total,
        "used": usage.used,
        "available": usage.available,
        "excluded": usage.excluded,
        "reserved": usage.reserved,
        "pooled": usage.pooled,
        "freeRanges": format_intervals(usage.free, usage.family),
    }


def subnet(value: Subnet) -> dict[str, Any]:
    """The subnet's spec in the API's form (``SubnetSpec.to_json``), its origin and usage."""
    return {
        **value.spec.to_json(),
        "origin": value.origin,
        "createdAt": rfc3339(value.created_at),
        "usage": {f"v{usage.family}": family_usage(usage) for usage in value.usage},
    }


def pool(value: Pool) -> dict[str, Any]:
    """The pool's spec in the API's form (``PoolSpec.to_json``), its origin and usage."""
    usage: PoolUsageJson = {
        "total": value.capacity,
        "used": value.used,
        "available": value.available,
        "freeRanges": [text for family, free in value.free for text in format_intervals(free, family)],
    }
    return {**value.spec.to_json(), "origin": value.origin, "createdAt": rfc3339(value.created_at), "usage": usage}


def reservation(value: Reservation) -> ReservationJson:
    return {
        "id": value.id,
        "subnet": value.subnet,
        "address": value.address,
        "mac": value.mac,
        "owner": value.owner,
        "note": value.note,
        "origin": value.origin,
        "createdAt": rfc3339(value.created_at),
    }


def span(value: Span) -> SpanJson:
    return {
        "subnet": value.subnet,
        "cluster": value.cluster,
        "networkKey": value.network_key,
        "namespace": value.namespace,
        "pod": value.pod,
        "interface": value.interface,
        "containerId": value.container_id,
        "allocationId": value.allocation_id,
        "from": rfc3339(value.start),
        "to": rfc3339(value.end),
        "releaseReason": value.release_reason,
    }


def address_history(value: AddressHistory) -> AddressHistoryJson:
    return {
        "address": value.address,
        "holders": [allocation(holder) for holder in value.holders],
        "history": [span(item) for item in value.spans],
        "continue": value.continue_token,
    }
