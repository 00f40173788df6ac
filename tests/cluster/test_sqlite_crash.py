"""One daemon on SQLite, SIGKILLed again and again while concurrent clients allocate and
release. After every kill the file passes ``PRAGMA integrity_check`` and holds every
acknowledged allocation (and none whose release was acknowledged); after the last one
the usage counts still add up."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import sqlite3
from pathlib import Path

from tests.cluster.clusterkit import (
    add_body,
    call_anywhere,
    check_subnet_consistency,
    json_getter,
    request,
    sqlite_integrity,
)
from tests.support.daemon import Daemon
from tests.support.waiting import async_wait_for

SUBNETS = (
    {"name": "dual", "cidrBlock": "203.0.113.0/24,2001:db8:7::/64", "provider": "dual.ns"},
    {"name": "wide", "cidrBlock": "198.18.0.0/16", "provider": "wide.ns"},
)


def _rows(path: Path) -> dict[str, list[str]]:
    """Returns pod -> sorted addresses of every allocation row, read straight from the file."""
    connection = sqlite3.connect(path, timeout=30)
    try:
        rows = connection.execute("SELECT pod, address_v4, address_v6 FROM allocations").fetchall()
    finally:
        connection.close()
    held = {}
    for pod, v4, v6 in rows:
        addresses = []
        if v4 is not None:
            addresses.append(str(ipaddress.IPv4Address(int.from_bytes(v4, "big"))))
        if v6 is not None:
            addresses.append(str(ipaddress.IPv6Address(int.from_bytes(v6, "big"))))
        held[pod] = sorted(addresses)
    return held


def test_sigkill_never_corrupts_or_loses_acknowledged_writes(tmp_path: Path, sockdir: Path) -> None:
    database = tmp_path / "ipamd.db"
    daemon = Daemon(sockdir, f"sqlite:///{database}").start()
    try:
        for spec in SUBNETS:
            assert asyncio.run(request(daemon.socket, "POST", "/v1/subnets", spec)).status == 201
        rng = random.Random(3)
        jobs = [(name, f"{name[0]}{i}", rng.random() < 0.3) for name in ("dual", "wide") for i in range(180)]
        rng.shuffle(jobs)
        # What the clients were told: pod -> addresses while held; released pods are dropped.
        held: dict[str, list[str]] = {}
        released: set[str] = set()
        # A DEL in flight when the daemon dies may or may not have committed.
        releasing: set[str] = set()
        kills = 0
        checks: list[tuple[int, int]] = []

        async def worker(queue: asyncio.Queue[tuple[str, str, bool]]) -> None:
            while not queue.empty():
                subnet, pod, release = queue.get_nowait()
                body = add_body(pod, provider=f"{subnet}.ns")
                reply, _ = await call_anywhere([daemon.socket], "POST", "/v1/cni/add", body, rng=rng)
                assert reply.status == 200, reply.body
                held[pod] = sorted(ip["address"].partition("/")[0] for ip in reply.body["ips"])
                if release:
                    releasing.add(pod)
                    reply, _ = await call_anywhere([daemon.socket], "POST", "/v1/cni/del", body, rng=rng)
                    assert reply.status == 200, reply.body
                    del held[pod]
                    released.add(pod)
                    releasing.discard(pod)

        async def killer() -> None:
            nonlocal kills
            for milestone in (40, 110, 180, 250, 320):
                await async_wait_for(
                    lambda milestone=milestone: len(held) + len(released) >= milestone,
                    timeout=120,
                    interval=0.002,
                    what=f"{milestone} acknowledged calls",
                )
                daemon.kill()
                kills += 1
                # What was acknowledged before the kill must be on disk, exactly.
                acknowledged = {pod: addresses for pod, addresses in held.items() if pod not in releasing}
                gone = set(released)
                assert sqlite_integrity(database) == ["ok"]
                on_disk = await asyncio.to_thread(_rows, database)
                for pod, addresses in acknowledged.items():
                    assert on_disk.get(pod) == addresses, (pod, addresses, on_disk.get(pod))
                assert not gone & set(on_disk), sorted(gone & set(on_disk))
                checks.append((len(acknowledged), len(gone)))
                await asyncio.to_thread(daemon.start)

        async def run() -> None:
            queue: asyncio.Queue[tuple[str, str, bool]] = asyncio.Queue()
            for job in jobs:
                queue.put_nowait(job)
            kill_task = asyncio.create_task(killer())
            await asyncio.gather(*(worker(queue) for _ in range(16)))
            await kill_task

        asyncio.run(run())
        assert kills == 5
        daemon.stop()
        assert sqlite_integrity(database) == ["ok"]
        assert _rows(database) == held
        daemon.start()
        get = json_getter(daemon.socket)
        for spec in SUBNETS:
            state = check_subnet_consistency(get, spec["name"])
            assert {row["owner"]["pod"] for row in state["rows"]} == {pod for pod in held if pod[0] == spec["name"][0]}
        print(f"{kills} SIGKILLs; acknowledged (held, released) at each kill: {checks}")
    finally:
        daemon.stop()
