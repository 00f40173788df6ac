"""Start-up with a million allocations in the database: the time from ``ipamd serve`` to
``/readyz`` answering 200, and the daemon's memory once ready, against the same daemon on a
database holding no allocation (the baseline), on SQLite and on PostgreSQL.

    .venv/bin/python benchmarks/cluster_startup.py [--allocations 1000000] [--runs 3]

Set-up writes the rows straight into the tables (one IPv6 /64 subnet created through the
API, then N allocations with their audit rows, and its free range advanced past them, as
N dynamic ADDs would have left it). Then the runs alternate full and empty databases; after
each start one ADD must return the address right after the N taken ones and the subnet must
count N+1 used, so the bulk rows are also shown to be consistent. Goal: ready in under 5 s,
and resident memory that does not grow with the number of allocations.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from common import REPO, machine  # noqa: F401  (importing common puts the repo on sys.path)

from tests.cluster.clusterkit import request, rss_kib
from tests.support.daemon import Daemon
from tests.support.postgres import PostgresServer, create_database

NETWORK = ipaddress.IPv6Network("2001:db8:100::/64")
SUBNET = {"name": "big6", "cidrBlock": str(NETWORK), "provider": "big6"}
FIRST = int(NETWORK.network_address) + 2  # network+1 is the gateway
BATCH = 50_000


def address_bytes(value: int) -> bytes:
    return value.to_bytes(16, "big")


def create_subnet(workdir: Path, url: str, name: str) -> None:
    daemon = Daemon(workdir, url, name=name).start()
    try:
        reply = daemon.client.post("/v1/subnets", SUBNET)
        assert reply.status == 201, reply.body
    finally:
        daemon.stop()


def rows(count: int, subnet_id: int):  # type: ignore[no-untyped-def]
    for start in range(0, count, BATCH):
        allocations, events = [], []
        for i in range(start, min(start + BATCH, count)):
            address = address_bytes(FIRST + i)
            pod = f"pod-{i}"
            allocations.append((subnet_id, "big6", "bench", pod, "net1", address, f"c{i}", f"node{i % 100}"))
            events.append(("allocate", "big6", 6, address, i + 1, "big6", "bench", pod, "net1", f"c{i}"))
        yield allocations, events


def fill_sqlite(path: Path, count: int) -> None:
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    subnet_id = connection.execute("SELECT id FROM subnets WHERE name = 'big6'").fetchone()[0]
    with connection:
        for allocations, events in rows(count, subnet_id):
            connection.executemany(
                "INSERT INTO allocations (subnet_id, network_key, namespace, pod, interface, address_v6, container_id, node, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP)",
                allocations,
            )
            connection.executemany(
                "INSERT INTO address_events (action, subnet, family, address, allocation_id, network_key, namespace, pod, interface, container_id, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP)",
                events,
            )
        updated = connection.execute(
            "UPDATE free_ranges SET first = ? WHERE subnet_id = ? AND family = 6 AND pool_id IS NULL",
            (address_bytes(FIRST + count), subnet_id),
        ).rowcount
        assert updated == 1
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.execute("ANALYZE")
    connection.close()


async def fill_postgres(url: str, count: int) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        subnet_id = await connection.fetchval("SELECT id FROM subnets WHERE name = 'big6'")
        async with connection.transaction():
            for allocations, events in rows(count, subnet_id):
                await connection.copy_records_to_table(
                    "allocations",
                    records=allocations,
                    columns=[
                        "subnet_id",
                        "network_key",
                        "namespace",
                        "pod",
                        "interface",
                        "address_v6",
                        "container_id",
                        "node",
                    ],
                )
                await connection.copy_records_to_table(
                    "address_events",
                    records=events,
                    columns=[
                        "action",
                        "subnet",
                        "family",
                        "address",
                        "allocation_id",
                        "network_key",
                        "namespace",
                        "pod",
                        "interface",
                        "container_id",
                    ],
                )
            status = await connection.execute(
                "UPDATE free_ranges SET first = $1 WHERE subnet_id = $2 AND family = 6 AND pool_id IS NULL",
                address_bytes(FIRST + count),
                subnet_id,
            )
            assert status == "UPDATE 1", status
        # Keep the allocation ids in step with the rows written by hand.
        await connection.execute(
            "SELECT setval(pg_get_serial_sequence('allocations', 'id'), (SELECT max(id) FROM allocations))"
        )
        await connection.execute("VACUUM ANALYZE allocations")
        await connection.execute("VACUUM ANALYZE address_events")
    finally:
        await connection.close()


def start_once(workdir: Path, url: str, name: str, expected_used: int) -> tuple[float, int, int]:
    """Returns seconds to ready, RSS (KiB) when ready, and RSS after one ADD and a usage read."""
    daemon = Daemon(workdir, url, name=name)
    started = time.perf_counter()
    daemon.start(wait=False)
    try:
        while True:
            assert daemon.process is not None and daemon.process.poll() is None, daemon.log()
            try:
                if asyncio.run(request(daemon.socket, "GET", "/readyz", timeout=5)).status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.01)
        ready = time.perf_counter() - started
        rss_ready = rss_kib(daemon.process.pid)
        body = {
            "containerId": f"probe-{name}",
            "ifName": "net1",
            "network": "big6",
            "podNamespace": "bench",
            "podName": f"probe-{name}-{time.monotonic_ns()}",
            "ipam": {"type": "ipamd", "provider": "big6"},
        }
        reply = asyncio.run(request(daemon.socket, "POST", "/v1/cni/add", body))
        assert reply.status == 200, reply.body
        address = int(ipaddress.IPv6Address(reply.body["ips"][0]["address"].partition("/")[0]))
        assert address >= FIRST + expected_used, (ipaddress.IPv6Address(address), expected_used)
        usage = asyncio.run(request(daemon.socket, "GET", "/v1/subnets/big6")).body["usage"]["v6"]
        assert usage["used"] >= expected_used + 1, usage
        # Give it back so the next run finds the same state.
        assert asyncio.run(request(daemon.socket, "POST", "/v1/cni/del", body)).status == 200
        return ready, rss_ready, rss_kib(daemon.process.pid)
    finally:
        daemon.stop()


def measure(label: str, workdir: Path, full_url: str, empty_url: str, *, count: int, runs: int) -> None:
    results: dict[str, list[tuple[float, int, int]]] = {"empty": [], "full": []}
    for _ in range(runs):
        for kind, url, used in (("empty", empty_url, 0), ("full", full_url, count)):
            results[kind].append(start_once(workdir, url, f"{label}-{kind}", used))
    empty_ready = statistics.median(r[0] for r in results["empty"])
    full_ready = statistics.median(r[0] for r in results["full"])
    empty_rss = statistics.median(r[1] for r in results["empty"])
    full_rss = statistics.median(r[1] for r in results["full"])
    full_after = statistics.median(r[2] for r in results["full"])
    empty_after = statistics.median(r[2] for r in results["empty"])
    print(
        f"| {label} | {empty_ready:.2f} s | {full_ready:.2f} s | {full_ready / empty_ready:.2f} | "
        f"{empty_rss / 1024:.1f} MiB | {full_rss / 1024:.1f} MiB | {full_rss / empty_rss:.2f} | "
        f"{empty_after / 1024:.1f} / {full_after / 1024:.1f} MiB |",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--allocations", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(
        f"start-up to /readyz with {args.allocations:,} allocations (and as many audit rows) vs none; median of {args.runs} runs"
    )
    with tempfile.TemporaryDirectory(prefix="ipb-", dir="/tmp") as directory:
        workdir = Path(directory)
        sqlite_full, sqlite_empty = workdir / "full.db", workdir / "empty.db"
        server = PostgresServer.start()
        try:
            pg_full, pg_empty = create_database(server.admin_url), create_database(server.admin_url)
            for url, name in (
                (f"sqlite:///{sqlite_full}", "setup-sf"),
                (f"sqlite:///{sqlite_empty}", "setup-se"),
                (pg_full, "setup-pf"),
                (pg_empty, "setup-pe"),
            ):
                create_subnet(workdir, url, name)
            started = time.perf_counter()
            fill_sqlite(sqlite_full, args.allocations)
            print(
                f"set-up: SQLite filled in {time.perf_counter() - started:.1f} s ({sqlite_full.stat().st_size / 2**20:.0f} MiB)",
                flush=True,
            )
            started = time.perf_counter()
            asyncio.run(fill_postgres(pg_full, args.allocations))
            print(f"set-up: PostgreSQL filled in {time.perf_counter() - started:.1f} s", flush=True)
            print()
            n = f"{args.allocations:,}"
            print(
                f"| database | ready, empty | ready, {n} | ratio | RSS ready, empty | RSS ready, {n} | ratio | RSS after an ADD and a usage read, empty / {n} |"
            )
            print("|---|---|---|---|---|---|---|---|")
            measure(
                "sqlite",
                workdir,
                f"sqlite:///{sqlite_full}",
                f"sqlite:///{sqlite_empty}",
                count=args.allocations,
                runs=args.runs,
            )
            measure("postgresql", workdir, pg_full, pg_empty, count=args.allocations, runs=args.runs)
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
