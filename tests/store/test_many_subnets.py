"""Choosing among many subnets of one provider costs the same few statements whatever
their number, and exhaustion names a few of them (issue 18, D16)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.errors import Exhausted, NotFound
from ipamd.service import AddRequest, Ipam
from ipamd.store.database import SqliteDatabase, open_database
from tests.support.inprocess import Rest

PROVIDER = "many.default"


def add(pod: str, **fields: object) -> AddRequest:
    return AddRequest(owner=Owner(PROVIDER, "lab", pod, "eth1"), network=NetworkRequest(PROVIDER, None), **fields)  # type: ignore[arg-type]


def subnet(index: int, *, priority: int = 0) -> dict[str, object]:
    # /30s: one assignable address each (.1 is the gateway), so filling one takes one ADD.
    return {
        "name": f"s{index:04d}",
        "cidrBlock": f"198.18.{index // 64}.{(index % 64) * 4}/30",
        "provider": PROVIDER,
        "priority": priority,
    }


async def test_the_first_subnet_with_space_in_priority_order_serves(rest: Rest) -> None:
    for index in range(12):
        await rest.ok("POST", "/v1/subnets", subnet(index, priority=1 if index % 2 else 0))
    # Priority 0 first (s0000, s0002, ... s0010), then priority 1, by name within a priority.
    got = [(await rest.ipam.allocate(add(f"p{n}"))).subnet for n in range(12)]
    assert got == [f"s{i:04d}" for i in (0, 2, 4, 6, 8, 10, 1, 3, 5, 7, 9, 11)]

    status, answer, _ = await rest.call(
        "POST",
        "/v1/cni/add",
        {
            "containerId": "c-full",
            "ifName": "eth1",
            "network": "many",
            "ipam": {"type": "ipamd", "provider": PROVIDER},
            "podNamespace": "lab",
            "podName": "full",
        },
    )
    assert (status, answer["error"]["code"]) == (409, "exhausted")
    assert (
        answer["error"]["message"]
        == f"no free address in subnet s0000, s0002, s0004, s0006, s0008 and 7 more (network {PROVIDER})"
    )
    assert answer["error"]["details"] == {"subnets": ["s0000", "s0002", "s0004", "s0006", "s0008"], "more": 7}

    # A release in a late subnet is found again past the full ones.
    released = next(a for a in (await rest.ok("GET", "/v1/allocations?subnet=s0007"))["items"])
    await rest.ok("DELETE", f"/v1/allocations/{released['id']}")
    assert (await rest.ipam.allocate(add("again"))).subnet == "s0007"


def test_an_add_reads_the_same_statements_with_3_or_300_subnets(tmp_path: Path) -> None:
    """Statement counts, not timings: the dynamic path must not read every subnet of the provider."""

    async def statements_per_add(subnets: int, full: int) -> int:
        with tempfile.TemporaryDirectory() as directory:
            database = open_database(f"sqlite:///{Path(directory) / 'ipam.db'}")
            await database.upgrade()
            ipam = Ipam(database)
            try:
                for index in range(subnets):
                    await ipam.create_subnet(subnet(index))
                for n in range(full):  # the first ``full`` subnets (in order) fill up
                    await ipam.allocate(add(f"fill-{n}"))
                assert isinstance(database, SqliteDatabase)
                seen: list[str] = []

                def trace(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
                    # SQLite's own trace: statements run through SQLAlchemy or straight on
                    # the driver (ipamd.store.procedures) alike.
                    dbapi_connection.set_trace_callback(seen.append)

                database.engine.dispose()
                sa.event.listen(database.engine, "connect", trace)
                allocation = await ipam.allocate(add("measured"))
                assert allocation.subnet == f"s{full:04d}"
                assert not any("FROM subnets" in s and "LIMIT" not in s and "WHERE s.id = " not in s for s in seen), (
                    seen
                )
                # One query finds the subnet (SQLite takes no row lock); placement rules cost a
                # provider without them nothing (the walk would stop at one: migration 0011).
                assert sum("FROM subnets" in s for s in seen) == 1, seen
                return len(seen)
            finally:
                await ipam.close()

    async def scenario() -> None:
        few = await statements_per_add(3, 1)
        many = await statements_per_add(300, 150)
        assert few == many, (few, many)

    asyncio.run(scenario())


async def test_exhausting_a_provider_names_all_subnets_when_they_are_few(ipam: Ipam) -> None:
    for index in range(2):
        await ipam.create_subnet(subnet(index))
    await ipam.allocate(add("a"))
    await ipam.allocate(add("b"))
    with pytest.raises(Exhausted) as refused:
        await ipam.allocate(add("c"))
    assert (refused.value.message, refused.value.details) == (
        f"no free address in subnet s0000, s0001 (network {PROVIDER})",
        {"subnets": ["s0000", "s0001"]},
    )


async def test_a_provider_without_subnets_is_not_found_whatever_the_request(ipam: Ipam) -> None:
    """The check runs only once an ADD finds no subnet, off the path of an ADD that succeeds."""
    await ipam.create_subnet({**subnet(0), "provider": "other.default"})
    await ipam.create_pool({"name": "other-pool", "subnet": "s0000", "ips": ["198.18.0.2"]})
    for request in (add("dynamic"), add("static", static_ips=("198.18.0.2",)), add("pooled", pool_name="other-pool")):
        with pytest.raises(NotFound) as refused:
            await ipam.allocate(request)
        assert (
            refused.value.message == f"no subnet serves provider {PROVIDER}; create one with provider {PROVIDER!r}"
        ), request.owner.pod
