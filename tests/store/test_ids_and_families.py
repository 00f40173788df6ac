"""Allocation ids are never reused, DELETE can be made conditional, and IPv4 and IPv6
addresses that are the same integer never collide (issue 18, D1 and D12)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import netaddr
import sqlalchemy as sa
from alembic import command

from ipamd.core.addresses import ip_text
from ipamd.store.database import open_database
from ipamd.store.engine import alembic_config, head_revision
from tests.support.inprocess import Rest

NET = {"name": "net1", "cidrBlock": "192.0.2.0/24", "provider": "net1.default"}


def owner(pod: str) -> dict[str, str]:
    return {"namespace": "lab", "pod": pod, "interface": "eth1"}


async def test_a_stale_delete_never_releases_the_next_holder(rest: Rest) -> None:
    # One assignable address (192.0.2.2): b gets z's address back, and must not get its id.
    await rest.ok("POST", "/v1/subnets", {**NET, "cidrBlock": "192.0.2.0/30"})
    z = await rest.ok("POST", "/v1/allocations", {"subnet": "net1", "owner": owner("z")})
    assert (await rest.ok("DELETE", f"/v1/allocations/{z['id']}"))["id"] == z["id"]
    b = await rest.ok("POST", "/v1/allocations", {"subnet": "net1", "owner": owner("b")})
    assert b["id"] > z["id"], "a released id was given to the next allocation"
    assert b["addresses"] == z["addresses"]  # the address is reused, the id is not

    status, answer, _ = await rest.call("DELETE", f"/v1/allocations/{z['id']}")
    assert (status, answer["error"]["message"]) == (404, f"allocation {z['id']} not found")
    held = (await rest.ok("GET", "/v1/allocations"))["items"]
    assert [(a["id"], a["owner"]["pod"]) for a in held] == [(b["id"], "b")]


async def test_reservation_ids_are_not_reused_either(rest: Rest) -> None:
    await rest.ok("POST", "/v1/subnets", NET)
    first = await rest.ok("POST", "/v1/reservations", {"subnet": "net1", "address": "192.0.2.7"})
    await rest.ok("DELETE", f"/v1/reservations/{first['id']}")
    second = await rest.ok("POST", "/v1/reservations", {"subnet": "net1", "address": "192.0.2.8"})
    assert second["id"] > first["id"]
    status, _, _ = await rest.call("DELETE", f"/v1/reservations/{first['id']}")
    assert status == 404
    assert [r["address"] for r in (await rest.ok("GET", "/v1/reservations"))["items"]] == ["192.0.2.8"]


async def test_delete_with_if_match_releases_only_the_allocation_that_was_read(rest: Rest) -> None:
    await rest.ok("POST", "/v1/subnets", NET)
    status, created, headers = await rest.call("POST", "/v1/allocations", {"subnet": "net1", "owner": owner("a")})
    assert status == 201
    path = f"/v1/allocations/{created['id']}"
    status, _, read = await rest.call("GET", path)
    assert status == 200 and read["ETag"] == headers["ETag"] and read["ETag"].startswith('"')

    status, answer, _ = await rest.call("DELETE", path, If_Match='"0123456789abcdef0123"')
    assert status == 412, answer
    assert answer["error"]["code"] == "precondition_failed"
    assert answer["error"]["message"].startswith(
        f'allocation {created["id"]} is now {read["ETag"]}, not "0123456789abcdef0123"'
    )
    assert (await rest.ok("GET", path))["addresses"] == created["addresses"], "a failed precondition changed nothing"

    status, answer, _ = await rest.call("DELETE", path, If_Match="no-quotes")
    assert (status, answer["error"]["message"]) == (
        400,
        'If-Match: expected "*" or entity tags in double quotes, as the ETag header gives them',
    )

    released = await rest.ok("DELETE", path, If_Match=f'"other", {read["ETag"]}')
    assert released["id"] == created["id"]
    status, _, _ = await rest.call("DELETE", path, If_Match=read["ETag"])
    assert status == 404


async def test_the_etag_changes_when_the_row_passes_to_another_pod_instance(rest: Rest) -> None:
    from ipamd.core.allocation import Owner
    from ipamd.core.nad import NetworkRequest
    from ipamd.service import AddRequest

    await rest.ok("POST", "/v1/subnets", NET)
    network = NetworkRequest("net1.default", None)
    attachment = Owner("net1.default", "lab", "a", "eth1")
    first = await rest.ipam.allocate(AddRequest(owner=attachment, network=network, container_id="c1", pod_uid="uid-1"))
    path = f"/v1/allocations/{first.id}"
    _, _, before = await rest.call("GET", path)
    # A new sandbox of the same pod keeps the tag; another pod instance changes it.
    await rest.ipam.allocate(AddRequest(owner=attachment, network=network, container_id="c2", pod_uid="uid-1"))
    _, _, same = await rest.call("GET", path)
    assert same["ETag"] == before["ETag"]
    await rest.ipam.allocate(AddRequest(owner=attachment, network=network, container_id="c3", pod_uid="uid-2"))
    status, _, _ = await rest.call("DELETE", path, If_Match=before["ETag"])
    assert status == 412
    assert (await rest.ok("GET", path))["owner"]["podUid"] == "uid-2"


async def test_dual_stack_reservations_and_releases_with_ipv4_compatible_ipv6(rest: Rest) -> None:
    # ::192.0.2.0/120 holds the same 16-byte integers as 192.0.2.0/24: every key must tell
    # the families apart.
    await rest.ok(
        "POST", "/v1/subnets", {"name": "ds", "cidrBlock": "192.0.2.0/24,::192.0.2.0/120", "provider": "ds.default"}
    )
    v4 = await rest.ok("POST", "/v1/reservations", {"subnet": "ds", "address": "192.0.2.7"})
    v6 = await rest.ok("POST", "/v1/reservations", {"subnet": "ds", "address": "::192.0.2.7"})
    assert (v4["address"], v6["address"]) == ("192.0.2.7", "::192.0.2.7")
    status, answer, _ = await rest.call("POST", "/v1/reservations", {"subnet": "ds", "address": "::192.0.2.7"})
    assert (status, answer["error"]["code"]) == (409, "already_exists")

    # Releasing both families of one attachment puts two equal integers in the reuse queue.
    pairs = []
    for pod in ("p1", "p2", "p3"):
        body = await rest.ok("POST", "/v1/allocations", {"subnet": "ds", "owner": owner(pod)})
        pairs.append(sorted((a["family"], a["address"]) for a in body["addresses"]))
        assert [a["family"] for a in body["addresses"]] == [4, 6]
    assert pairs[0] == [(4, "192.0.2.2"), (6, "::192.0.2.2")]
    for body in (await rest.ok("GET", "/v1/allocations"))["items"]:
        await rest.ok("DELETE", f"/v1/allocations/{body['id']}")
    usage = (await rest.ok("GET", "/v1/subnets/ds"))["usage"]
    assert usage["v4"]["reserved"] == usage["v6"]["reserved"] == 1
    assert usage["v4"]["used"] == usage["v6"]["used"] == 0
    assert "192.0.2.7" not in expand(usage["v4"]["freeRanges"]) and "::192.0.2.7" not in expand(
        usage["v6"]["freeRanges"]
    )

    # Reserving an address that sits in the reuse queue takes it out of its family only.
    await rest.ok("POST", "/v1/reservations", {"subnet": "ds", "address": "::192.0.2.2"})
    usage = (await rest.ok("GET", "/v1/subnets/ds"))["usage"]
    assert "192.0.2.2" in expand(usage["v4"]["freeRanges"])
    assert "::192.0.2.2" not in expand(usage["v6"]["freeRanges"])
    for reservation in (v4, v6):
        await rest.ok("DELETE", f"/v1/reservations/{reservation['id']}")
    usage = (await rest.ok("GET", "/v1/subnets/ds"))["usage"]
    assert (usage["v4"]["reserved"], usage["v6"]["reserved"]) == (0, 1)
    assert "192.0.2.7" in expand(usage["v4"]["freeRanges"]) and "::192.0.2.7" in expand(usage["v6"]["freeRanges"])


def expand(ranges: list[str]) -> set[str]:
    values = set()
    for text in ranges:
        first, _, last = text.partition("-")
        values |= {ip_text(int(value), 6 if ":" in text else 4) for value in netaddr.iter_iprange(first, last or first)}
    return values


def test_sqlite_upgrade_keeps_ids_released_before_it_from_coming_back(tmp_path: Path) -> None:
    """A database made before ids were AUTOINCREMENT: the counter starts above every id the
    audit history has seen, so an id released before the upgrade is not handed out again."""
    url = f"sqlite:///{tmp_path / 'old.db'}"

    async def scenario() -> None:
        database = open_database(url)
        try:

            def to_0002(connection: sa.Connection) -> None:
                config = alembic_config()
                config.attributes["connection"] = connection
                command.upgrade(config, "0002")

            await asyncio.get_running_loop().run_in_executor(database._writer, lambda: _in(database, to_0002))
            with database.engine.begin() as connection:
                connection.exec_driver_sql(
                    "INSERT INTO subnets (id, name, provider, spec) VALUES (1, 'net1', 'p', '{}')"
                )
                connection.exec_driver_sql(
                    "INSERT INTO allocations (id, subnet_id, network_key, namespace, pod, interface, address_v4) "
                    "VALUES (3, 1, 'p', 'lab', 'kept', 'eth1', x'000000000000000000000000c0000203')"
                )
                # Allocation 9 was released before the upgrade: only the history remembers it.
                connection.exec_driver_sql(
                    "INSERT INTO address_events (action, subnet, family, address, allocation_id) "
                    "VALUES ('release', 'net1', 4, x'000000000000000000000000c0000209', 9)"
                )
            await database.upgrade()
            assert await database.revision() == head_revision()
            with database.engine.begin() as connection:
                assert connection.exec_driver_sql("SELECT id, pod FROM allocations").all() == [(3, "kept")]
                connection.exec_driver_sql(
                    "INSERT INTO allocations (subnet_id, network_key, namespace, pod, interface) VALUES (1, 'p', 'lab', 'new', 'eth1')"
                )
                assert connection.exec_driver_sql("SELECT id FROM allocations WHERE pod = 'new'").scalar_one() == 10
        finally:
            await database.dispose()

    asyncio.run(scenario())


def _in(database, body) -> None:  # type: ignore[no-untyped-def]
    with database.engine.begin() as connection:
        body(connection)
