"""Database faults named, readiness honest (issue 12), on a running daemon and real files.

- SQLite on a small tmpfs filled by allocations: writes answer 503 / CNI code 11 naming
  "disk full", /readyz turns 503, one log line when it starts and one when it ends, and the
  daemon recovers by itself once space is freed; nothing acknowledged is lost.
- The database file deleted under a running daemon: every write sent afterwards is refused
  with a message naming the file, /readyz turns 503, and every acknowledged write is in the
  copy the daemon makes beside it (and says so), which serves again once put back.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.clusterkit import add_body, request, socket_dir
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

SUBNET = {"name": "f", "cidrBlock": "198.18.0.0/16", "provider": "f.ns"}


def add(daemon: Daemon, pod: str) -> tuple[int, dict]:
    reply = asyncio.run(request(daemon.socket, "POST", "/v1/cni/add", add_body(pod, provider="f.ns")))
    return reply.status, reply.body


def held_pods(database: Path) -> set[str]:
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {row[0] for row in connection.execute("SELECT pod FROM allocations")}
    finally:
        connection.close()


@pytest.fixture
def small_tmpfs() -> Iterator[Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.fail("this test needs root and mount(8): it mounts a 3 MiB tmpfs")
    path = Path(tempfile.mkdtemp(prefix="ipamd-full-", dir="/tmp"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)
        path.rmdir()


def free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


@pytest.mark.root
def test_a_full_disk_is_named_makes_the_daemon_unready_and_clears_by_itself(small_tmpfs: Path):
    database = small_tmpfs / "ipamd.db"
    with socket_dir() as sockets:
        daemon = Daemon(sockets, f"sqlite:///{database}").start()
        try:
            assert daemon.client.post("/v1/subnets", SUBNET).status == 201
            # Leave the database a little room, then allocate until it runs out.
            filler = small_tmpfs / "filler"
            filler.write_bytes(b"\0" * max(free_bytes(small_tmpfs) - 192 * 1024, 0))
            acknowledged, refused = [], []
            for number in range(5000):
                status, body = add(daemon, f"p{number}")
                if status == 200:
                    acknowledged.append(f"p{number}")
                    continue
                refused.append(body)
                if len(refused) == 5:
                    break
            assert len(refused) == 5, "the disk never filled up"
            for body in refused:
                error = body["error"]
                assert (error["code"], error["cniCode"], error["details"]) == (
                    "unavailable",
                    11,
                    {"fault": "disk full"},
                ), error
                assert error["message"].startswith(f"database {database}: disk full ("), error["message"]
            ready = daemon.client.get("/readyz")
            assert ready.status == 503 and "database writes fail" in ready.message and "disk full" in ready.message, (
                ready.body
            )
            # Reads still work while writes do not.
            assert daemon.client.get("/v1/subnets/f").status == 200

            filler.unlink()
            wait_for(
                lambda: daemon.client.get("/readyz").status == 200, timeout=30, what="readiness after space was freed"
            )
            assert add(daemon, "after")[0] == 200
            log = daemon.log()
            assert log.count("database writes fail") == 1, log[-4000:]
            assert (
                len(
                    re.findall(
                        r"database writes work again after [0-9.]+ s of disk full; \d+ request\(s\) failed meanwhile",
                        log,
                    )
                )
                == 1
            ), log[-4000:]
            assert "database reads fail" not in log
        finally:
            daemon.stop()
        assert set(acknowledged) | {"after"} <= held_pods(database)


def test_the_database_file_deleted_under_the_daemon_refuses_writes_naming_it(tmp_path: Path):
    database = tmp_path / "ipamd.db"
    with socket_dir() as sockets:
        daemon = Daemon(sockets, f"sqlite:///{database}").start()
        try:
            assert daemon.client.post("/v1/subnets", SUBNET).status == 201
            acknowledged = [f"before{i}" for i in range(20) if add(daemon, f"before{i}")[0] == 200]
            assert len(acknowledged) == 20

            # Writers keep going while a node tool cleans the directory.
            answers: list[tuple[float, str, int, dict]] = []
            stop = threading.Event()

            def writer(name: str) -> None:
                number = 0
                while not stop.is_set():
                    sent = time.monotonic()
                    status, body = add(daemon, f"{name}-{number}")
                    answers.append((sent, f"{name}-{number}", status, body))
                    number += 1

            threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(3)]
            for thread in threads:
                thread.start()
            wait_for(lambda: len(answers) >= 30, timeout=30, what="writes before the deletion")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{database}{suffix}").unlink(missing_ok=True)
            deleted_at = time.monotonic()
            wait_for(
                lambda: sum(sent > deleted_at for sent, *_ in answers) >= 10,
                timeout=30,
                what="writes after the deletion",
            )
            stop.set()
            for thread in threads:
                thread.join()

            after = [(pod, status, body) for sent, pod, status, body in answers if sent > deleted_at]
            for pod, status, body in after:
                assert status == 503, (pod, body)
                error = body["error"]
                assert (error["cniCode"], error["details"]) == (5, {"fault": "file gone"}), error
                assert f"{database} is no longer there" in error["message"], error["message"]
            acknowledged += [pod for _, pod, status, _ in answers if status == 200]
            ready = daemon.client.get("/readyz")
            assert ready.status == 503 and f"{database} is no longer there" in ready.message, ready.body
            wait_for(lambda: "database writes fail: " in daemon.log(), timeout=10, what="the log line")
            log = daemon.log()
            assert log.count("database writes fail") == 1, log[-4000:]

            # What the daemon had written is copied where its answers and its log say.
            rescued = Path(f"{database}.rescued")
            assert f"what ipamd had written is copied to {rescued}" in after[-1][2]["error"]["message"]
            assert f"what ipamd had written is copied to {rescued}" in log
        finally:
            daemon.stop()
        assert set(acknowledged) <= held_pods(rescued)

        # Put back, the file serves again with everything acknowledged in it.
        shutil.copy(rescued, database)
        daemon = Daemon(sockets, f"sqlite:///{database}").start()
        try:
            for pod in acknowledged[:5]:
                assert add(daemon, pod)[0] == 200
            items = daemon.client.get("/v1/allocations?subnet=f").body["items"]
            assert set(acknowledged) <= {item["owner"]["pod"] for item in items}
        finally:
            daemon.stop()
