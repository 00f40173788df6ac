"""ADD latency while /metrics is scraped, with 1 subnet and with 5,000 (issue 18, D16).

    .venv/bin/python benchmarks/metrics_scale.py [--subnets 5000] [--scrapers 8] [--adds 200]

Two daemons (SQLite), one after the other: the baseline holds the one subnet the ADDs go
to; the other holds it and N-1 more subnets of other providers, so that only the size of
/metrics differs (choosing among many subnets of one provider is another item). In each,
ADDs are timed one at a time over a fresh connection, as the CNI plugin makes them: first
alone, then while 8 clients scrape /metrics back to back (a separate process, so that the
scrapers do not share the timing loop), asking for gzip as Prometheus does. Printed: the medians, the scrape size and time,
and the ratio of the 5,000-subnet median under scraping to the 1-subnet one (target <= 2).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import netaddr
from common import REPO, machine, median_ms, now, post_json

from tests.support.daemon import Daemon

TARGET = {"name": "target", "cidrBlock": "203.0.113.0/24", "provider": "target.ns"}


async def get(socket_path: str, path: str, *, gzipped: bool = False) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_unix_connection(socket_path)
    accept = "Accept-Encoding: gzip\r\n" if gzipped else ""
    writer.write(f"GET {path} HTTP/1.1\r\nHost: ipamd\r\n{accept}Connection: close\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def scrape_forever(socket_path: str, clients: int, report: Path, gzipped: bool) -> None:
    """Runs in its own process: ``clients`` scrapers back to back, until killed."""
    times: list[float] = []
    sizes: list[int] = []

    async def one() -> None:
        first = True
        while True:
            started = time.perf_counter()
            status, body = await get(socket_path, "/metrics", gzipped=gzipped)
            assert status == 200, body[:200]
            if first and gzipped:
                # Prometheus inflates what it gets; checked once per scraper, not timed.
                assert b"ipamd_subnet_used_addresses" in gzip.decompress(body)
                first = False
            times.append(time.perf_counter() - started)
            sizes.append(len(body))
            if len(times) % 50 == 0:
                report.write_text(
                    json.dumps(
                        {"count": len(times), "median_ms": sorted(times)[len(times) // 2] * 1000, "bytes": sizes[-1]}
                    )
                )

    await asyncio.gather(*(one() for _ in range(clients)))


async def create_subnets(socket_path: str, count: int) -> None:
    """The target subnet and count-1 /28s of their own providers, 16 requests at a time."""
    specs = [TARGET]
    for index, network in enumerate(netaddr.IPNetwork("198.18.0.0/15").subnet(28)):
        if len(specs) >= count:
            break
        specs.append({"name": f"s{index}", "cidrBlock": str(network), "provider": f"p{index}.ns"})
    queue = list(specs)

    async def worker() -> None:
        while queue:
            spec = queue.pop()
            status, body = await post_json(socket_path, "/v1/subnets", spec)
            assert status == 201, body

    await asyncio.gather(*(worker() for _ in range(16)))


def attachment(name: str) -> dict:
    return {
        "containerId": name,
        "ifName": "net1",
        "network": "target",
        "podNamespace": "bench",
        "podName": name,
        "ipam": {"type": "ipamd", "provider": "target.ns"},
    }


async def time_adds(socket_path: str, prefix: str, count: int) -> list[float]:
    samples = []
    for index in range(count):
        started = now()
        status, reply = await post_json(socket_path, "/v1/cni/add", attachment(f"{prefix}{index}"))
        samples.append(now() - started)
        assert status == 200, reply
    return samples


async def release(socket_path: str, prefix: str, count: int) -> None:
    for index in range(count):
        status, reply = await post_json(socket_path, "/v1/cni/del", attachment(f"{prefix}{index}"))
        assert status == 200, reply


def measure(directory: Path, subnets: int, scrapers: int, adds: int, gzipped: bool) -> dict[str, float]:
    daemon = Daemon(directory, f"sqlite:///{directory / f'm{subnets}.db'}", name=f"m{subnets}").start(timeout=60)
    try:
        started = time.perf_counter()
        asyncio.run(create_subnets(daemon.socket, subnets))
        created = time.perf_counter() - started
        # Warm-up, then ADDs alone.
        asyncio.run(time_adds(daemon.socket, "w", 20))
        asyncio.run(release(daemon.socket, "w", 20))
        alone = asyncio.run(time_adds(daemon.socket, "a", adds))
        asyncio.run(release(daemon.socket, "a", adds))
        # One scrape alone: its size and time (the first waits for the first refresh).
        asyncio.run(get(daemon.socket, "/metrics"))
        started = time.perf_counter()
        _, body = asyncio.run(get(daemon.socket, "/metrics", gzipped=gzipped))
        single_scrape = time.perf_counter() - started
        report = directory / f"scrapes{subnets}.json"
        scraper = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--scrape-into",
                str(report),
                "--socket",
                daemon.socket,
                "--scrapers",
                str(scrapers),
                *(["--identity"] if not gzipped else []),
            ],
            cwd=REPO,
        )
        try:
            deadline = time.monotonic() + 60
            while not report.exists():  # the scrapers are up once they have reported
                assert scraper.poll() is None and time.monotonic() < deadline, "the scrapers did not start"
                time.sleep(0.1)
            scraped = asyncio.run(time_adds(daemon.socket, "s", adds))
            scrapes = json.loads(report.read_text())
        finally:
            scraper.kill()
            scraper.wait()
        return {
            "create_s": created,
            "alone_ms": median_ms(alone),
            "scraped_ms": median_ms(scraped),
            "scrape_ms": single_scrape * 1000,
            "scrape_bytes": len(body),
            "scrapes": scrapes["count"],
            "scrape_median_ms": scrapes["median_ms"],
        }
    finally:
        daemon.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subnets", type=int, default=5000)
    parser.add_argument("--scrapers", type=int, default=8)
    parser.add_argument("--adds", type=int, default=200)
    parser.add_argument(
        "--identity", action="store_true", help="scrape without Accept-Encoding: gzip (Prometheus always sends it)"
    )
    parser.add_argument("--scrape-into", help=argparse.SUPPRESS)
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.scrape_into:
        asyncio.run(scrape_forever(args.socket, args.scrapers, Path(args.scrape_into), not args.identity))
        return
    print(f"machine: {machine()}")
    encoding = "identity" if args.identity else "gzip, as Prometheus asks"
    print(
        f"{args.adds} ADDs one at a time, alone and while {args.scrapers} clients scrape /metrics back to back ({encoding}; SQLite)"
    )
    with tempfile.TemporaryDirectory(prefix="ipm-", dir="/tmp") as tmp:
        results = {n: measure(Path(tmp), n, args.scrapers, args.adds, not args.identity) for n in (1, args.subnets)}
    print(
        f"{'subnets':>8} {'ADD alone':>10} {'ADD scraped':>12} {'scrape':>9} {'body':>10} {'scrapes':>8} {'scrape p50':>11}"
    )
    for subnets, r in results.items():
        print(
            f"{subnets:>8} {r['alone_ms']:>8.2f}ms {r['scraped_ms']:>10.2f}ms {r['scrape_ms']:>7.1f}ms {r['scrape_bytes']:>10,} "
            f"{r['scrapes']:>8} {r['scrape_median_ms']:>9.1f}ms"
        )
    base, large = results[1], results[args.subnets]
    ratio = large["scraped_ms"] / base["scraped_ms"]
    print(
        f"ratio: ADD median with {args.subnets} subnets / with 1 subnet, both scraped by {args.scrapers}: {ratio:.2f} (target <= 2)"
    )
    print(
        f"ratio: ADD median with {args.subnets} subnets scraped / 1 subnet alone: {large['scraped_ms'] / base['alone_ms']:.2f}"
    )


if __name__ == "__main__":
    main()
