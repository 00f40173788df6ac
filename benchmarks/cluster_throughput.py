"""Allocations per second with 1, 2 and 4 daemons on one PostgreSQL database: one subnet
shared by every daemon, versus one subnet per daemon. The baseline is one daemon on one
subnet; every configuration is printed as a ratio to it.

    .venv/bin/python benchmarks/cluster_throughput.py [--requests 2000] [--concurrency 32] [--rounds 2]

Each configuration gets a fresh database and fresh daemons on a throwaway PostgreSQL.
Clients make one connection per request, as the CNI shim does, spread evenly over the
daemons; configurations run in rotating order over several rounds and the best round
counts (other work on a shared machine only ever slows a round down).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine, timed_allocations  # importing common puts the repo on sys.path

from tests.cluster.clusterkit import Cluster
from tests.support.postgres import PostgresServer, create_database, drop_database

SHARED_CIDR = "198.18.0.0/15"
# One /18 per daemon inside 198.18.0.0/16, each under its own provider.
PER_DAEMON_CIDRS = ["198.18.0.0/18", "198.18.64.0/18", "198.18.128.0/18", "198.18.192.0/18"]


def run(
    server: PostgresServer, workdir: Path, *, daemons: int, shared: bool, requests: int, concurrency: int
) -> tuple[float, int, float]:
    url = create_database(server.admin_url)
    cluster = Cluster(workdir, url, daemons).start()
    try:
        if shared:
            subnets = [("shared", SHARED_CIDR)]
            providers = ["shared"] * daemons
        else:
            subnets = [(f"d{i}", PER_DAEMON_CIDRS[i]) for i in range(daemons)]
            providers = [f"d{i}" for i in range(daemons)]
        for name, cidr in subnets:
            created = cluster.daemons[0].client.post("/v1/subnets", {"name": name, "cidrBlock": cidr, "provider": name})
            assert created.status == 201, created.body
        rate, failures, latencies = timed_allocations(
            cluster, [name for name, _ in subnets], providers, requests=requests, concurrency=concurrency
        )
        latencies.sort()
        return rate, failures, latencies[int(len(latencies) * 0.99)]
    finally:
        cluster.stop()
        drop_database(server.admin_url, url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(
        f"{args.requests} allocations per run, {args.concurrency} concurrent clients spread over the daemons, "
        f"one connection per request; best of {args.rounds} rounds"
    )
    configs = [(1, True), (2, True), (4, True), (2, False), (4, False)]
    best: dict[tuple[int, bool], tuple[float, int, float]] = {}
    server = PostgresServer.start()
    try:
        with tempfile.TemporaryDirectory(prefix="ipb-", dir="/tmp") as directory:
            for round_number in range(args.rounds):
                shift = round_number % len(configs)
                for daemons, shared in configs[shift:] + configs[:shift]:
                    result = run(
                        server,
                        Path(directory),
                        daemons=daemons,
                        shared=shared,
                        requests=args.requests,
                        concurrency=args.concurrency,
                    )
                    print(
                        f"  round {round_number + 1}: {daemons} daemon(s), {'one shared subnet' if shared else 'a subnet per daemon'}: "
                        f"{result[0]:.0f}/s (p99 {result[2] * 1000:.0f} ms, failures {result[1]})",
                        flush=True,
                    )
                    if (daemons, shared) not in best or result[0] > best[(daemons, shared)][0]:
                        best[(daemons, shared)] = result
    finally:
        server.destroy()
    baseline = best[(1, True)][0]
    print()
    print("| daemons | subnets | allocations/s | p99 latency | ratio to 1 daemon | failures |")
    print("|---|---|---|---|---|---|")
    for daemons, shared in configs:
        rate, failures, p99 = best[(daemons, shared)]
        print(
            f"| {daemons} | {'one shared' if shared else 'one per daemon'} | {rate:.0f} | {p99 * 1000:.0f} ms | {rate / baseline:.2f} | {failures} |"
        )
    for daemons in (2, 4):
        print(
            f"{daemons} daemons: a subnet per daemon / one shared subnet = {best[(daemons, False)][0] / best[(daemons, True)][0]:.2f}"
        )


if __name__ == "__main__":
    main()
