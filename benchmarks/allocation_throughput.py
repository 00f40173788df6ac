"""Allocations per second over the Unix socket with 32 concurrent clients, on SQLite and
PostgreSQL; the baseline is the same daemon answering /healthz (the transport's ceiling).

    .venv/bin/python benchmarks/allocation_throughput.py [--requests 3000] [--concurrency 32]
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


def run_backend(label: str, url: str, workdir: Path, *, requests: int, concurrency: int, repo: Path = REPO) -> None:
    daemon = Daemon(workdir, url, name=label, repo=repo).start()
    try:
        created = daemon.client.post(
            "/v1/subnets", {"name": "bench", "cidrBlock": "198.18.0.0/15", "provider": "bench"}
        )
        assert created.status == 201, created.body
        rate, failures, _ = asyncio.run(
            hammer([daemon.socket], lambda i: add_body(i, "bench"), requests=requests, concurrency=concurrency)
        )
        # /healthz through the same client: what the socket and aiohttp cost without allocation.
        base_rate, _, _ = asyncio.run(
            hammer([daemon.socket], lambda i: {}, requests=requests, concurrency=concurrency, path="/healthz")
        )
        used = daemon.client.get("/v1/subnets/bench").body["usage"]["v4"]["used"]
        assert used == requests - failures, (used, requests, failures)
        print(
            f"{label:10s} {rate:8.0f} allocations/s   baseline /healthz {base_rate:8.0f} req/s   ratio {rate / base_rate:.2f}   failures {failures}"
        )
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of the code before a change: its SQLite daemon runs alternately with this one",
    )
    parser.add_argument("--rounds", type=int, default=1, help="SQLite runs per variant")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(
        f"{args.requests} durable allocations, {args.concurrency} concurrent clients, one connection per request (as the shim)"
    )
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        variants = [("sqlite", REPO)] + ([("sqlite-before", args.before.resolve())] if args.before else [])
        for run_number in range(args.rounds):
            for label, repo in variants:
                name = f"{label}-{run_number + 1}" if args.rounds > 1 else label
                run_backend(
                    name,
                    f"sqlite:///{workdir / f'{name}.db'}",
                    workdir,
                    requests=args.requests,
                    concurrency=args.concurrency,
                    repo=repo,
                )
        server = PostgresServer.start()
        try:
            run_backend(
                "postgresql",
                create_database(server.admin_url),
                workdir,
                requests=args.requests,
                concurrency=args.concurrency,
            )
        finally:
            server.destroy()


if __name__ == "__main__":
    main()
