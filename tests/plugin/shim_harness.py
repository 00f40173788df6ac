"""Test harness for the CNI shim: a fake ipamd on a Unix socket, and a shim runner.

The fake daemon is the only test double: a threading stdlib HTTP server on a Unix socket
that records every request and answers from a table the test fills in. The shim itself
always runs as a separate process, exactly as a container runtime would run it.
"""

from __future__ import annotations

import http.server
import json
import os
import socketserver
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "plugin" / "ipamd"
# The interpreter that runs the shim; SHIM_PYTHON=/path/to/python3.8 runs the suite
# against an older Python, as a node's /usr/bin/python3 may be.
SHIM_PYTHON = os.environ.get("SHIM_PYTHON") or sys.executable


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when there was no body
    raw_body: bytes


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-encoded unless it is bytes
    framing: str = "length"  # "length" (Content-Length), "chunked" or "eof" (close ends it)
    hang_up: bool = False  # close the connection without answering
    interim: bool = False  # send "100 Continue" before the real answer


@dataclass
class FakeDaemon:
    socket_path: str
    requests: list[Recorded] = field(default_factory=list)
    answers: dict[tuple[str, str], Answer] = field(default_factory=dict)

    def answer(self, method: str, path: str, status: int, body: Any = None, **kw: Any) -> None:
        self.answers[(method, path)] = Answer(status, body, **kw)

    @property
    def only_request(self) -> Recorded:
        assert len(self.requests) == 1, self.requests
        return self.requests[0]


class FakeDaemonHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "UnixHTTPServer"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass  # the base class formats client_address, which a Unix socket does not have

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        daemon = self.server.fake
        daemon.requests.append(
            Recorded(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=json.loads(raw) if raw else None,
                raw_body=raw,
            )
        )
        answer = daemon.answers.get(
            (self.command, self.path),
            Answer(404, {"error": {"code": "not_found", "message": "no route", "cniCode": 100}}),
        )
        if answer.hang_up:
            self.close_connection = True
            return
        payload = answer.body if isinstance(answer.body, bytes) else (
            b"" if answer.body is None else json.dumps(answer.body).encode()
        )
        if answer.interim:
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        if answer.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # Odd-sized pieces so that chunk boundaries fall inside JSON tokens.
            for start in range(0, len(payload), 7):
                piece = payload[start : start + 7]
                self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\nX-Trailer: yes\r\n\r\n")
        elif answer.framing == "eof":
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        self.close_connection = True

    do_GET = _serve
    do_POST = _serve


class UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    fake: FakeDaemon


@dataclass
class ShimRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> Any:
        return json.loads(self.stdout)


def run_shim(
    command: str | None,
    config: Any,
    *,
    container_id: str | None = "ctr1",
    ifname: str | None = "net1",
    netns: str | None = "/var/run/netns/test",
    cni_args: str | None = None,
    extra_env: dict[str, str] | None = None,
    argv: list[str] | None = None,
) -> ShimRun:
    """Execute the shim like a runtime does: config on stdin, CNI_* in the environment."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CNI_PATH": "/opt/cni/bin"}
    for name, value in (
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container_id),
        ("CNI_IFNAME", ifname),
        ("CNI_NETNS", netns),
        ("CNI_ARGS", cni_args),
    ):
        if value is not None:
            env[name] = value
    env.update(extra_env or {})
    stdin = config if isinstance(config, bytes) else (
        b"" if config is None else json.dumps(config).encode()
    )
    proc = subprocess.run(
        argv or [SHIM_PYTHON, "-I", "-S", str(SHIM)],
        input=stdin,
        env=env,
        capture_output=True,
        timeout=60,
    )
    return ShimRun(proc.returncode, proc.stdout.decode(), proc.stderr.decode())
