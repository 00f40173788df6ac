"""Converging declared subnets, pools and reservations onto what the daemon holds. No I/O.

``plan(desired, current)`` says which changes make the daemon hold what is declared, and in
which order. Two callers carry the changes out: the daemon for its ``--config`` file, at
start and on SIGHUP (ipamd.declarative, through the service), and ``ipamctl apply`` (through
the REST API). The daemon reads what it holds as the service's values (``ipamd.core.model``),
``ipamctl`` as the API's JSON; both become the declared fields in the API's form
(docs/api.md), so an object compares equal to its declaration exactly when the daemon holds
what was declared.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ipamd.core import model
from ipamd.core.placement import RULE_FIELDS
from ipamd.core.pool import POOL_FIELDS, RESERVATION_FIELDS
from ipamd.core.subnet import SUBNET_FIELDS


class Kind(StrEnum):
    SUBNET = "subnet"
    POOL = "pool"
    RESERVATION = "reservation"


# Creation order: a pool or a reservation names its subnet. Removal runs the other way.
KINDS = (Kind.SUBNET, Kind.POOL, Kind.RESERVATION)
# The fields a declaration owns; usage, origin, createdAt, id and a NAD subnet's overlap are the daemon's.
SPEC_FIELDS: Mapping[Kind, frozenset[str]] = {
    Kind.SUBNET: SUBNET_FIELDS,
    Kind.POOL: POOL_FIELDS,
    Kind.RESERVATION: RESERVATION_FIELDS,
}


def spec_of(kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
    """Returns the declared fields of an object in the API's form: placement rules only
    when set, as the API shows them; every other field always (null when absent)."""
    return {key: body.get(key) for key in SPEC_FIELDS[kind] if key not in RULE_FIELDS or body.get(key) is not None}


def key_of(kind: Kind, body: Mapping[str, Any]) -> str:
    """Returns what names an object of ``kind``: subnets and pools by name, a reservation
    by ``SUBNET/ADDRESS`` (a subnet name holds no '/')."""
    if kind is Kind.RESERVATION:
        return f"{body['subnet']}/{body['address']}"
    return str(body["name"])


@dataclass(frozen=True)
class Declared:
    """One object as a declaration wants it."""

    kind: Kind
    key: str
    spec: Mapping[str, Any]
    """The fields in the API's form, canonical (as the daemon would show them)."""
    force: bool = False
    """Subnets: ipamd.core.sanity's override. Sent with a request, never compared."""

    @classmethod
    def of(cls, kind: Kind, spec: Mapping[str, Any], *, force: bool = False) -> Declared:
        return cls(kind, key_of(kind, spec), spec_of(kind, spec), force)

    def request(self) -> dict[str, Any]:
        """The body that creates the object, or replaces a pool."""
        return {**self.spec, "force": True} if self.force else dict(self.spec)

    def patch(self) -> dict[str, Any]:
        """The body that makes a subnet equal to the declaration: the whole spec, not a
        difference, so a field left out returns to its default. A PATCH keeps what it is
        not told to change, so a rule left out is sent as null."""
        return {**dict.fromkeys(RULE_FIELDS), **self.request()}


@dataclass(frozen=True)
class Existing:
    """One object as the daemon holds it."""

    kind: Kind
    key: str
    spec: Mapping[str, Any]
    origin: str
    """Who made it: ``api``, ``config``, ``inline`` (a NAD's range), ..."""
    in_use: int = 0
    """Addresses allocated: in the subnet (live allocations) or among the pool's members."""
    id: int | None = None
    """Reservations: what the API names one by (``/v1/reservations/{id}``)."""

    @classmethod
    def subnet(cls, value: model.Subnet) -> Existing:
        """Reads a subnet as the service returns it (the daemon's ``--config``)."""
        return cls._held(Kind.SUBNET, value.spec.to_json(), value.origin, in_use=value.used)

    @classmethod
    def pool(cls, value: model.Pool) -> Existing:
        """Reads a pool as the service returns it (the daemon's ``--config``)."""
        return cls._held(Kind.POOL, value.spec.to_json(), value.origin, in_use=value.used)

    @classmethod
    def reservation(cls, value: model.Reservation) -> Existing:
        """Reads a reservation as the service returns it (the daemon's ``--config``)."""
        fields = {
            "subnet": value.subnet,
            "address": value.address,
            "mac": value.mac,
            "owner": value.owner,
            "note": value.note,
        }
        return cls._held(Kind.RESERVATION, fields, value.origin, id=value.id)

    @classmethod
    def _held(
        cls, kind: Kind, fields: Mapping[str, Any], origin: str, *, in_use: int = 0, id: int | None = None
    ) -> Existing:
        return cls(kind, key_of(kind, fields), spec_of(kind, fields), origin, in_use, id)

    @classmethod
    def of(cls, kind: Kind, body: Mapping[str, Any]) -> Existing:
        """Reads an object as the API shows it (``ipamctl apply``)."""
        usage = body.get("usage") or {}
        if kind is Kind.SUBNET:
            in_use = sum(int(family.get("used", 0)) for family in usage.values())
        elif kind is Kind.POOL:
            in_use = int(usage.get("used", 0))
        else:
            in_use = 0
        return cls._held(kind, body, str(body["origin"]), in_use=in_use, id=body.get("id"))


class Action(StrEnum):
    CREATE = "create"
    PATCH = "patch"
    """A subnet is changed in place."""
    REPLACE = "replace"
    """A pool's members and rules are swapped in one transaction: an ADD never finds it
    missing, and members held stay held (they are allocations, not pool state)."""
    REWRITE = "rewrite"
    """A reservation's MAC, owner and note are rewritten in place, in one transaction (the
    daemon: ``Ipam.replace_reservation``; ``ipamctl apply``: ``PUT /v1/reservations/{id}``).
    Its subnet and address are its key, so the plan only ever pairs a declaration with the
    reservation of the same address: it is never deleted and created again, its address stays
    reserved throughout, and its id, origin and creation time stay."""
    DELETE = "delete"
    KEEP = "keep"
    """Nothing is done, and that is worth saying: see ``Change.why``."""


# How each kind takes a changed declaration.
UPDATE: Mapping[Kind, Action] = {
    Kind.SUBNET: Action.PATCH,
    Kind.POOL: Action.REPLACE,
    Kind.RESERVATION: Action.REWRITE,
}


class Why(StrEnum):
    """Why a KEEP keeps."""

    FOREIGN = "foreign"
    """Declared, but held with another origin: not the declaration's to change."""
    IN_USE = "in use"
    """No longer declared, but addresses are still allocated from it."""


@dataclass(frozen=True)
class Change:
    action: Action
    kind: Kind
    key: str
    desired: Declared | None = None
    """None for DELETE and for a KEEP of an object no longer declared."""
    current: Existing | None = None
    """None for CREATE."""
    why: Why | None = field(default=None, kw_only=True)


def plan(desired: Iterable[Declared], current: Iterable[Existing], *, owner: str | None = None) -> list[Change]:
    """Returns the changes that make ``current`` hold ``desired``, in the order to carry them out.

    ``owner`` is the origin the declaration stands for (the ``--config`` file's ``config``):
    only objects of that origin are changed, and those it no longer declares are deleted,
    or kept while addresses are allocated from them. Without an owner (``ipamctl apply``)
    any object may be changed and none is deleted.

    Deletions come first, reservations then pools then subnets, because a renamed subnet
    or pool may reuse the space of the old one; then creations and changes, subnets then
    pools then reservations, each kind in the order declared. An object already as
    declared gets no change.
    """
    wanted: dict[Kind, dict[str, Declared]] = {kind: {} for kind in KINDS}
    for declared in desired:
        if declared.key in wanted[declared.kind]:
            raise ValueError(f"{declared.kind} {declared.key} is declared twice")
        wanted[declared.kind][declared.key] = declared
    held: dict[Kind, dict[str, Existing]] = {kind: {} for kind in KINDS}
    for holding in current:
        held[holding.kind][holding.key] = holding

    changes: list[Change] = []
    if owner is not None:
        for kind in reversed(KINDS):
            for key, gone in held[kind].items():
                if gone.origin != owner or key in wanted[kind]:
                    continue
                if gone.in_use:
                    changes.append(Change(Action.KEEP, kind, key, current=gone, why=Why.IN_USE))
                else:
                    changes.append(Change(Action.DELETE, kind, key, current=gone))
    for kind in KINDS:
        for key, declared in wanted[kind].items():
            existing = held[kind].get(key)
            if existing is None:
                changes.append(Change(Action.CREATE, kind, key, declared))
            elif owner is not None and existing.origin != owner:
                changes.append(Change(Action.KEEP, kind, key, declared, existing, why=Why.FOREIGN))
            elif existing.spec != declared.spec:
                changes.append(Change(UPDATE[kind], kind, key, declared, existing))
    return changes
