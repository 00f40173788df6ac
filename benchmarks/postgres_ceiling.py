"""ipamd on PostgreSQL against what the database itself can do: durable allocations/s with
32 clients, as a ratio to a pgbench ceiling on the same server and schema.

    .venv/bin/python benchmarks/postgres_ceiling.py [--requests 3200] [--concurrency 32] [--rounds 2]
        [--before DIR]

- The ceiling: pgbench, 32 clients, each transaction the whole allocation as one call of
  the server-side function ipamd's own daemons use (``ipamd_allocate``, migration 0009),
  prepared, on a /15 shared by all. It is what one round trip per allocation can give on
  this machine with no Python, HTTP or client in the way.
- ipamd: 1, 2 and 4 daemons on one shared /15, the clients spread evenly over them, one
  Unix connection per request as the CNI plugin makes them (``timed_allocations`` in
  benchmarks/common.py, which benchmarks/cluster_throughput.py measures with too).
- ``--before DIR``: the same daemon configurations run from another checkout (a
  ``git worktree`` of the code before a change), side by side in the same run.

One PostgreSQL server with ``fsync=on`` (a commit waits for its WAL on disk), a fresh
database per configuration; configurations run in rotating order over the rounds and the
best round counts (other work on a shared machine only ever slows a round down).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
from pathlib import Path

from common import REPO, machine, timed_allocations

from tests.cluster.clusterkit import Cluster
from tests.support.postgres import PostgresServer, create_database, drop_database

CIDR = "198.18.0.0/15"
PROVIDER = "shared"
# Each pgbench transaction allocates for a pod named after its own transaction id: every
# call is a new attachment, as every ipamd request below is.
PGBENCH_SCRIPT = (
    f"SELECT outcome FROM ipamd_allocate(NULL, NULL, 'default', '{PROVIDER}', 'bench', 'pgbench-' || txid_current(), 'net1', "
    "'container', NULL, NULL, 'pgbench', 'cni', NULL, false, NULL, 'infinity');\n"
)


def prepared_database(server: PostgresServer, workdir: Path, *, daemons: int, repo: Path) -> tuple[str, Cluster]:
    """Returns a fresh database with the shared subnet, and its daemons started."""
    url = create_database(server.admin_url)
    cluster = Cluster(workdir, url, daemons, repo=repo).start()
    created = cluster.daemons[0].client.post("/v1/subnets", {"name": PROVIDER, "cidrBlock": CIDR, "provider": PROVIDER})
    assert created.status == 201, created.body
    return url, cluster


def pgbench_ceiling(server: PostgresServer, workdir: Path, *, requests: int, concurrency: int) -> float:
    url, cluster = prepared_database(server, workdir, daemons=1, repo=REPO)
    cluster.stop()  # only the schema and the subnet are wanted
    try:
        script = workdir / "allocate.sql"
        script.write_text(PGBENCH_SCRIPT)
        database = url.rpartition("/")[2]
        output = subprocess.run(
            [
                "pgbench",
                "-n",
                "-M",
                "prepared",
                "-h",
                "127.0.0.1",
                "-p",
                str(server.port),
                "-U",
                "postgres",
                "-c",
                str(concurrency),
                "-j",
                "2",
                "-t",
                str(requests // concurrency),
                "-f",
                str(script),
                database,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        failed = re.search(r"number of failed transactions: (\d+)", output)
        assert failed is None or failed.group(1) == "0", output
        match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
        assert match is not None, output
        return float(match.group(1))
    finally:
        drop_database(server.admin_url, url)


def ipamd_rate(
    server: PostgresServer, workdir: Path, *, daemons: int, repo: Path, requests: int, concurrency: int
) -> tuple[float, int]:
    url, cluster = prepared_database(server, workdir, daemons=daemons, repo=repo)
    try:
        rate, failures, _ = timed_allocations(
            cluster, [PROVIDER], [PROVIDER] * daemons, requests=requests, concurrency=concurrency
        )
        return rate, failures
    finally:
        cluster.stop()
        drop_database(server.admin_url, url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3200)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--before", type=Path, help="a checkout of the code before the change, run side by side")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the start")
    print(
        f"{args.requests} allocations per run, {args.concurrency} concurrent clients, PostgreSQL with fsync=on; "
        f"best of {args.rounds} rounds"
    )
    configs: list[tuple[str, Path | None, int]] = [("pgbench", None, 0)]
    configs += [("ipamd", REPO, n) for n in (1, 2, 4)]
    if args.before is not None:
        configs += [("before", args.before.resolve(), n) for n in (1, 4)]
    best: dict[tuple[str, int], float] = {}
    server = PostgresServer.start(fsync=True)
    try:
        with tempfile.TemporaryDirectory(prefix="ipc-", dir="/tmp") as directory:
            workdir = Path(directory)
            for round_number in range(args.rounds):
                shift = round_number % len(configs)
                for label, repo, daemons in configs[shift:] + configs[:shift]:
                    if repo is None:
                        rate = pgbench_ceiling(server, workdir, requests=args.requests, concurrency=args.concurrency)
                        print(
                            f"  round {round_number + 1}: pgbench, one ipamd_allocate call per transaction: {rate:.0f}/s",
                            flush=True,
                        )
                    else:
                        rate, failures = ipamd_rate(
                            server,
                            workdir,
                            daemons=daemons,
                            repo=repo,
                            requests=args.requests,
                            concurrency=args.concurrency,
                        )
                        print(
                            f"  round {round_number + 1}: {label}, {daemons} daemon(s): {rate:.0f}/s (failures {failures})",
                            flush=True,
                        )
                    key = (label, daemons)
                    best[key] = max(rate, best.get(key, 0.0))
    finally:
        server.destroy()
    ceiling = best[("pgbench", 0)]
    print(f"\nload average {os.getloadavg()[0]:.1f} at the end\n")
    before_one = best.get(("before", 1))
    print(
        "| code | daemons (one shared subnet) | allocations/s | ratio to the pgbench ceiling |"
        + (" ratio to 1 daemon before |" if before_one else "")
    )
    print("|---|---|---|---|" + ("---|" if before_one else ""))
    print(f"| pgbench, one call per allocation | - | {ceiling:.0f} | 1.00 |" + (" |" if before_one else ""))
    for label, _repo, daemons in configs[1:]:
        rate = best[(label, daemons)]
        print(
            f"| {label} | {daemons} | {rate:.0f} | {rate / ceiling:.2f} |"
            + (f" {rate / before_one:.2f} |" if before_one else "")
        )


if __name__ == "__main__":
    main()
