"""The allocation and release commands of ipamd.store.procedures: what they decide inside
one call, on both databases, and the checks PostgreSQL's release makes on what the daemon
read before it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.core.placement import RULE_FIELDS
from ipamd.core.subnet import canonical_subnet
from ipamd.service import AddRequest, Ipam
from ipamd.store import procedures
from tests.support.inprocess import Rest, opened_ipam
from tests.support.results import family_usage

PROVIDER = "calls.default"


def add(pod: str) -> AddRequest:
    return AddRequest(
        owner=Owner(PROVIDER, "lab", pod, "net1"), network=NetworkRequest(PROVIDER, None), container_id=f"c-{pod}"
    )


async def test_dual_stack_takes_both_families_or_moves_to_the_next_subnet(rest: Rest) -> None:
    # IPv6 runs out first in "small" (a /126: ::1 is the gateway, ::2 and ::3 are free).
    await rest.ok(
        "POST", "/v1/subnets", {"name": "small", "cidrBlock": "192.0.2.0/24,2001:db8::/126", "provider": PROVIDER}
    )
    await rest.ok(
        "POST",
        "/v1/subnets",
        {"name": "next", "cidrBlock": "198.51.100.0/24,2001:db8:1::/120", "provider": PROVIDER, "priority": 1},
    )
    got = [await rest.ipam.allocate(add(f"p{n}")) for n in range(4)]
    assert [allocation.subnet for allocation in got] == ["small", "small", "next", "next"]
    assert [allocation.address_texts for allocation in got[:3]] == [
        ["192.0.2.2", "2001:db8::2"],
        ["192.0.2.3", "2001:db8::3"],
        ["198.51.100.2", "2001:db8:1::2"],
    ]
    # No IPv4 address of "small" was taken without its IPv6 partner.
    usage = (await rest.ok("GET", "/v1/subnets/small"))["usage"]
    assert (usage["v4"]["used"], usage["v6"]["used"]) == (2, 2)


async def test_an_add_of_a_new_sandbox_keeps_the_addresses_and_refreshes_its_facts(rest: Rest) -> None:
    await rest.ok("POST", "/v1/subnets", {"name": "one", "cidrBlock": "192.0.2.0/24", "provider": PROVIDER})
    first = await rest.ipam.allocate(add("p"))
    again = await rest.ipam.allocate(
        AddRequest(
            owner=Owner(PROVIDER, "lab", "p", "net1"),
            network=NetworkRequest(PROVIDER, None),
            container_id="c-new",
            netns="/run/netns/new",
        )
    )
    assert (again.id, again.addresses, again.container_id) == (first.id, first.addresses, "c-new")
    history = (await rest.ok("GET", "/v1/ips/192.0.2.2"))["history"]
    assert [(span["pod"], span["to"]) for span in history] == [("p", None)]


def test_postgresql_releases_only_what_it_read_under_the_spec_it_read(postgres_url: str) -> None:
    """ipamd_release refuses a decision taken on an older subnet revision ('stale') or on a
    row taken over since ('changed'), and then changes nothing."""

    async def scenario() -> None:
        async with opened_ipam(postgres_url) as ipam:
            database = ipam.database
            await ipam.create_subnet({"name": "one", "cidrBlock": "192.0.2.0/24", "provider": PROVIDER})
            allocation = await ipam.allocate(add("p"))
            [row] = await database.call(procedures.FOR_RELEASE_BY_ID, {"allocation_id": allocation.id})
            params = procedures.release_params(row, give_back={4: None}, reason="test")

            await ipam.patch_subnet("one", {"excludeIps": ["192.0.2.200"]})
            [answer] = await database.call(procedures.RELEASE, params)
            assert answer.outcome == "stale"
            [reread] = await database.call(procedures.FOR_RELEASE_BY_ID, {"allocation_id": allocation.id})
            assert reread.subnet_revision == row.subnet_revision + 1

            [answer] = await database.call(
                procedures.RELEASE,
                {
                    **procedures.release_params(reread, give_back={4: None}, reason="test"),
                    "container_id": "another-sandbox",
                },
            )
            assert answer.outcome == "changed"
            assert [held.id for held in await ipam.list_allocations()] == [allocation.id]

            # The service reads again and releases under the current revision.
            released = await ipam.release(allocation.id, reason="test")
            assert released.addresses == allocation.addresses
            assert family_usage(await ipam.get_subnet("one"), 4).used == 0

    asyncio.run(scenario())


async def test_a_release_reading_no_pool_rules_keeps_the_pools_cached_spec(rest: Rest) -> None:
    """PostgreSQL's release reads a pool's members without its rules (ipamd_pools_of): the
    parsed pool stays cached for the next allocation instead of flipping with each call."""
    spec = canonical_subnet({"name": "one", "cidrBlock": "192.0.2.0/24", "provider": PROVIDER})
    stored = {"pool_id": 7, "name": "web", "ips": ["192.0.2.10..192.0.2.19"]}
    rules = {"namespaces": ["lab"]}

    allocating = rest.ipam._pool_spec(spec, **stored, rules=rules)
    releasing = rest.ipam._pool_spec(spec, **stored, rules=None)
    assert allocating.placement.binds and not releasing.placement.binds
    assert allocating.members == releasing.members
    assert rest.ipam._pool_spec(spec, **stored, rules=rules) is allocating
    assert rest.ipam._pool_spec(spec, **stored, rules=None) is releasing


# One binding value of each placement rule (ipamd.core.placement.RULE_FIELDS).
BINDING_RULES = {
    "namespaces": ["lab"],
    "nodeNames": ["n1"],
    "clusters": ["default"],
    "namespaceSelector": {},
    "nodeSelector": {},
    "podSelector": {},
}


def test_every_rule_field_has_a_binding_example() -> None:
    # A new rule field belongs here, and in the key list of PostgreSQL's ipamd_allocate (a migration).
    assert set(BINDING_RULES) == set(RULE_FIELDS)


@pytest.mark.parametrize("rule", sorted(BINDING_RULES))
async def test_the_one_call_walk_stops_at_a_subnet_with_any_rule(ipam: Ipam, rule: str) -> None:
    """Whatever the rule, even one this pod would meet, the call writes nothing and answers
    'placement': the rules are the daemon's to apply (migrations 0011 and 0012)."""
    await ipam.create_subnet(
        {"name": "ruled", "cidrBlock": "192.0.2.0/24", "provider": PROVIDER, rule: BINDING_RULES[rule]}
    )
    [row] = await ipam.database.call(
        procedures.ALLOCATE,
        procedures.allocate_params(
            subnet_ids=None,
            family=None,
            owner=Owner(PROVIDER, "lab", "p", "net1"),
            cluster=ipam.cluster,
            container_id="c-p",
            pod_uid=None,
            netns=None,
            node="n1",
            origin="cni",
            hold=None,
            check_uid=False,
            replaces_uid=None,
            deadline=datetime.now(UTC) + timedelta(minutes=1),
        ),
    )
    assert row.outcome == "placement"
    assert await ipam.list_allocations() == []
