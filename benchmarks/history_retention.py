"""The audit history at a million events: its size on disk, what pruning a batch costs
against an allocation, and what a page of one address's history costs at its start and its end.

    .venv/bin/python benchmarks/history_retention.py [--events 1000000]

On SQLite (a file, durable commits) and PostgreSQL (a throwaway server): a migrated
database gets N events written straight into ``address_events``, as 1,000 addresses each
allocated and released N/2,000 times by pods with realistic names and 64-character
container ids, stamped over the last 60 days. Then, side by side in one run:

- the size of the table and of its indexes (SQLite: ``dbstat``; PostgreSQL:
  ``pg_relation_size`` and ``pg_indexes_size`` after ``VACUUM``), per million events;
- the time of building the history index the 0008 migration creates, on these rows;
- the median time of one pruning batch (``Ipam.prune_history`` with a 30 day retention, so
  half the rows are due), of the daemon's size (``ipamd.retention.batch_size``: 100 on
  SQLite, 1,000 on PostgreSQL) and of 1,000 events, against the median allocate+release
  cycle of the same service (the baseline): how much writer time a batch takes from allocations;
- the median time of a 100-entry page of one address's history, the first page against
  the last (the keyset should make them cost the same).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from common import machine

from ipamd.core.allocation import Owner
from ipamd.core.history import HistoryQuery
from ipamd.core.nad import NetworkRequest
from ipamd.retention import batch_size
from ipamd.service import AddRequest, Ipam
from ipamd.store.database import open_database
from tests.support.postgres import PostgresServer, create_database

ADDRESSES = 1000
FIRST = 0xC6120000  # 198.18.0.0/15
COLUMNS = (
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
    "reason",
    "at",
)
INDEX = "ix_address_events_address_family_allocation_id"


def events(count: int, *, chunk: int = 50_000) -> Any:
    """Yields chunks of event tuples: address by address, allocate and release in turn."""
    now = datetime.now(UTC)
    span = timedelta(days=60)
    rows: list[tuple[Any, ...]] = []
    for n in range(count // 2):
        address = FIRST + n % ADDRESSES
        allocation_id = n + 1
        pod = f"web-7d9c5b6f4-{n:05x}"[-20:]
        container = f"{n:064x}"
        at = now - span + span * n / (count // 2)
        common = (
            "bench-net",
            4,
            address.to_bytes(16, "big"),
            allocation_id,
            "bench-net.default",
            "production",
            pod,
            "net1",
            container,
        )
        rows.append(("allocate", *common, None, at))
        rows.append(("release", *common, "cni del", at + timedelta(seconds=30)))
        if len(rows) >= chunk:
            yield rows
            rows = []
    if rows:
        yield rows


def fill_sqlite(path: Path, count: int) -> None:
    connection = sqlite3.connect(path)
    with connection:
        for rows in events(count):
            connection.executemany(
                f"INSERT INTO address_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                [(*row[:-1], row[-1].strftime("%Y-%m-%d %H:%M:%S")) for row in rows],
            )
    connection.execute("ANALYZE")
    connection.close()


def sqlite_sizes(path: Path) -> tuple[int, int]:
    connection = sqlite3.connect(path)
    try:
        sizes = dict(connection.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        indexes = [
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'address_events'"
            )
        ]
    finally:
        connection.close()
    return sizes["address_events"], sum(sizes.get(name, 0) for name in indexes)


def sqlite_index_build(path: Path) -> float:
    connection = sqlite3.connect(path)
    try:
        connection.execute(f"DROP INDEX {INDEX}")
        started = time.perf_counter()
        connection.execute(f"CREATE INDEX {INDEX} ON address_events (address, family, allocation_id)")
        connection.commit()
        return time.perf_counter() - started
    finally:
        connection.close()


async def fill_postgres(url: str, count: int) -> None:
    connection = await asyncpg.connect(url)
    try:
        for rows in events(count):
            await connection.copy_records_to_table("address_events", records=rows, columns=list(COLUMNS))
        await connection.execute("VACUUM ANALYZE address_events")
    finally:
        await connection.close()


async def postgres_sizes(url: str) -> tuple[int, int]:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("VACUUM address_events")
        table = await connection.fetchval("SELECT pg_table_size('address_events')")
        indexes = await connection.fetchval("SELECT pg_indexes_size('address_events')")
    finally:
        await connection.close()
    return int(table), int(indexes)


async def postgres_index_build(url: str) -> float:
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(f"DROP INDEX {INDEX}")
        started = time.perf_counter()
        await connection.execute(f"CREATE INDEX {INDEX} ON address_events (address, family, allocation_id)")
        return time.perf_counter() - started
    finally:
        await connection.close()


async def timings(url: str) -> dict[str, float]:
    """Median seconds of an allocate+release cycle, a pruning batch, a first and a last page."""
    database = open_database(url)
    ipam = Ipam(database, node="bench")
    try:
        await ipam.create_subnet({"name": "cycle", "cidrBlock": "192.0.2.0/24"})
        request = AddRequest(
            owner=Owner("cycle", "bench", "p", "eth1"), network=NetworkRequest("cycle", None), subnet_name="cycle"
        )
        batch = batch_size(database.dialect)
        cycles, batches, big_batches, first_pages, last_pages = [], [], [], [], []
        address = str(ipaddress.IPv4Address(FIRST + 7))
        last = HistoryQuery(limit=100, newest_first=True)
        for _ in range(30):
            started = time.perf_counter()
            allocation = await ipam.allocate(request)
            await ipam.release(allocation["id"], reason="bench")
            cycles.append(time.perf_counter() - started)
            started = time.perf_counter()
            deleted, _ = await ipam.prune_history(retention_seconds=30 * 86400, batch=batch)
            batches.append(time.perf_counter() - started)
            assert deleted == batch, deleted
            started = time.perf_counter()
            deleted, _ = await ipam.prune_history(retention_seconds=30 * 86400, batch=1000)
            big_batches.append(time.perf_counter() - started)
            assert deleted == 1000, deleted
            started = time.perf_counter()
            page = await ipam.ip_info(address, HistoryQuery(limit=100))
            first_pages.append(time.perf_counter() - started)
            assert len(page["history"]) == 100 and page["continue"]
            started = time.perf_counter()
            page = await ipam.ip_info(address, last)
            last_pages.append(time.perf_counter() - started)
            assert len(page["history"]) == 100
    finally:
        await ipam.close()
    return {
        name: statistics.median(values)
        for name, values in (
            ("cycle", cycles),
            ("batch", batches),
            ("batch of 1000", big_batches),
            ("first page", first_pages),
            ("last page", last_pages),
            ("batch size", [batch]),
        )
    }


def report(name: str, count: int, sizes: tuple[int, int], build: float, measured: dict[str, float]) -> None:
    table, indexes = sizes
    per_million = 1_000_000 / count / 2**20
    print(f"\n{name}: {count:,} events")
    print(
        f"  table {table * per_million:.0f} MiB + indexes {indexes * per_million:.0f} MiB = {(table + indexes) * per_million:.0f} MiB per million events"
        f" ({(table + indexes) / count:.0f} bytes per event)"
    )
    print(f"  building the history index: {build:.2f} s ({build * 1_000_000 / count:.2f} s per million events)")
    print(
        f"  allocate+release cycle (baseline) {measured['cycle'] * 1000:.2f} ms;"
        f" pruning batch of {measured['batch size']:.0f} {measured['batch'] * 1000:.2f} ms = {measured['batch'] / measured['cycle']:.2f}x a cycle;"
        f" of 1,000 {measured['batch of 1000'] * 1000:.2f} ms = {measured['batch of 1000'] / measured['cycle']:.2f}x"
    )
    print(
        f"  a 100-entry page: first {measured['first page'] * 1000:.2f} ms, last {measured['last page'] * 1000:.2f} ms"
        f" ({measured['last page'] / measured['first page']:.2f}x)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    print(machine())

    with tempfile.TemporaryDirectory(prefix="ipamd-history-bench-") as directory:
        path = Path(directory) / "ipamd.db"
        database = open_database(f"sqlite:///{path}")
        await database.upgrade()
        await database.dispose()
        fill_sqlite(path, args.events)
        sizes = sqlite_sizes(path)
        build = sqlite_index_build(path)
        report("SQLite", args.events, sizes, build, await timings(f"sqlite:///{path}"))

    server = PostgresServer.start()
    try:
        url = create_database(server.admin_url)
        database = open_database(url)
        await database.upgrade()
        await database.dispose()
        await fill_postgres(url, args.events)
        sizes = await postgres_sizes(url)
        build = await postgres_index_build(url)
        report("PostgreSQL (fsync off)", args.events, sizes, build, await timings(url))
    finally:
        server.destroy()


if __name__ == "__main__":
    asyncio.run(main())
