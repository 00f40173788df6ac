"""The converge plan of the --config file and ipamctl apply, checked against a model of the daemon."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipamd.api import wire
from ipamd.core import model
from ipamd.core.converge import KINDS, Action, Change, Declared, Existing, Kind, Why, plan, spec_of
from ipamd.core.pool import canonical_pool
from ipamd.core.subnet import canonical_subnet

OWNER = "config"
UPDATES = {Action.PATCH, Action.REPLACE, Action.REWRITE}

# A few names per kind and a few versions of each object: collisions are the interesting cases.
keys = st.sampled_from(["a", "b", "c", "d"])
versions = st.integers(0, 2)
origins = st.sampled_from([OWNER, "api", "inline"])


def spec(kind: Kind, key: str, version: int) -> dict[str, object]:
    if kind is Kind.RESERVATION:
        return {"subnet": key, "address": "192.0.2.7", "mac": None, "owner": None, "note": f"v{version}"}
    if kind is Kind.POOL:
        return {"name": key, "subnet": "s", "ips": [f"192.0.2.{10 + version}"]}
    return {
        "name": key,
        "cidrBlock": "192.0.2.0/24",
        "gateway": "192.0.2.1",
        "excludeIps": [],
        "provider": None,
        "priority": version,
        "routes": [],
        "dns": {},
    }


declared_objects = st.lists(
    st.builds(
        lambda kind, key, version: Declared.of(kind, spec(kind, key, version)), st.sampled_from(KINDS), keys, versions
    ),
    max_size=8,
    unique_by=lambda declared: (declared.kind, declared.key),
)
existing_objects = st.lists(
    st.builds(
        lambda kind, key, version, origin, in_use: Existing(
            kind, Declared.of(kind, spec(kind, key, version)).key, spec(kind, key, version), origin, in_use
        ),
        st.sampled_from(KINDS),
        keys,
        versions,
        origins,
        st.sampled_from([0, 0, 3]),
    ),
    max_size=8,
    unique_by=lambda existing: (existing.kind, existing.key),
)
owners = st.sampled_from([OWNER, None])

State = dict[tuple[Kind, str], Existing]


def carry_out(state: State, changes: list[Change], *, owner: str | None) -> State:
    """What the daemon holds after the changes, each done as the API does it."""
    state = dict(state)
    for change in changes:
        where = (change.kind, change.key)
        if change.action is Action.CREATE:
            assert where not in state and change.desired is not None
            state[where] = Existing(change.kind, change.key, change.desired.spec, owner or "api")
        elif change.action in UPDATES:
            assert change.desired is not None and state[where] == change.current
            state[where] = dataclasses.replace(state[where], spec=change.desired.spec)
        elif change.action is Action.DELETE:
            assert state[where] == change.current
            del state[where]
        else:
            assert change.action is Action.KEEP and state[where] == change.current
    return state


def as_state(current: list[Existing]) -> State:
    return {(existing.kind, existing.key): existing for existing in current}


@given(declared_objects, existing_objects, owners)
def test_carried_out_the_daemon_holds_what_is_declared(desired, current, owner):
    before = as_state(current)
    after = carry_out(before, plan(desired, current, owner=owner), owner=owner)
    declared = {(d.kind, d.key): d for d in desired}
    for where, held in after.items():
        if where in declared and (owner is None or before.get(where) is None or before[where].origin == owner):
            assert held.spec == declared[where].spec
        else:
            # Not declared, or held with another origin: not the declaration's to change.
            assert held == before[where]
    for where in declared:
        assert where in after
    for where, held in before.items():
        if owner is None or held.origin != owner or held.in_use:
            assert where in after
        elif where not in declared:
            assert where not in after


@given(declared_objects, existing_objects, owners)
def test_a_second_plan_only_keeps(desired, current, owner):
    after = carry_out(as_state(current), plan(desired, current, owner=owner), owner=owner)
    assert {change.action for change in plan(desired, list(after.values()), owner=owner)} <= {Action.KEEP}


@given(declared_objects, existing_objects, owners)
def test_removals_come_first_and_kinds_in_dependency_order(desired, current, owner):
    changes = plan(desired, current, owner=owner)
    removals = [c for c in changes if c.action is Action.DELETE or c.why is Why.IN_USE]
    rest = [c for c in changes if c not in removals]
    assert changes == removals + rest
    assert [KINDS.index(c.kind) for c in removals] == sorted((KINDS.index(c.kind) for c in removals), reverse=True)
    assert [KINDS.index(c.kind) for c in rest] == sorted(KINDS.index(c.kind) for c in rest)
    assert len({(c.kind, c.key) for c in changes}) == len(changes)


@given(declared_objects, existing_objects)
def test_without_an_owner_nothing_is_deleted_or_kept(desired, current):
    assert {c.action for c in plan(desired, current)} <= {Action.CREATE, *UPDATES}


@given(declared_objects, existing_objects)
def test_with_an_owner_only_its_objects_change(desired, current):
    for change in plan(desired, current, owner=OWNER):
        if change.action is not Action.CREATE and change.action is not Action.KEEP:
            assert change.current is not None and change.current.origin == OWNER


# ---------------------------------------------------------------------------- tables

SUBNET_JSON = {
    "name": "lab",
    "cidrBlock": "198.51.100.0/24",
    "gateway": "198.51.100.1",
    "excludeIps": [],
    "provider": "lab.default",
    "priority": 0,
    "routes": [],
    "dns": {},
    "namespaces": ["team-a"],
}


def test_the_daemons_own_fields_are_not_compared():
    declared = Declared.of(Kind.SUBNET, canonical_subnet(SUBNET_JSON).to_json())
    shown = {
        **SUBNET_JSON,
        "origin": OWNER,
        "createdAt": "2026-11-29T12:00:00Z",
        "usage": {"v4": {"used": 2, "free": 251}},
        "overlap": {"network": "n", "enabled": False},
    }
    current = Existing.of(Kind.SUBNET, shown)
    assert (current.in_use, current.origin) == (2, OWNER)
    # The placement rules count: a subnet declared with a rule is unchanged when it holds it.
    assert plan([declared], [current], owner=OWNER) == []
    without_rule = Existing.of(Kind.SUBNET, {**shown, "namespaces": None})
    assert [c.action for c in plan([declared], [without_rule], owner=OWNER)] == [Action.PATCH]


def test_a_rule_left_out_is_cleared_by_the_patch_and_force_is_sent_not_compared():
    spec = {key: value for key, value in SUBNET_JSON.items() if key != "namespaces"}
    declared = Declared.of(Kind.SUBNET, spec, force=True)
    current = Existing.of(Kind.SUBNET, {**SUBNET_JSON, "origin": "api"})
    [change] = plan([declared], [current])
    assert change.action is Action.PATCH
    patch = declared.patch()
    assert (patch["namespaces"], patch["nodeSelector"], patch["force"], patch["provider"]) == (
        None,
        None,
        True,
        "lab.default",
    )
    assert plan([declared], [Existing.of(Kind.SUBNET, {**spec, "origin": "api"})]) == []


@pytest.mark.parametrize(
    "origin, in_use, owner, expected",
    [
        (OWNER, 0, OWNER, [(Action.DELETE, None)]),
        (OWNER, 1, OWNER, [(Action.KEEP, Why.IN_USE)]),
        ("api", 0, OWNER, []),
        (OWNER, 0, None, []),
    ],
)
def test_an_object_no_longer_declared(origin, in_use, owner, expected):
    pool = Existing.of(
        Kind.POOL,
        {"name": "web", "subnet": "lab", "ips": ["198.51.100.20"], "origin": origin, "usage": {"used": in_use}},
    )
    assert [(c.action, c.why) for c in plan([], [pool], owner=owner)] == expected


@pytest.mark.parametrize(
    "kind, held, action",
    [
        (Kind.SUBNET, {**SUBNET_JSON, "priority": 5}, Action.PATCH),
        (Kind.POOL, {"name": "lab", "subnet": "lab", "ips": ["198.51.100.21"]}, Action.REPLACE),
        (
            Kind.RESERVATION,
            {"subnet": "lab", "address": "198.51.100.7", "mac": None, "owner": "x", "note": None, "id": 4},
            Action.REWRITE,
        ),
    ],
)
def test_each_kind_takes_a_change_its_own_way(kind, held, action):
    wanted = {
        Kind.SUBNET: SUBNET_JSON,
        Kind.POOL: {"name": "lab", "subnet": "lab", "ips": ["198.51.100.20"]},
        Kind.RESERVATION: {"subnet": "lab", "address": "198.51.100.7", "mac": None, "owner": "y", "note": None},
    }[kind]
    current = Existing.of(kind, {**held, "origin": OWNER})
    [change] = plan([Declared.of(kind, wanted)], [current], owner=OWNER)
    assert (change.action, change.current) == (action, current)
    assert plan([Declared.of(kind, wanted)], [Existing.of(kind, {**held, "origin": "api"})], owner=OWNER) == [
        Change(
            Action.KEEP,
            kind,
            current.key,
            Declared.of(kind, wanted),
            Existing.of(kind, {**held, "origin": "api"}),
            why=Why.FOREIGN,
        )
    ]


def test_a_reservation_is_named_by_subnet_and_address_and_carries_its_id():
    shown = {
        "id": 9,
        "subnet": "lab",
        "address": "2001:db8::7",
        "mac": None,
        "owner": None,
        "note": None,
        "origin": "api",
    }
    current = Existing.of(Kind.RESERVATION, shown)
    assert (current.key, current.id, current.spec) == ("lab/2001:db8::7", 9, spec_of(Kind.RESERVATION, shown))
    assert "id" not in current.spec and "origin" not in current.spec


def test_an_object_declared_twice_is_a_bug_of_the_caller():
    pool = Declared.of(Kind.POOL, {"name": "web", "subnet": "lab", "ips": ["198.51.100.20"]})
    with pytest.raises(ValueError, match="pool web is declared twice"):
        plan([pool, pool], [])


# ---------------------------------------------------------------------------- the daemon's route
# The daemon reads the service's values, ipamctl the API's JSON of the same values: both
# must see the same object, or a --config file and ipamctl apply would disagree on a change.

CREATED = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
DUAL_STACK = {
    **SUBNET_JSON,
    "cidrBlock": "198.51.100.0/24,2001:db8::/64",
    "gateway": "198.51.100.1,2001:db8::1",
    "routes": [{"dst": "203.0.113.0/24", "gw": "198.51.100.254"}],
    "dns": {"nameservers": ["198.51.100.53"]},
    "nodeSelector": {"matchLabels": {"rack": "r1"}},
}


def family_usage(family: int, used: int) -> model.FamilyUsage:
    return model.FamilyUsage(family, 253, used, 253 - used, 0, 0, 0, free=((10, 20),))


SUBNETS = [
    model.Subnet(canonical_subnet(SUBNET_JSON), "config", CREATED, (family_usage(4, 2),)),
    model.Subnet(canonical_subnet(DUAL_STACK), "api", None, (family_usage(4, 1), family_usage(6, 3))),
    model.Subnet(
        canonical_subnet(
            {**SUBNET_JSON, "overlap": {"networkName": "n", "enableOverlappingRanges": False}}, inline=True
        ),
        "inline",
        CREATED,
        (family_usage(4, 0),),
    ),
]
POOLS = [
    model.Pool(
        canonical_pool(
            {"name": "web", "subnet": "lab", "ips": ["198.51.100.20", "198.51.100.30..198.51.100.31"]},
            subnet=canonical_subnet(SUBNET_JSON),
        ),
        "config",
        CREATED,
        capacity=3,
        used=2,
        available=1,
        free=((4, ((1, 1),)),),
    ),
    model.Pool(
        canonical_pool(
            {"name": "db", "subnet": "lab", "ips": ["198.51.100.40"], "namespaces": ["team-a"]},
            subnet=canonical_subnet(SUBNET_JSON),
        ),
        "api",
        None,
        capacity=1,
        used=0,
        available=1,
        free=(),
    ),
]
RESERVATIONS = [
    model.Reservation(9, "lab", 6, "2001:db8::7", None, None, None, "api", CREATED),
    model.Reservation(10, "lab", 4, "198.51.100.7", "02:00:00:00:00:07", "vm-1", "the gateway VM", "config", None),
]


@pytest.mark.parametrize("subnet", SUBNETS, ids=lambda subnet: subnet.origin)
def test_a_subnet_read_from_the_service_is_the_subnet_the_api_shows(subnet):
    assert Existing.subnet(subnet) == Existing.of(Kind.SUBNET, wire.subnet(subnet))
    assert Existing.subnet(subnet).in_use == subnet.used


@pytest.mark.parametrize("pool", POOLS, ids=lambda pool: pool.name)
def test_a_pool_read_from_the_service_is_the_pool_the_api_shows(pool):
    assert Existing.pool(pool) == Existing.of(Kind.POOL, wire.pool(pool))
    assert Existing.pool(pool).in_use == pool.used


@pytest.mark.parametrize("reservation", RESERVATIONS, ids=lambda reservation: reservation.address)
def test_a_reservation_read_from_the_service_is_the_reservation_the_api_shows(reservation):
    held = Existing.reservation(reservation)
    assert held == Existing.of(Kind.RESERVATION, wire.reservation(reservation))
    assert (held.key, held.id) == (f"lab/{reservation.address}", reservation.id)


def test_a_subnet_as_declared_is_kept_whichever_route_read_it():
    declared = Declared.of(Kind.SUBNET, canonical_subnet(DUAL_STACK).to_json())
    [subnet] = [subnet for subnet in SUBNETS if subnet.origin == "api"]
    assert plan([declared], [Existing.subnet(subnet)]) == []
    assert plan([declared], [Existing.of(Kind.SUBNET, wire.subnet(subnet))]) == []
