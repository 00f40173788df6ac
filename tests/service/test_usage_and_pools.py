"""Reserved pool members and the usage counts (issue 18, D6 and D14)."""

from __future__ import annotations

from tests.support.inprocess import Rest


def owner(pod: str) -> dict[str, str]:
    return {"namespace": "lab", "pod": pod, "interface": "eth1"}


def usage_adds_up(usage: dict[str, int]) -> bool:
    return (
        usage["used"] + usage["reserved"] + usage["pooled"] + usage["excluded"] + usage["available"] == usage["total"]
    )


async def test_a_released_reserved_pool_member_stays_out_of_the_pool(rest: Rest) -> None:
    from ipamd.core.allocation import Owner
    from ipamd.core.nad import NetworkRequest
    from ipamd.service import AddRequest

    await rest.ok("POST", "/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.0/24", "provider": "net1.default"})
    await rest.ok("POST", "/v1/pools", {"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.53"]})
    await rest.ok("POST", "/v1/reservations", {"subnet": "net1", "address": "192.0.2.50", "owner": "lab/router"})
    # The reservation's owner takes it statically, then gives it back.
    router = await rest.ok(
        "POST", "/v1/allocations", {"subnet": "net1", "owner": owner("router"), "address": "192.0.2.50"}
    )
    await rest.ok("DELETE", f"/v1/allocations/{router['id']}")
    pool = await rest.ok("GET", "/v1/pools/db")
    assert pool["usage"]["freeRanges"] == ["192.0.2.51-192.0.2.53"]

    network = NetworkRequest("net1.default", None)
    got = []
    for pod in ("a", "b", "c"):
        allocation = await rest.ipam.allocate(
            AddRequest(owner=Owner("net1.default", "lab", pod, "eth1"), network=network, pool_name="db")
        )
        got.append(allocation.addresses[0].address)
    assert got == ["192.0.2.51", "192.0.2.52", "192.0.2.53"]
    usage = (await rest.ok("GET", "/v1/subnets/net1"))["usage"]["v4"]
    assert (usage["used"], usage["reserved"], usage["pooled"]) == (3, 1, 0)
    assert usage_adds_up(usage), usage


async def test_pool_allocation_skips_a_reserved_member_left_in_its_free_list(rest: Rest) -> None:
    """A database written before reserved members were kept out of the pool: the ADD takes
    the reserved member out of the free list and goes on to the next one."""
    import sqlalchemy as sa

    from ipamd.core.allocation import Owner
    from ipamd.core.nad import NetworkRequest
    from ipamd.service import AddRequest
    from ipamd.store import space
    from ipamd.store.schema import pools

    await rest.ok("POST", "/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.0/24", "provider": "net1.default"})
    await rest.ok("POST", "/v1/pools", {"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.52"]})
    await rest.ok("POST", "/v1/reservations", {"subnet": "net1", "address": "192.0.2.50"})

    def put_back(conn: sa.Connection) -> None:
        pool_id = conn.execute(sa.select(pools.c.id)).scalar_one()
        subnet_id = conn.execute(sa.select(pools.c.subnet_id)).scalar_one()
        space.give_back(conn, subnet_id=subnet_id, family=4, address=0xC0000232, pool_id=pool_id)

    await rest.ipam._write(put_back)
    network = NetworkRequest("net1.default", None)
    allocation = await rest.ipam.allocate(
        AddRequest(owner=Owner("net1.default", "lab", "a", "eth1"), network=network, pool_name="db")
    )
    assert allocation.addresses[0].address == "192.0.2.51"
    assert (await rest.ok("GET", "/v1/pools/db"))["usage"]["freeRanges"] == ["192.0.2.52"]


async def test_used_and_pooled_are_disjoint(rest: Rest) -> None:
    from ipamd.core.allocation import Owner
    from ipamd.core.nad import NetworkRequest
    from ipamd.service import AddRequest

    await rest.ok(
        "POST",
        "/v1/subnets",
        {
            "name": "net1",
            "cidrBlock": "192.0.2.0/28",
            "provider": "net1.default",
            "excludeIps": ["192.0.2.2..192.0.2.4"],
        },
    )
    await rest.ok("POST", "/v1/pools", {"name": "p", "subnet": "net1", "ips": ["192.0.2.3..192.0.2.6"]})
    network = NetworkRequest("net1.default", None)
    await rest.ipam.allocate(
        AddRequest(owner=Owner("net1.default", "lab", "a", "eth1"), network=network, pool_name="p")
    )
    usage = (await rest.ok("GET", "/v1/subnets/net1"))["usage"]["v4"]
    # 14 allocatable: gateway .1 and .2 excluded; .3 held from the pool; .4-.6 pooled; .7-.14 free.
    assert {k: usage[k] for k in ("total", "used", "pooled", "reserved", "excluded", "available")} == {
        "total": 14,
        "used": 1,
        "pooled": 3,
        "reserved": 0,
        "excluded": 2,
        "available": 8,
    }
