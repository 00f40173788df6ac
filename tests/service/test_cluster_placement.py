"""The placement rule ``clusters`` (issue 16): several clusters sharing one database, each
daemon allocating only from the subnets and pools that list its cluster (or list none).

The dynamic ADDs here name only an owner and a network, so they take the one-call path
(ipamd.store.procedures.ALLOCATE; PostgreSQL's ipamd_allocate, migration 0012), whose walk
must stop at a subnet restricted to some clusters and leave the choice to the daemon."""

from __future__ import annotations

import pytest

from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.errors import NotAdmitted
from ipamd.service import AddRequest
from tests.support.inprocess import opened_ipam

PROVIDER = "shared.default"
EAST_ONLY = {"name": "east-only", "cidrBlock": "192.0.2.0/24", "provider": PROVIDER, "clusters": ["east"]}
SHARED = {"name": "shared", "cidrBlock": "198.51.100.0/24", "provider": PROVIDER, "priority": 1}


def add(pod: str, *, pool: str | None = None) -> AddRequest:
    return AddRequest(
        owner=Owner(PROVIDER, "lab", pod, "net1"),
        network=NetworkRequest(PROVIDER, None),
        container_id=f"c-{pod}",
        pool_name=pool,
    )


async def test_a_subnet_of_another_cluster_refuses_an_add_and_the_next_subnet_serves_it(database_url: str) -> None:
    async with opened_ipam(database_url, node="n1", cluster="west") as west:
        await west.join_cluster()
        await west.create_subnet(EAST_ONLY)
        with pytest.raises(NotAdmitted) as refused:
            await west.allocate(add("web-0"))
        assert refused.value.code == "not_admitted"
        assert refused.value.message == (
            f"no subnet of network {PROVIDER} admits lab/web-0 (namespace lab, node n1): "
            "subnet east-only: clusters [east] does not include cluster west"
        )
        assert refused.value.details == {"subnets": ["east-only"]}

        # East's subnet comes first by priority; west's ADD walks past it to the next one.
        await west.create_subnet(SHARED)
        allocation = await west.allocate(add("web-0"))
        assert (allocation.subnet, allocation.address_texts) == ("shared", ["198.51.100.2"])
        assert [a.subnet for a in await west.list_allocations()] == ["shared"]


async def test_a_pool_of_another_cluster_refuses_an_add_naming_it(database_url: str) -> None:
    async with opened_ipam(database_url, node="n1", cluster="west") as west:
        await west.join_cluster()
        await west.create_subnet(SHARED)
        await west.create_pool({"name": "east-db", "subnet": "shared", "ips": ["198.51.100.50"], "clusters": ["east"]})
        with pytest.raises(NotAdmitted) as refused:
            await west.allocate(add("db-0", pool="east-db"))
        assert refused.value.message == (
            "pool east-db does not admit lab/db-0 (namespace lab, node n1): "
            "clusters [east] does not include cluster west"
        )
        assert refused.value.details == {"pools": ["east-db"]}
        assert await west.list_allocations() == []


async def test_two_clusters_on_one_database_each_take_their_own_subnets_and_pools(database_url: str) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("SQLite serves one cluster: a second one holding allocations is refused (join_cluster)")
    async with opened_ipam(database_url, node="n1", cluster="east") as east:
        async with opened_ipam(database_url, node="n1", cluster="west") as west:
            await east.join_cluster()
            await west.join_cluster()
            await east.create_subnet(EAST_ONLY)
            await east.create_subnet(SHARED)
            await east.create_pool(
                {"name": "east-db", "subnet": "shared", "ips": ["198.51.100.50"], "clusters": ["east"]}
            )

            # The same pod name in both clusters: each gets its own attachment.
            from_east = await east.allocate(add("web-0"))
            from_west = await west.allocate(add("web-0"))
            assert (from_east.subnet, from_east.address_texts) == ("east-only", ["192.0.2.2"])
            assert (from_west.subnet, from_west.address_texts) == ("shared", ["198.51.100.2"])

            pooled = await east.allocate(add("db-0", pool="east-db"))
            assert pooled.address_texts == ["198.51.100.50"]
            with pytest.raises(NotAdmitted, match="^pool east-db does not admit lab/db-1 .*cluster west$"):
                await west.allocate(add("db-1", pool="east-db"))

            # Lifting the rule opens the subnet to west too.
            await east.patch_subnet("east-only", {"clusters": None})
            assert (await west.allocate(add("web-1"))).subnet == "east-only"
