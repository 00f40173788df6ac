"""Administrative changes keep what the counts say true, on both databases: a pool replaced
with its members keeps its holders, and a subnet deleted with its allocations tells the
listeners (the metrics' release counter) of each release."""

from __future__ import annotations

from ipamd.core.allocation import Owner
from ipamd.core.model import Event, Released
from ipamd.core.nad import NetworkRequest
from ipamd.service import AddRequest, Ipam

PROVIDER = "changes.default"
NETWORK = NetworkRequest(PROVIDER, None)


def request(pod: str, **fields: object) -> AddRequest:
    return AddRequest(owner=Owner(PROVIDER, "lab", pod, "net1"), network=NETWORK, container_id=f"c-{pod}", **fields)  # type: ignore[arg-type]


async def test_replacing_a_single_family_pool_keeps_a_dual_stack_holder(ipam: Ipam) -> None:
    """A dual-stack pod takes its IPv4 address from an IPv4-only pool and its IPv6 one from
    the subnet: the IPv6 address was never the pool's to hold, so replacing the pool with
    the same members must keep the allocation counted among the pool's holders."""
    await ipam.create_subnet({"name": "net1", "cidrBlock": "192.0.2.0/24,2001:db8:7::/64", "provider": PROVIDER})
    members = {"name": "db", "subnet": "net1", "ips": ["192.0.2.10..192.0.2.13"]}
    await ipam.create_pool(members)
    held = await ipam.allocate(request("db-0", pool_name="db"))
    assert held.pool == "db"
    assert sorted(address.family for address in held.addresses) == [4, 6]

    replaced, created = await ipam.replace_pool("db", members)

    assert not created
    assert (replaced.used, replaced.available, replaced.capacity) == (1, 3, 4)
    assert (await ipam.get_allocation(held.id)).pool == "db"


async def test_replacing_a_pool_without_an_address_drops_only_that_holder(ipam: Ipam) -> None:
    await ipam.create_subnet({"name": "net1", "cidrBlock": "192.0.2.0/24,2001:db8:7::/64", "provider": PROVIDER})
    await ipam.create_pool({"name": "db", "subnet": "net1", "ips": ["192.0.2.10..192.0.2.13"]})
    first = await ipam.allocate(request("db-0", pool_name="db"))
    second = await ipam.allocate(request("db-1", pool_name="db"))
    kept, dropped = sorted((first, second), key=lambda a: a.addresses[0].address != "192.0.2.10")
    assert kept.addresses[0].address == "192.0.2.10"

    replaced, _ = await ipam.replace_pool("db", {"name": "db", "subnet": "net1", "ips": ["192.0.2.10"]})

    assert (replaced.used, replaced.capacity) == (1, 1)
    assert (await ipam.get_allocation(kept.id)).pool == "db"
    # Still held (a replace never takes an address from a running workload), no longer the pool's.
    assert (await ipam.get_allocation(dropped.id)).pool is None


async def test_deleting_a_subnet_with_its_allocations_tells_each_release(ipam: Ipam) -> None:
    await ipam.create_subnet({"name": "net1", "cidrBlock": "198.51.100.0/24", "provider": PROVIDER})
    allocations = [await ipam.allocate(request(pod)) for pod in ("a", "b")]
    events: list[Event] = []
    ipam.listeners.append(events.append)

    released = await ipam.delete_subnet("net1", force=True)

    assert released == 2
    assert all(isinstance(event, Released) for event in events)
    in_order = sorted(events, key=lambda event: event.allocation.id if isinstance(event, Released) else 0)
    assert in_order == [Released(allocation, "subnet deleted") for allocation in allocations]
