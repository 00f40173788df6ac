"""Start-up cost of the CNI shim, end to end, as docs/shim.md reports it.

    python3 tests/plugin/bench_shim_startup.py [--runs 300] [--python /usr/bin/python3]

Not a test (pytest does not collect it). Every variant is one process spawned with
posix_spawn and waited for; variants are interleaved run by run so that load from other
processes hits them alike, and the median and the 10th percentile are printed.

Variants:
  bare       python3 -I -S -c pass: the floor no Python shim can go below
  heavy      python3 -I -S -c "import json, socket, http.client": what a shim written
             the usual way pays in imports alone, before doing anything
  VERSION    the shim answering VERSION (no socket)
  ADD        the shim doing a full ADD against a stub daemon on a Unix socket that
             answers a canned result at once (the daemon's own work is excluded)
  ADD-pyc    the same ADD from a pre-compiled .pyc of the shim: the difference to ADD
             is what compiling the source costs on every run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

SHIM = Path(__file__).resolve().parents[2] / "plugin" / "ipamd"

ADD_ANSWER = json.dumps(
    {
        "allocationId": 1,
        "subnet": "net1",
        "ips": [{"address": "192.0.2.11/24", "gateway": "192.0.2.1", "family": 4}],
        "routes": [],
        "dns": {},
        "mac": None,
    }
).encode()


COMPILE = "import py_compile; py_compile.compile(%r, cfile=%r, doraise=True)"


def stub_daemon(path: str) -> None:
    """Answer every connection with the canned add result, as fast as possible."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                while len(body) < length:
                    body += conn.recv(65536)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                    % (len(ADD_ANSWER), ADD_ANSWER)
                )

    threading.Thread(target=serve, daemon=True).start()


def spawn_ms(argv: list[str], env: dict[str, str], stdin_path: str) -> float:
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, stdin_path, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
        (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
    ]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions)
    _, status = os.waitpid(pid, 0)
    elapsed = (time.perf_counter() - started) * 1000.0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit("%s failed" % argv)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--python", default="/usr/bin/python3")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="shimbench-", dir="/tmp"))
    sock = str(work / "ipamd.sock")
    stub_daemon(sock)
    add_conf = work / "add.json"
    add_conf.write_text(
        json.dumps(
            {
                "cniVersion": "1.0.0",
                "name": "net1",
                "type": "macvlan",
                "ipam": {"type": "ipamd", "server_socket": sock, "provider": "p"},
            }
        )
    )
    version_conf = work / "version.json"
    version_conf.write_text('{"cniVersion": "1.0.0"}')
    base_env = {"PATH": "/usr/bin:/bin", "CNI_PATH": "/opt/cni/bin"}
    cni_env = dict(
        base_env,
        CNI_CONTAINERID="3f6940ab5ab4",
        CNI_IFNAME="net1",
        CNI_NETNS="/var/run/netns/x",
        CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
    )
    # A .pyc run directly; compiled by the interpreter under test (the magic must match).
    pyc = str(work / "ipamd.pyc")
    os.spawnv(os.P_WAIT, args.python, [args.python, "-c", COMPILE % (str(SHIM), pyc)])
    py = [args.python, "-I", "-S"]
    variants = {
        "bare": (py + ["-c", "pass"], base_env, str(version_conf)),
        "heavy": (py + ["-c", "import json, socket, http.client"], base_env, str(version_conf)),
        "VERSION": (py + [str(SHIM)], dict(base_env, CNI_COMMAND="VERSION"), str(version_conf)),
        "ADD": (py + [str(SHIM)], dict(cni_env, CNI_COMMAND="ADD"), str(add_conf)),
        "ADD-pyc": (py + [pyc], dict(cni_env, CNI_COMMAND="ADD"), str(add_conf)),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for name, (argv, env, stdin) in variants.items():  # warm the page cache
            spawn_ms(argv, env, stdin)
        for _ in range(args.runs):
            for name, (argv, env, stdin) in variants.items():
                samples[name].append(spawn_ms(argv, env, stdin))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print("python: %s, %d runs each, %d CPUs" % (args.python, args.runs, os.cpu_count() or 0))
    print("%-8s %8s %8s" % ("variant", "median", "p10"))
    for name, values in samples.items():
        values.sort()
        p10 = values[len(values) // 10]
        print("%-8s %7.2fms %7.2fms" % (name, statistics.median(values), p10))


if __name__ == "__main__":
    main()
