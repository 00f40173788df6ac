"""The daemon's own CPU time per CNI ADD (user + system, read from /proc around a run), for
this checkout and one before a change, alternating rounds on one PostgreSQL server.

Throughput on a small shared machine moves with whatever else runs; the CPU the daemon
spends per ADD moves much less, and it is what a change in the daemon's code changes.

    .venv/bin/python benchmarks/cpu_per_add.py --before DIR [--requests 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

from common import REPO, add_body, hammer, machine

from tests.support.daemon import Daemon
from tests.support.postgres import PostgresServer, create_database

CONCURRENCY = 32


def cpu_seconds(pid: int) -> float:
    """User plus system time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(label: str, repo: Path, url: str, workdir: Path, requests: int) -> None:
    daemon = Daemon(workdir, url, name=label, repo=repo).start()
    try:
        created = daemon.client.post("/v1/subnets", {"name": "b", "cidrBlock": "198.18.0.0/15", "provider": "b"})
        assert created.status == 201, created.body
        # Warm-up outside the measurement: pools filled, statements prepared.
        asyncio.run(
            hammer([daemon.socket], lambda i: add_body(i, "b"), requests=300, concurrency=CONCURRENCY, first=10**6)
        )
        assert daemon.process is not None
        start = cpu_seconds(daemon.process.pid)
        rate, failures, _ = asyncio.run(
            hammer([daemon.socket], lambda i: add_body(i, "b"), requests=requests, concurrency=CONCURRENCY)
        )
        spent = cpu_seconds(daemon.process.pid) - start
        print(
            f"{label:8s} {rate:6.0f} ADDs/s   daemon CPU {spent / requests * 1e6:6.0f} us per ADD   failures {failures}"
        )
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", type=Path, required=True, help="a checkout of the code before a change")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    server = PostgresServer.start()
    try:
        with tempfile.TemporaryDirectory() as directory:
            for _ in range(args.rounds):
                for label, repo in (("after", REPO), ("before", args.before.resolve())):
                    run(label, repo, create_database(server.admin_url), Path(directory), args.requests)
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
