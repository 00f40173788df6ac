"""The cost of one allocation must not grow with subnet size or fill: an empty /24 versus
a /8 holding 1,000,000 allocations versus an IPv6 /64 holding 1,000,000, on SQLite.

    .venv/bin/python benchmarks/allocation_scaling.py [--held 1000000] [--samples 200]

The baseline is the empty /24 in the same run; the ratios are large/small (target <= 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import netaddr
import sqlalchemy as sa
from common import machine

from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.service import AddRequest, Ipam
from ipamd.store.database import open_database
from ipamd.store.schema import allocations, free_ranges, subnets

WARMUP = 20
CASES = [
    ("empty /24", "198.51.100.0/24", 0),
    ("/8 holding N", "198.0.0.0/8", None),  # data only (no traffic); it holds the 198.18.0.0/15 benchmarking block
    ("/64 holding N", "2001:db8:64::/64", None),
]


def fill(database, subnet_name: str, held: int) -> None:
    """Inserts ``held`` allocations at the bottom of the subnet, as a long-running cluster would have."""
    engine = database.engine
    with engine.begin() as conn:
        row = conn.execute(sa.select(subnets.c.id, subnets.c.spec).where(subnets.c.name == subnet_name)).one()
        network = netaddr.IPNetwork(row.spec["cidrBlock"])
        family = network.version
        column = "address_v4" if family == 4 else "address_v6"
        first = int(network.first) + 2  # after the gateway
        chunk = 50_000
        for start in range(0, held, chunk):
            conn.execute(
                sa.insert(allocations),
                [
                    {
                        "subnet_id": row.id,
                        "network_key": subnet_name,
                        "namespace": "bench",
                        "pod": f"held-{i}",
                        "interface": "net1",
                        column: first + i,
                    }
                    for i in range(start, min(start + chunk, held))
                ],
            )
        conn.execute(sa.update(free_ranges).where(free_ranges.c.subnet_id == row.id).values(first=first + held))


async def measure(directory: Path, name: str, cidr: str, held: int, samples: int) -> tuple[float, float]:
    database = open_database(f"sqlite:///{directory / (name.replace(' ', '_').replace('/', '') + '.db')}")
    await database.upgrade()
    ipam = Ipam(database)
    try:
        await ipam.create_subnet({"name": "bench", "cidrBlock": cidr, "provider": "bench"})
        if held:
            started = time.perf_counter()
            await asyncio.get_running_loop().run_in_executor(None, fill, database, "bench", held)
            print(f"  {name}: {held:,} allocations inserted in {time.perf_counter() - started:.1f}s")
        network = NetworkRequest("bench", None)
        for index in range(WARMUP):
            await ipam.allocate(AddRequest(owner=Owner("bench", "bench", f"warm-{index}", "net1"), network=network))
        timings = []
        for index in range(samples):
            request = AddRequest(owner=Owner("bench", "bench", f"new-{index}", "net1"), network=network)
            started = time.perf_counter()
            await ipam.allocate(request)
            timings.append(time.perf_counter() - started)
        return statistics.median(timings) * 1000, statistics.quantiles(timings, n=20)[-1] * 1000
    finally:
        await ipam.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--held", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200, help="at most 230: the /24 must not run out")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"one durable allocation at a time on SQLite, {args.samples} samples per case")
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        for name, cidr, held in CASES:
            results[name] = await measure(
                Path(directory), name, cidr, args.held if held is None else held, args.samples
            )
    base = results["empty /24"][0]
    for name, (median, p95) in results.items():
        label = name.replace("N", f"{args.held:,}")
        print(f"{label:28s} median {median:6.3f} ms   p95 {p95:6.3f} ms   ratio to empty /24 {median / base:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
