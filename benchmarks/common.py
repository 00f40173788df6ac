"""Shared helpers for benchmarks: machine description, a daemon, an async socket client."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores, {model}{memory}, Linux {platform.release()}, Python {platform.python_version()}"


async def post_json(socket_path: str, path: str, body: dict) -> tuple[int, dict]:
    """One HTTP/1.1 request over a fresh Unix connection, as the CNI shim makes it."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    payload = json.dumps(body).encode()
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: ipamd\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode() + payload
    )
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body_bytes = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"chunked" in head.lower():
        body_bytes = _dechunk(body_bytes)
    return status, json.loads(body_bytes) if body_bytes else {}


def _dechunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2:]
    return out


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def now() -> float:
    return time.perf_counter()
