"""What the service answers, on both databases: the frozen values of ipamd.core.model, and the
events it tells its listeners (issue 13 item 1).

The HTTP API's JSON is built from these values alone (ipamd.api.wire), so what is pinned
here is what every door (REST, CNI, Kubernetes, metrics, logs) reads.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ipamd.api import wire
from ipamd.core.allocation import Owner
from ipamd.core.model import (
    AddressHistory,
    Allocated,
    Allocation,
    Event,
    ExhaustedSpace,
    HeldAddress,
    Pool,
    Released,
    Reservation,
    Subnet,
)
from ipamd.core.nad import NetworkRequest
from ipamd.core.subnet import Route
from ipamd.errors import Exhausted, NotFound
from ipamd.service import AddRequest, Ipam
from tests.support.inprocess import Rest
from tests.support.results import family_usage

PROVIDER = "results.default"
NETWORK = NetworkRequest(PROVIDER, None)
SUBNET = {
    "name": "net1",
    "cidrBlock": "192.0.2.0/24,2001:db8:5::/64",
    "gateway": "192.0.2.254",
    "provider": PROVIDER,
    "routes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}, {"dst": "2001:db8:99::/48"}],
    "dns": {"nameservers": ["192.0.2.53"], "search": ["lab.example"]},
}


def assert_just_made(moment: datetime | None) -> None:
    """A creation time reads back as an aware moment of the last minute, on both databases
    (SQLite's naive digits are UTC: ipamd.store.schema.UtcDateTime)."""
    assert moment is not None and moment.utcoffset() is not None, moment
    assert abs(datetime.now(UTC) - moment) < timedelta(minutes=1), moment


def owner(pod: str) -> Owner:
    return Owner(PROVIDER, "lab", pod, "net1")


def request(pod: str, **fields: object) -> AddRequest:
    return AddRequest(owner=owner(pod), network=NETWORK, container_id=f"c-{pod}", **fields)  # type: ignore[arg-type]


def listen(ipam: Ipam) -> list[Event]:
    """The events the service tells its listeners from now on, in order."""
    events: list[Event] = []
    ipam.listeners.append(events.append)
    return events


async def test_allocate_answers_what_the_request_asked_for_with_the_subnets_settings(ipam: Ipam) -> None:
    subnet = await ipam.create_subnet(SUBNET)
    allocation = await ipam.allocate(request("web-0", pod_uid="uid-1"))

    assert isinstance(allocation, Allocation)
    assert (allocation.subnet, allocation.cluster, allocation.owner) == ("net1", "default", owner("web-0"))
    assert (allocation.container_id, allocation.pod_uid, allocation.network_key) == ("c-web-0", "uid-1", PROVIDER)
    assert allocation.addresses == (
        HeldAddress(family=4, address="192.0.2.1", prefixlen=24, gateway="192.0.2.254"),
        HeldAddress(family=6, address="2001:db8:5::2", prefixlen=64, gateway="2001:db8:5::1"),
    )
    assert [held.cidr for held in allocation.addresses] == ["192.0.2.1/24", "2001:db8:5::2/64"]
    assert allocation.address_texts == ["192.0.2.1", "2001:db8:5::2"]
    assert (
        allocation.routes == subnet.spec.routes == (Route("198.51.100.0/24", "192.0.2.254"), Route("2001:db8:99::/48"))
    )
    assert allocation.dns == {"nameservers": ["192.0.2.53"], "search": ["lab.example"]}
    # The daemon's node made it, through the API, from no pool, for nobody's hold.
    assert (allocation.node, allocation.origin, allocation.pool, allocation.hold, allocation.mac) == (
        "n1",
        "api",
        None,
        None,
        None,
    )
    assert_just_made(allocation.created_at)


async def test_a_static_request_with_a_mac_answers_them(ipam: Ipam) -> None:
    """The transaction path (static address, MAC) answers the same shape as the one-call path."""
    await ipam.create_subnet(SUBNET)
    allocation = await ipam.allocate(
        request("db-0", static_ips=("192.0.2.77",), mac="0a:58:c0:00:02:4d", hold="statefulset", origin="cni")
    )
    assert allocation.addresses[0] == HeldAddress(4, "192.0.2.77", 24, "192.0.2.254")
    assert [held.family for held in allocation.addresses] == [4, 6], "dual stack is all or nothing"
    assert (allocation.mac, allocation.hold, allocation.origin) == ("0a:58:c0:00:02:4d", "statefulset", "cni")
    assert await ipam.get_allocation(allocation.id) == allocation


async def test_every_read_of_an_allocation_answers_the_value_allocate_answered(ipam: Ipam) -> None:
    await ipam.create_subnet(SUBNET)
    allocation = await ipam.allocate(request("web-0"))
    other = await ipam.allocate(request("web-1"))

    assert await ipam.get_allocation(allocation.id) == allocation
    assert await ipam.find_owner(owner("web-0")) == allocation
    assert await ipam.find_owner(owner("nobody")) is None
    assert await ipam.list_allocations() == [allocation, other]
    assert await ipam.list_allocations(pod="web-1") == [other]
    assert [held.id for held in await ipam.allocations_for_network(PROVIDER)] == [allocation.id, other.id]
    # The attachment asking again gets the allocation it holds, unchanged.
    assert await ipam.allocate(request("web-0")) == allocation
    with pytest.raises(NotFound):
        await ipam.get_allocation(other.id + 1)


async def test_allocations_and_releases_are_told_to_listeners_with_the_values_answered(ipam: Ipam) -> None:
    await ipam.create_subnet(SUBNET)
    events = listen(ipam)
    first = await ipam.allocate(request("web-0"))
    assert await ipam.allocate(request("web-0")) == first  # nothing new: no event
    second = await ipam.allocate(request("web-1"))
    third = await ipam.allocate(request("web-2"))

    released = await ipam.release(first.id, reason="api")
    assert released == first
    assert await ipam.release_owner(owner("web-1"), reason="cni del") == [second]
    assert await ipam.release_owner(owner("web-1"), reason="cni del") == []
    assert await ipam.release_ids([(third.id, third.container_id)], reason="cni gc") == [third]
    assert events == [
        Allocated(first),
        Allocated(second),
        Allocated(third),
        Released(first, "api"),
        Released(second, "cni del"),
        Released(third, "cni gc"),
    ]
    assert await ipam.list_allocations() == []
    with pytest.raises(NotFound):
        await ipam.release(first.id, reason="api")


async def test_deleting_a_subnet_releases_its_allocations_and_says_how_many(ipam: Ipam) -> None:
    await ipam.create_subnet(SUBNET)
    for pod in ("web-0", "web-1"):
        await ipam.allocate(request(pod))
    assert await ipam.delete_subnet("net1", force=True) == 2
    assert await ipam.list_subnets() == []
    assert await ipam.list_allocations() == []


async def test_exhaustion_is_told_to_listeners_with_the_subnets_and_pool_it_found_full(ipam: Ipam) -> None:
    await ipam.create_subnet({"name": "tiny", "cidrBlock": "192.0.2.8/30", "provider": PROVIDER})
    await ipam.create_pool({"name": "one", "subnet": "tiny", "ips": ["192.0.2.10"]})
    events = listen(ipam)
    with pytest.raises(Exhausted):
        await ipam.allocate(request("a"))  # .9 is the gateway, .10 the pool's
    pooled = await ipam.allocate(request("b", pool_name="one"))
    with pytest.raises(Exhausted):
        await ipam.allocate(request("c", pool_name="one"))
    assert events == [ExhaustedSpace(subnets=("tiny",)), Allocated(pooled), ExhaustedSpace(("tiny",), pool="one")]


async def test_a_subnets_usage_follows_allocations_and_releases(ipam: Ipam) -> None:
    created = await ipam.create_subnet({**SUBNET, "excludeIps": ["192.0.2.100..192.0.2.109"]})
    assert isinstance(created, Subnet)
    assert (created.name, created.origin) == ("net1", "api")
    assert_just_made(created.created_at)
    assert [usage.family for usage in created.usage] == [4, 6]
    before = family_usage(created, 4)
    # 254 addresses besides network and broadcast; the gateway counts as excluded.
    assert (before.total, before.used, before.excluded, before.reserved, before.pooled) == (254, 0, 11, 0, 0)
    assert before.available == 243
    assert before.free == ((0xC0000201, 0xC0000263), (0xC000026E, 0xC00002FD))
    assert created.used == 0

    allocation = await ipam.allocate(request("web-0"))
    during = await ipam.get_subnet("net1")
    assert (family_usage(during, 4).used, family_usage(during, 4).available) == (1, 242)
    assert (family_usage(during, 6).used, family_usage(during, 6).available) == (
        1,
        family_usage(created, 6).available - 1,
    )
    assert family_usage(during, 4).free[0] == (0xC0000202, 0xC0000263)
    assert during.used == 2
    assert await ipam.list_subnets() == [during]

    await ipam.release(allocation.id, reason="api")
    after = await ipam.get_subnet("net1")
    assert (family_usage(after, 4).used, family_usage(after, 4).available) == (0, 243)
    assert after.used == 0
    assert after.spec == created.spec


async def test_patching_a_subnet_answers_the_subnet_as_it_now_is(ipam: Ipam) -> None:
    await ipam.create_subnet(SUBNET)
    patched = await ipam.patch_subnet("net1", {"priority": 7, "excludeIps": ["192.0.2.2"]})
    assert (patched.spec.priority, patched.spec.exclude_ips) == (7, ("192.0.2.2",))
    assert family_usage(patched, 4).excluded == 2  # and the gateway
    assert await ipam.get_subnet("net1") == patched


async def test_a_pools_capacity_use_and_free_members(ipam: Ipam) -> None:
    # IPv4 only: a dual-stack allocation from an IPv4 pool takes its IPv6 address from the
    # subnet's dynamic space, and leaves the pool when the pool is replaced.
    await ipam.create_subnet({"name": "net1", "cidrBlock": "192.0.2.0/24", "provider": PROVIDER})
    created = await ipam.create_pool({"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.53"]})
    assert isinstance(created, Pool)
    assert (created.name, created.spec.subnet, created.origin) == ("db", "net1", "api")
    assert_just_made(created.created_at)
    assert (created.capacity, created.used, created.available) == (4, 0, 4)
    assert created.free == ((4, ((0xC0000232, 0xC0000235),)),)
    # The pool's members are pooled in the subnet's usage, out of its dynamic space.
    assert family_usage(await ipam.get_subnet("net1"), 4).pooled == 4

    allocation = await ipam.allocate(request("db-0", pool_name="db"))
    assert (allocation.pool, allocation.address_texts[0]) == ("db", "192.0.2.50")
    pool = await ipam.get_pool("db")
    assert (pool.capacity, pool.used, pool.available) == (4, 1, 3)
    assert pool.free == ((4, ((0xC0000233, 0xC0000235),)),)
    assert await ipam.list_pools() == [pool]

    replaced, created_now = await ipam.replace_pool(
        "db", {"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.55"]}
    )
    assert not created_now
    assert (replaced.capacity, replaced.used, replaced.available) == (6, 1, 5)
    assert await ipam.get_pool("db") == replaced

    await ipam.release(allocation.id, reason="api")
    assert (await ipam.get_pool("db")).available == 6
    assert await ipam.delete_pool("db") is None
    assert await ipam.list_pools() == []


async def test_reservations_answer_what_was_reserved(ipam: Ipam) -> None:
    await ipam.create_subnet(SUBNET)
    router = await ipam.create_reservation(
        {"subnet": "net1", "address": "192.0.2.9", "mac": "0a:58:c0:00:02:09", "owner": "lab/router", "note": "edge"}
    )
    assert isinstance(router, Reservation)
    assert (router.subnet, router.family, router.address, router.mac, router.owner, router.note, router.origin) == (
        "net1",
        4,
        "192.0.2.9",
        "0a:58:c0:00:02:09",
        "lab/router",
        "edge",
        "api",
    )
    assert_just_made(router.created_at)
    v6 = await ipam.create_reservation({"subnet": "net1", "address": "2001:db8:5::9"})
    assert (v6.family, v6.address, v6.mac, v6.owner, v6.note) == (6, "2001:db8:5::9", None, None, None)
    assert v6.id > router.id

    assert await ipam.get_reservation(router.id) == router
    assert await ipam.list_reservations() == [router, v6]
    subnet = await ipam.get_subnet("net1")
    assert (family_usage(subnet, 4).reserved, family_usage(subnet, 6).reserved) == (1, 1)

    assert await ipam.delete_reservation(router.id) is None
    assert await ipam.list_reservations() == [v6]
    with pytest.raises(NotFound):
        await ipam.get_reservation(router.id)


async def test_an_addresss_history_lists_its_holders_and_spans_with_their_times(ipam: Ipam) -> None:
    # A /30 whose one address besides the gateway (.9) is .10: every allocation takes it.
    await ipam.create_subnet({"name": "tiny", "cidrBlock": "192.0.2.8/30", "provider": PROVIDER})
    first = await ipam.allocate(request("a"))
    await ipam.release(first.id, reason="api")
    second = await ipam.allocate(request("b"))
    assert first.address_texts == second.address_texts == ["192.0.2.10"]

    info = await ipam.ip_info("192.0.2.10")
    assert isinstance(info, AddressHistory)
    assert (info.address, info.holders, info.continue_token) == ("192.0.2.10", (second,), None)
    done, holding = info.spans
    assert (done.allocation_id, done.pod, done.container_id, done.release_reason) == (first.id, "a", "c-a", "api")
    assert (holding.allocation_id, holding.pod, holding.end, holding.release_reason) == (second.id, "b", None, None)
    for span in info.spans:
        assert (span.subnet, span.cluster, span.network_key, span.namespace, span.interface) == (
            "tiny",
            "default",
            PROVIDER,
            "lab",
            "net1",
        )
    assert isinstance(done.start, datetime) and isinstance(done.end, datetime) and isinstance(holding.start, datetime)
    assert done.start <= done.end <= holding.start

    nobody = await ipam.ip_info("192.0.2.200")
    assert (nobody.holders, nobody.spans, nobody.continue_token) == ((), (), None)


async def test_the_etag_names_the_pod_instance_not_the_sandbox(ipam: Ipam) -> None:
    await ipam.create_subnet(SUBNET)
    first = await ipam.allocate(request("web-0", pod_uid="uid-1"))
    assert first.etag.startswith('"') and first.etag.endswith('"')
    # A new sandbox of the same pod keeps the tag.
    sandbox = await ipam.allocate(
        AddRequest(owner=owner("web-0"), network=NETWORK, container_id="c-new", pod_uid="uid-1")
    )
    assert (sandbox.id, sandbox.container_id, sandbox.etag) == (first.id, "c-new", first.etag)
    # Another pod instance (a new UID) taking the row over changes it.
    instance = await ipam.allocate(
        AddRequest(owner=owner("web-0"), network=NETWORK, container_id="c-3", pod_uid="uid-2")
    )
    assert (instance.id, instance.pod_uid) == (first.id, "uid-2")
    assert instance.etag != first.etag
    assert (await ipam.get_allocation(first.id)).etag == instance.etag
    # Another row for the same attachment is another holder, whatever else it shares.
    await ipam.release(first.id, reason="api")
    again = await ipam.allocate(request("web-0", pod_uid="uid-2"))
    assert again.id != first.id and again.etag != instance.etag


async def test_the_rest_api_answers_the_wire_form_of_the_services_values(rest: Rest) -> None:
    """Only ipamd.api.wire turns the values into JSON: what a GET answers is that, exactly."""
    ipam = rest.ipam
    await ipam.create_subnet(SUBNET)
    await ipam.create_pool({"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.53"]})
    reservation = await ipam.create_reservation({"subnet": "net1", "address": "192.0.2.9", "note": "edge"})
    allocation = await ipam.allocate(request("web-0", pod_uid="uid-1"))

    status, body, headers = await rest.call("GET", f"/v1/allocations/{allocation.id}")
    assert (status, body, headers["ETag"]) == (200, wire.allocation(allocation), allocation.etag)
    assert await rest.ok("GET", "/v1/subnets/net1") == wire.subnet(await ipam.get_subnet("net1"))
    assert await rest.ok("GET", "/v1/pools/db") == wire.pool(await ipam.get_pool("db"))
    assert await rest.ok("GET", f"/v1/reservations/{reservation.id}") == wire.reservation(reservation)
    address = allocation.address_texts[0]
    assert await rest.ok("GET", f"/v1/ips/{address}") == wire.address_history(await ipam.ip_info(address))
