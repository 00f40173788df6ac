"""PostgreSQL goes away for ~10 s under two running daemons: every request fails fast with
503 ``unavailable`` (CNI code 11, so the runtime retries), readiness turns 503, nothing
hangs; when the server is back the same daemon processes serve again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.clusterkit import Cluster, Reply, add_body, check_subnet_consistency, json_getter, request
from tests.support.postgres import PostgresServer, create_database
from tests.support.waiting import async_wait_for

# What "fail fast" means here: a dead database must turn into an answer well before the
# shim's own 30 s timeout, so the runtime can retry.
FAST_SECONDS = 5.0
OUTAGE_SECONDS = 10.0


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this test's own, so it can be stopped and started again."""
    server = PostgresServer.start()
    try:
        yield server
    finally:
        server.destroy()


def test_database_outage_fails_fast_and_recovers(own_postgres: PostgresServer, sockdir: Path) -> None:
    url = create_database(own_postgres.admin_url)
    cluster = Cluster(sockdir, url, 2).start()
    try:
        pids = [d.process.pid for d in cluster.daemons if d.process]
        first = cluster.sockets[0]
        assert (
            asyncio.run(
                request(first, "POST", "/v1/subnets", {"name": "n", "cidrBlock": "203.0.113.0/24", "provider": "n.ns"})
            ).status
            == 201
        )

        async def adds(prefix: str, count: int) -> list[Reply]:
            return await asyncio.gather(
                *(
                    request(
                        cluster.sockets[i % 2],
                        "POST",
                        "/v1/cni/add",
                        add_body(f"{prefix}{i}", provider="n.ns"),
                        timeout=30,
                    )
                    for i in range(count)
                )
            )

        before = asyncio.run(adds("before", 10))
        assert all(r.status == 200 for r in before)

        own_postgres.stop("fast")
        stopped_at = time.monotonic()

        async def during_outage() -> list[tuple[str, Reply]]:
            seen: list[tuple[str, Reply]] = []
            round_number = 0
            while time.monotonic() - stopped_at < OUTAGE_SECONDS:
                batch = [
                    (
                        "add",
                        request(
                            cluster.sockets[round_number % 2],
                            "POST",
                            "/v1/cni/add",
                            add_body(f"during{round_number}-{i}", provider="n.ns"),
                            timeout=30,
                        ),
                    )
                    for i in range(4)
                ] + [
                    ("readyz", request(cluster.sockets[round_number % 2], "GET", "/readyz", timeout=30)),
                    ("status", request(cluster.sockets[round_number % 2], "GET", "/v1/cni/status", timeout=30)),
                    ("list", request(cluster.sockets[round_number % 2], "GET", "/v1/subnets", timeout=30)),
                    (
                        "del",
                        request(
                            cluster.sockets[round_number % 2],
                            "POST",
                            "/v1/cni/del",
                            add_body("before0", provider="n.ns"),
                            timeout=30,
                        ),
                    ),
                ]
                replies = await asyncio.gather(*(call for _, call in batch))
                seen += [(kind, reply) for (kind, _), reply in zip(batch, replies)]
                round_number += 1
            return seen

        seen = asyncio.run(during_outage())
        assert len(seen) >= 16
        slowest = max(reply.seconds for _, reply in seen)
        assert slowest < FAST_SECONDS, f"a request took {slowest:.1f}s while the database was down"
        for kind, reply in seen:
            assert reply.status == 503 and reply.error_code == "unavailable" and reply.cni_code == 11, (
                kind,
                reply.body,
            )

        own_postgres.restart()
        restarted_at = time.monotonic()

        # The same processes recover on their own: poll until an ADD on each daemon succeeds.
        async def recovered() -> list[Reply] | None:
            replies = await adds("after", 10)
            if all(r.status == 200 for r in replies):
                return replies
            assert all(r.status == 503 for r in replies), [r.body for r in replies]
            return None

        after = asyncio.run(
            async_wait_for(recovered, timeout=30, interval=0.05, what="ADDs to succeed after the database came back")
        )
        recovered_in = time.monotonic() - restarted_at
        assert [d.process.pid for d in cluster.daemons if d.process] == pids
        for socket in cluster.sockets:
            assert asyncio.run(request(socket, "GET", "/readyz")).status == 200
        # Nothing from the outage half-landed: exactly the acknowledged attachments hold addresses.
        state = check_subnet_consistency(json_getter(first), "n")
        held = {row["owner"]["pod"] for row in state["rows"]}
        assert held == {f"before{i}" for i in range(10)} | {f"after{i}" for i in range(10)}
        addresses = [r.body["ips"][0]["address"] for r in before + after]
        assert len(set(addresses)) == 20
        # The outage is logged, named, when it starts and when it ends, with the count of
        # refused requests: not once per refused request.
        logs = [daemon.log() for daemon in cluster.daemons]
        assert any(
            "database reads fail: database postgresql+asyncpg://" in log and ": unreachable (" in log for log in logs
        ), logs
        for log in logs:
            for channel in ("reads", "writes"):
                assert (
                    log.count(f"database {channel} fail: ") == log.count(f"database {channel} work again after ") >= 1
                ), log[-3000:]
                assert log.count(f"database {channel} fail") <= 3, log[-3000:]
        assert "request(s) failed meanwhile" in logs[0]
        print(
            f"{len(seen)} requests during the outage, slowest {slowest:.2f}s; recovered {recovered_in:.2f}s after restart"
        )
    finally:
        cluster.stop()


# A database that stops answering (network partition, a frozen primary) is worse than one
# that refuses connections: nothing tells the daemon it is gone. Requests must still end,
# bounded by the transaction timeout (10 s), not by the client giving up.
HUNG_BOUND_SECONDS = 15.0


def _postgres_pids(server: PostgresServer) -> list[int]:
    postmaster = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except OSError:
            continue
        if int(fields.get("PPid", "0").strip()) == postmaster:
            children.append(int(status.parent.name))
    return [postmaster, *children]


def test_hung_database_requests_end_in_bounded_time(own_postgres: PostgresServer, sockdir: Path) -> None:
    import os
    import signal

    url = create_database(own_postgres.admin_url)
    cluster = Cluster(sockdir, url, 1).start()
    try:
        socket = cluster.sockets[0]
        assert (
            asyncio.run(
                request(socket, "POST", "/v1/subnets", {"name": "n", "cidrBlock": "203.0.113.0/24", "provider": "n.ns"})
            ).status
            == 201
        )
        assert asyncio.run(request(socket, "POST", "/v1/cni/add", add_body("warm", provider="n.ns"))).status == 200

        frozen = _postgres_pids(own_postgres)
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:

            async def while_hung() -> list[tuple[str, Reply]]:
                calls = [
                    ("add", request(socket, "POST", "/v1/cni/add", add_body(f"hung{i}", provider="n.ns"), timeout=30))
                    for i in range(6)
                ]
                calls += [
                    ("readyz", request(socket, "GET", "/readyz", timeout=30)),
                    ("get", request(socket, "GET", "/v1/subnets/n", timeout=30)),
                ]
                replies = await asyncio.gather(*(call for _, call in calls))
                # The daemon itself stays responsive meanwhile.
                health = await request(socket, "GET", "/healthz", timeout=2)
                assert health.status == 200
                return [(kind, reply) for (kind, _), reply in zip(calls, replies)]

            seen = asyncio.run(while_hung())
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        slowest = max(reply.seconds for _, reply in seen)
        assert slowest < HUNG_BOUND_SECONDS, [(kind, round(reply.seconds, 1)) for kind, reply in seen]
        for kind, reply in seen:
            assert (reply.status, reply.error_code, reply.cni_code) == (503, "unavailable", 11), (kind, reply.body)

        async def added() -> bool:
            reply = await request(socket, "POST", "/v1/cni/add", add_body("after", provider="n.ns"))
            return reply.status == 200

        asyncio.run(async_wait_for(added, timeout=30, interval=0.05, what="an ADD after the database thawed"))
        state = check_subnet_consistency(json_getter(socket), "n")
        assert {row["owner"]["pod"] for row in state["rows"]} == {"warm", "after"}
        print("hung database:", [(kind, round(reply.seconds, 1)) for kind, reply in seen])
    finally:
        cluster.stop()
