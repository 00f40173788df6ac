"""Property tests of allocation through the service.

Random sequences of dynamic, static and pool allocations and releases must never hand out
an address twice, never hand out what dynamic allocation must skip, and reuse released
addresses only after the never-used ones, oldest release first. The random sequences run
on SQLite (a fresh database per example); the fixed orders on both databases.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipamd.core.addresses import format_intervals
from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.errors import AddressConflict, AlreadyExists, Exhausted, IpamError
from ipamd.service import AddRequest, Ipam
from tests.support.inprocess import opened_ipam
from tests.support.results import addresses_in, family_usage, pool_free

PROVIDER = "prop.default"
NETWORK = NetworkRequest(PROVIDER, None)


def request(pod: str, **fields) -> AddRequest:
    return AddRequest(owner=Owner(PROVIDER, "default", pod, "net1"), network=NETWORK, container_id=f"c-{pod}", **fields)


operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(0, 40)),
        st.tuples(st.just("del"), st.integers(0, 40)),
        st.tuples(st.just("static"), st.integers(0, 40), st.integers(0, 31)),
        st.tuples(st.just("pool"), st.integers(0, 40)),
        # A reservation for pod-N of 192.0.2.M (pool members included), and its deletion.
        st.tuples(st.just("reserve"), st.integers(0, 40), st.integers(5, 30)),
        st.tuples(st.just("unreserve"), st.integers(0, 40)),
    ),
    min_size=1,
    max_size=60,
)


# The refusals each operation may meet; any other error, or one of these from another
# operation, is a bug.
REFUSALS: dict[str, tuple[type[IpamError], ...]] = {
    "add": (Exhausted,),  # every dynamic address is held
    "pool": (Exhausted,),  # every member of pool p is held
    # Held, reserved, the network, gateway or broadcast address, or the pod holds another.
    "static": (AddressConflict,),
    "reserve": (AddressConflict, AlreadyExists),  # held by another pod, or reserved already
    "del": (),
    "unreserve": (),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_random_operations_keep_every_invariant(ops):
    asyncio.run(_run_operations(ops))


async def _run_operations(ops) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with opened_ipam(f"sqlite:///{Path(directory) / 'ipam.db'}") as ipam:
            await _check_operations(ipam, ops)


async def _check_operations(ipam: Ipam, ops) -> None:
    # A /27 dual-stack subnet fills up quickly, so exhaustion and reuse get exercised.
    await ipam.create_subnet(
        {
            "name": "net1",
            "cidrBlock": "192.0.2.0/27,2001:db8:7::/64",
            "excludeIps": ["192.0.2.2..192.0.2.4", "2001:db8:7::2..2001:db8:7::4"],
            "provider": PROVIDER,
        }
    )
    await ipam.create_pool(
        {"name": "p", "subnet": "net1", "ips": ["192.0.2.20..192.0.2.22", "2001:db8:7::20..2001:db8:7::22"]}
    )
    await ipam.create_reservation({"subnet": "net1", "address": "192.0.2.9", "note": "router"})
    forbidden_dynamic = {
        "192.0.2.0",
        "192.0.2.1",
        "192.0.2.31",
        "192.0.2.2",
        "192.0.2.3",
        "192.0.2.4",
        "192.0.2.9",
        "192.0.2.20",
        "192.0.2.21",
        "192.0.2.22",
    }
    for op in ops:
        pod = f"pod-{op[1]}"
        try:
            if op[0] == "add":
                allocation = await ipam.allocate(request(pod))
                families = sorted(held.family for held in allocation.addresses)
                assert families == [4, 6], "dual stack is all or nothing"
            elif op[0] == "del":
                await ipam.release_owner(Owner(PROVIDER, "default", pod, "net1"), reason="test")
            elif op[0] == "static":
                await ipam.allocate(request(pod, static_ips=(f"192.0.2.{op[2]}",)))
            elif op[0] == "reserve":
                await ipam.create_reservation(
                    {"subnet": "net1", "address": f"192.0.2.{op[2]}", "owner": f"default/{pod}"}
                )
            elif op[0] == "unreserve":
                # The router's reservation (no owner) stays: forbidden_dynamic counts on it.
                reservations = [r for r in await ipam.list_reservations() if r.owner]
                if reservations:
                    await ipam.delete_reservation(reservations[op[1] % len(reservations)].id)
            else:
                await ipam.allocate(request(pod, pool_name="p"))
        except IpamError as refused:
            assert isinstance(refused, REFUSALS[op[0]]), f"{op}: {refused!r}"
    held = await ipam.list_allocations()
    addresses = [a.address for allocation in held for a in allocation.addresses]
    assert len(addresses) == len(set(addresses)), "an address is held twice"
    for allocation in held:
        assert sorted(a.family for a in allocation.addresses) == [4, 6]
        v4 = next(a.address for a in allocation.addresses if a.family == 4)
        assert v4 not in {"192.0.2.0", "192.0.2.1", "192.0.2.31"}
    # Nothing dynamic (no pool, not requested statically) sits on a forbidden address.
    subnet = await ipam.get_subnet("net1")
    usage = family_usage(subnet, 4)
    assert usage.used == len(held)
    reserved = {r.address for r in await ipam.list_reservations()}
    free = addresses_in(usage.free, 4)
    assert not free & (forbidden_dynamic | reserved)
    assert not free & set(addresses)
    # Each address is counted once: used, reserved, pooled, excluded or available.
    pool = await ipam.get_pool("p")
    members_free = pool_free(pool)
    assert not members_free & (reserved | set(addresses)), "a held or reserved member is free in the pool"
    assert [family.family for family in subnet.usage] == [4, 6]
    for family in subnet.usage:
        parts = [family.used, family.reserved, family.pooled, family.excluded, family.available]
        assert sum(parts) == family.total, family
    assert usage.reserved == len(reserved - set(addresses))
    assert usage.pooled == len(pool_free(pool, 4))


async def test_dynamic_order_is_lowest_never_used_then_oldest_released(ipam: Ipam) -> None:
    await ipam.create_subnet({"name": "net1", "cidrBlock": "192.0.2.0/29", "provider": PROVIDER})
    got = [(await ipam.allocate(request(f"p{i}"))).addresses[0].address for i in range(5)]
    assert got == ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5", "192.0.2.6"]
    await ipam.release_owner(Owner(PROVIDER, "default", "p3", "net1"), reason="t")
    await ipam.release_owner(Owner(PROVIDER, "default", "p1", "net1"), reason="t")
    again = [(await ipam.allocate(request(f"q{i}"))).addresses[0].address for i in range(2)]
    assert again == ["192.0.2.5", "192.0.2.3"]
    with pytest.raises(Exhausted) as refused:
        await ipam.allocate(request("full"))
    assert refused.value.message == "no free address in subnet net1 (network prop.default)"


async def test_ipv6_slash_64_allocates_at_both_ends_and_orders_correctly(ipam: Ipam) -> None:
    await ipam.create_subnet({"name": "v6", "cidrBlock": "2001:db8:9::/64", "provider": PROVIDER})
    top = "2001:db8:9:0:ffff:ffff:ffff:fffe"  # RFC 5952: a lone zero group is not compressed
    high = await ipam.allocate(request("high", static_ips=(top,)))
    low = await ipam.allocate(request("low"))
    assert high.addresses[0].address == top
    assert low.addresses[0].address == "2001:db8:9::2"
    usage = family_usage(await ipam.get_subnet("v6"), 6)
    assert usage.total == 2**64 - 1
    assert usage.available == 2**64 - 1 - 1 - 2  # gateway and the two held
    assert format_intervals(usage.free, 6) == [
        "2001:db8:9::3-2001:db8:9:0:ffff:ffff:ffff:fffd",
        "2001:db8:9:0:ffff:ffff:ffff:ffff",
    ]
