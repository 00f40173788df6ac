"""A burst of pod attachments across a cluster, modelled on Spiderpool's IPAM benchmark
(1000 pods on 10 nodes, docs/concepts/ipam-performance.md there): 1000 attachments through
the real CNI plugin (``plugin/``, built and installed with ``ipamd install-cni``) spread over 4
daemons ("nodes") on one PostgreSQL database, 20 plugin executions in flight; the baseline
is the same burst through Debian's ``host-local`` (one data directory and range per node),
in the same run. Then the same for DEL.

    .venv/bin/python benchmarks/cluster_burst.py [--attachments 1000] [--in-flight 20] [--rounds 2]

IPAM plugins do not touch network namespaces, so no namespace is created: each execution
gets the network config on stdin and ``CNI_*`` in the environment, as a runtime (or Multus,
or macvlan) gives it, with a node's system PATH. Needs /usr/lib/cni/host-local (Debian's
containernetworking-plugins) and the plugin built (scripts/build-plugin.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from common import REPO, machine  # noqa: F401  (importing common puts the repo on sys.path)

from ipamd.cli import install_cni
from tests.cluster.clusterkit import Cluster, json_getter
from tests.support.postgres import PostgresServer, create_database

GOAL = 1.5

HOST_LOCAL = Path("/usr/lib/cni/host-local")
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
NODES = 4
CLUSTER_CIDR = "198.18.0.0/16"
# host-local has no cluster view: each node gets its own quarter, as with per-node podCIDRs.
NODE_CIDRS = ["198.18.0.0/18", "198.18.64.0/18", "198.18.128.0/18", "198.18.192.0/18"]


def ipamd_config(socket: str) -> bytes:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "burst",
            "type": "macvlan",
            "ipam": {"type": "ipamd", "server_socket": socket, "provider": "burst.default"},
        }
    ).encode()


def host_local_config(node: int, data_dir: Path) -> bytes:
    return json.dumps(
        {
            "cniVersion": "1.0.0",
            "name": "burst",
            "type": "macvlan",
            "ipam": {
                "type": "host-local",
                "ranges": [[{"subnet": NODE_CIDRS[node]}]],
                "dataDir": str(data_dir / f"node{node}"),
            },
        }
    ).encode()


async def burst(
    plugin: Path, command: str, configs: list[bytes], *, in_flight: int, cni_path: Path
) -> tuple[float, list[float], list[str]]:
    """Runs the plugin once per config, ``in_flight`` at a time; returns wall time, latencies, addresses."""
    gate = asyncio.Semaphore(in_flight)
    latencies: list[float] = []
    addresses: list[str] = []

    async def one(index: int, config: bytes) -> None:
        env = {
            "PATH": NODE_PATH,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"burst{index:06d}",
            "CNI_NETNS": f"/var/run/netns/burst{index}",
            "CNI_IFNAME": "net1",
            "CNI_PATH": str(cni_path),
            "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=burst;K8S_POD_NAME=pod-{index};K8S_POD_UID=uid-{index}",
        }
        async with gate:
            started = time.perf_counter()
            process = await asyncio.create_subprocess_exec(
                str(plugin),
                env=env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await process.communicate(config)
            latencies.append(time.perf_counter() - started)
        if process.returncode != 0:
            raise RuntimeError(
                f"{plugin.name} {command} #{index} exited {process.returncode}: {out.decode()} {err.decode()}"
            )
        if command == "ADD":
            addresses.append(json.loads(out)["ips"][0]["address"])

    started = time.perf_counter()
    await asyncio.gather(*(one(i, c) for i, c in enumerate(configs)))
    return time.perf_counter() - started, sorted(latencies), addresses


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User + system CPU of a live process (and of its children it has waited for)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped_children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu(server: PostgresServer) -> float:
    """The PostgreSQL server's CPU so far: the postmaster, its ended backends, its live ones."""
    master = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(master, reaped_children=True)
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rpartition(")")[2].split()[1]) == master:
                total += cpu_seconds(int(entry.name))
        except (OSError, ValueError):
            continue  # ended meanwhile
    return total


def cpu_now(cluster: Cluster, server: PostgresServer) -> dict[str, float]:
    """CPU seconds so far by part: plugin executions (this process's waited-for children),
    the daemons, PostgreSQL."""
    mine = os.times()
    return {
        "plugins": mine.children_user + mine.children_system,
        "daemons": sum(cpu_seconds(d.process.pid) for d in cluster.daemons if d.process is not None),
        "postgresql": postgres_cpu(server),
    }


def summary(label: str, wall: float, latencies: list[float], count: int) -> str:
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    return f"{label}: {wall:.1f} s, {count / wall:.0f}/s, per execution p50 {p50:.0f} ms p99 {p99:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--attachments", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if not HOST_LOCAL.exists():
        raise SystemExit(f"{HOST_LOCAL} missing: install Debian's containernetworking-plugins")
    print(f"machine: {machine()}")
    print(
        f"{args.attachments} attachments over {NODES} nodes, {args.in_flight} plugin executions in flight; best of {args.rounds} rounds"
    )
    best: dict[str, tuple[float, list[float]]] = {}
    cpu: dict[str, list[dict[str, float]]] = {
        f"{label} {command}": [] for label in ("ipamd", "host-local") for command in ("ADD", "DEL")
    }
    server = PostgresServer.start()
    try:
        with tempfile.TemporaryDirectory(prefix="ipb-", dir="/tmp") as directory:
            workdir = Path(directory)
            cni_bin = workdir / "bin"
            ipamd_plugin = cni_bin / "ipamd"
            assert ipamd_plugin in install_cni(str(cni_bin), ["ipamd"])
            cluster = Cluster(workdir, create_database(server.admin_url), NODES).start()
            try:
                created = cluster.daemons[0].client.post(
                    "/v1/subnets", {"name": "burst", "cidrBlock": CLUSTER_CIDR, "provider": "burst.default"}
                )
                assert created.status == 201, created.body
                get = json_getter(cluster.sockets[0])
                ipamd_configs = [ipamd_config(cluster.sockets[i % NODES]) for i in range(args.attachments)]
                for round_number in range(args.rounds):
                    data_dir = workdir / f"host-local-{round_number}"
                    local_configs = [host_local_config(i % NODES, data_dir) for i in range(args.attachments)]
                    order = [("ipamd", ipamd_plugin, ipamd_configs), ("host-local", HOST_LOCAL, local_configs)]
                    if round_number % 2:
                        order.reverse()
                    for command in ("ADD", "DEL"):
                        for label, plugin, configs in order:
                            before = cpu_now(cluster, server)
                            wall, latencies, addresses = asyncio.run(
                                burst(plugin, command, configs, in_flight=args.in_flight, cni_path=cni_bin)
                            )
                            after = cpu_now(cluster, server)
                            cpu[f"{label} {command}"].append(
                                {part: (after[part] - before[part]) * 1000 / args.attachments for part in after}
                            )
                            if command == "ADD":
                                assert len(set(addresses)) == args.attachments, f"{label}: duplicate addresses"
                                assert all(
                                    ipaddress.ip_interface(a).ip in ipaddress.ip_network(CLUSTER_CIDR)
                                    for a in addresses
                                )
                            if label == "ipamd":
                                used = get("/v1/subnets/burst")["usage"]["v4"]["used"]
                                assert used == (args.attachments if command == "ADD" else 0), (command, used)
                            key = f"{label} {command}"
                            print(
                                f"  round {round_number + 1}: " + summary(key, wall, latencies, args.attachments),
                                flush=True,
                            )
                            if key not in best or wall < best[key][0]:
                                best[key] = (wall, latencies)
            finally:
                cluster.stop()
    finally:
        server.destroy()
    print()
    print(f"goal: ADD wall time ratio at most {GOAL}")
    print("| burst | ipamd (4 daemons, PostgreSQL) | host-local | ratio ipamd / host-local |")
    print("|---|---|---|---|")
    for command in ("ADD", "DEL"):
        ours, theirs = best[f"ipamd {command}"], best[f"host-local {command}"]
        print(
            f"| {args.attachments} x {command}, wall | {ours[0]:.1f} s ({args.attachments / ours[0]:.0f}/s) | "
            f"{theirs[0]:.1f} s ({args.attachments / theirs[0]:.0f}/s) | {ours[0] / theirs[0]:.2f} |"
        )
        p50 = statistics.median(ours[1]), statistics.median(theirs[1])
        print(
            f"| {command} per execution, p50 | {p50[0] * 1000:.0f} ms | {p50[1] * 1000:.0f} ms | {p50[0] / p50[1]:.2f} |"
        )
    print()
    print("CPU per attachment (ms, mean over rounds): where the time goes")
    print("| burst | plugin executions | daemons | PostgreSQL |")
    print("|---|---|---|---|")
    for key, rounds in cpu.items():
        mean = {part: statistics.mean(r[part] for r in rounds) for part in rounds[0]}
        print(f"| {key} | {mean['plugins']:.1f} | {mean['daemons']:.1f} | {mean['postgresql']:.1f} |")


if __name__ == "__main__":
    main()
