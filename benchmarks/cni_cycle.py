"""One CNI ADD+DEL cycle through Debian's real macvlan plugin with ipamd as IPAM, versus
the same cycle with host-local, alternated in one run; and the plugin's own start-up time
next to host-local's.

    sudo .venv/bin/python benchmarks/cni_cycle.py [--cycles 200] [--startup-runs 100]

Needs root (a network namespace and a veth pair, both removed at the end) and
/usr/lib/cni (Debian's containernetworking-plugins), and the plugin built
(scripts/build-plugin.sh). The plugins run with a node's system PATH.

Five variants are timed cycle by cycle in rotating order, so that load from other
processes hits them alike:
  macvlan + ipamd       the goal: its median at most 1.25x the next one
  macvlan + host-local  what a node does today without a cluster-wide IPAM
  ipamd plugin alone    the IPAM binary called directly (no interface work)
  host-local alone
  ipamd daemon alone    the plugin's two requests sent in-process: the daemon's share
Each cycle is ADD then DEL of one attachment in the same namespace (macvlan's DEL
removes the link, so the next ADD starts from the same state).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, machine  # noqa: F401  (importing common puts the repo on sys.path)

from tests.e2e.e2e_support import NODE_PATH, SYSTEM_CNI_DIR, Topology, allocations, make_subnet, skip_reason
from tests.support.daemon import Daemon

DAEMON_ONLY = "ipamd daemon alone (HTTP add+del from the benchmark process)"


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def spawn_ms(argv: list[str], env: dict[str, str]) -> float:
    """Wall time of one process from spawn to exit, in ms (no pipes to read)."""
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env)
    _, status = os.waitpid(pid, 0)
    elapsed = (time.perf_counter() - started) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} exited with {os.waitstatus_to_exitcode(status)}")
    return elapsed


STARTUP_GOAL = 1.5
CYCLE_GOAL = 1.25
IPAMD_VERSION = "ipamd plugin, VERSION"
HOST_LOCAL_VERSION = "host-local, VERSION"


def startup(bin_dir: Path, runs: int) -> dict[str, list[float]]:
    env = {"PATH": NODE_PATH, "CNI_COMMAND": "VERSION"}
    variants = {
        IPAMD_VERSION: [str(bin_dir / "ipamd")],
        HOST_LOCAL_VERSION: [str(SYSTEM_CNI_DIR / "host-local")],
        # What every call of the retired Python shim paid before doing anything.
        "python3 -I -S -c pass (for reference)": ["/usr/bin/python3", "-I", "-S", "-c", "pass"],
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    devnull = os.open(os.devnull, os.O_RDWR)
    saved = os.dup(1), os.dup(0)
    os.dup2(devnull, 1)  # VERSION prints its answer; keep the report readable
    os.dup2(devnull, 0)
    try:
        for argv in variants.values():  # warm-up: page cache
            spawn_ms(argv, env)
        for index in range(runs):
            order = list(variants.items())
            if index % 2:
                order.reverse()
            for name, argv in order:
                samples[name].append(spawn_ms(argv, env))
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 0)
        os.close(devnull)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=200, help="ADD+DEL cycles per variant")
    parser.add_argument("--startup-runs", type=int, default=100)
    args = parser.parse_args()
    reason = skip_reason()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    print(f"machine: {machine()}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    workdir = Path(tempfile.mkdtemp(prefix="ipamd-bench-", dir="/tmp"))
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    for plugin in SYSTEM_CNI_DIR.iterdir():
        (bin_dir / plugin.name).symlink_to(plugin)
    subprocess.run(
        [sys.executable, "-m", "ipamd", "install-cni", "--dest", str(bin_dir)],
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    topo = Topology()
    daemon = Daemon(workdir, f"sqlite:///{workdir / 'ipamd.db'}")
    try:
        daemon.start()
        net = make_subnet(daemon, "198.18.0.0/16", name="bench")
        netns = topo.netns()
        master, _ = topo.veth()
        ipamd_ipam = {"type": "ipamd", "server_socket": daemon.socket, "provider": net["provider"]}
        host_local_ipam = {
            "type": "host-local",
            "dataDir": str(workdir / "host-local"),
            "ranges": [[{"subnet": "198.19.0.0/16"}]],
        }

        def macvlan(ipam: dict) -> dict:
            return {
                "cniVersion": "1.0.0",
                "name": "bench",
                "type": "macvlan",
                "master": master,
                "mode": "bridge",
                "ipam": ipam,
            }

        variants = {
            "macvlan + ipamd": ("macvlan", macvlan(ipamd_ipam)),
            "macvlan + host-local": ("macvlan", macvlan(host_local_ipam)),
            "ipamd plugin alone": ("ipamd", {"cniVersion": "1.0.0", "name": "bench", "ipam": ipamd_ipam}),
            "host-local alone": ("host-local", {"cniVersion": "1.0.0", "name": "bench", "ipam": host_local_ipam}),
        }
        names = [*variants, DAEMON_ONLY]
        configs: dict[str, tuple[str, str]] = {}
        for name, (plugin, config) in variants.items():
            path = workdir / f"{plugin}-{len(configs)}.json"
            path.write_text(json.dumps(config))
            configs[name] = (str(bin_dir / plugin), str(path))
        out, err = str(workdir / "stdout"), str(workdir / "stderr")

        def invoke(argv0: str, stdin: str, env: dict[str, str]) -> float:
            """One plugin run from spawn to exit (ms): stdin from the config file, output
            to files, so the harness adds as little as a runtime would."""
            actions = [
                (os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            ]
            started = time.perf_counter()
            pid = os.posix_spawn(argv0, [argv0], env, file_actions=actions)
            _, status = os.waitpid(pid, 0)
            elapsed = (time.perf_counter() - started) * 1000
            if os.waitstatus_to_exitcode(status) != 0:
                raise RuntimeError(
                    f"{argv0} {env['CNI_COMMAND']} failed: {Path(out).read_text()} {Path(err).read_text()}"
                )
            return elapsed

        direct_config = json.dumps({"cniVersion": "1.0.0", "name": "bench", "ipam": ipamd_ipam})

        def daemon_cycle(index: int) -> float:
            """The daemon's share: the plugin's two requests (wire protocol 1) sent from this process."""
            env = {
                "CNI_CONTAINERID": f"bench{index:06d}",
                "CNI_IFNAME": "net1",
                "CNI_NETNS": f"/var/run/netns/{netns}",
                "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{index};K8S_POD_UID=uid-{index}",
            }
            started = time.perf_counter()
            added = daemon.client.post(
                "/v1/cni/exec", {"wire": 1, "env": {**env, "CNI_COMMAND": "ADD"}, "config": direct_config}
            )
            deleted = daemon.client.post(
                "/v1/cni/exec", {"wire": 1, "env": {**env, "CNI_COMMAND": "DEL"}, "config": direct_config}
            )
            elapsed = (time.perf_counter() - started) * 1000
            if added.body.get("exitCode") != 0 or deleted.body.get("exitCode") != 0:
                raise RuntimeError(f"daemon: {added.body} {deleted.body}")
            return elapsed

        def cycle(name: str, index: int) -> float:
            if name == DAEMON_ONLY:
                return daemon_cycle(index)
            argv0, stdin = configs[name]
            env = {
                "PATH": NODE_PATH,
                "CNI_PATH": str(bin_dir),
                "CNI_CONTAINERID": f"bench{index:06d}",
                "CNI_NETNS": f"/var/run/netns/{netns}",
                "CNI_IFNAME": "net1",
                "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{index};K8S_POD_UID=uid-{index}",
            }
            return invoke(argv0, stdin, {**env, "CNI_COMMAND": "ADD"}) + invoke(
                argv0, stdin, {**env, "CNI_COMMAND": "DEL"}
            )

        samples: dict[str, list[float]] = {name: [] for name in names}
        for name in names:  # warm-up, not recorded
            cycle(name, 0)
        for index in range(1, args.cycles + 1):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                samples[name].append(cycle(name, index))
        leaked = allocations(daemon, "bench")
        assert leaked == [], f"{len(leaked)} allocations left after the cycles"

        start_samples = startup(bin_dir, args.startup_runs)
    finally:
        daemon.stop()
        problems = topo.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
        if problems:
            print(f"cleanup problems: {problems}", file=sys.stderr)

    print(f"load average after:  {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"\nADD+DEL cycle, {args.cycles} per variant, alternated (ms):")
    print("| variant | median | p10 | p90 |")
    print("|---|---|---|---|")
    for name, values in samples.items():
        print(
            f"| {name} | {statistics.median(values):.1f} | {percentile(values, 0.1):.1f} | {percentile(values, 0.9):.1f} |"
        )
    ratio = statistics.median(samples["macvlan + ipamd"]) / statistics.median(samples["macvlan + host-local"])
    ratio_p10 = percentile(samples["macvlan + ipamd"], 0.1) / percentile(samples["macvlan + host-local"], 0.1)
    print(
        f"\nratio macvlan+ipamd / macvlan+host-local: median {ratio:.2f}, p10 {ratio_p10:.2f} (goal: at most {CYCLE_GOAL})"
        f" -> {'met' if ratio <= CYCLE_GOAL else 'NOT met'}"
    )
    print(f"\nstart-up, {args.startup_runs} runs each, interleaved (ms):")
    print("| variant | median | p10 |")
    print("|---|---|---|")
    for name, values in start_samples.items():
        print(f"| {name} | {statistics.median(values):.2f} | {percentile(values, 0.1):.2f} |")
    start_ratio = statistics.median(start_samples[IPAMD_VERSION]) / statistics.median(start_samples[HOST_LOCAL_VERSION])
    print(
        f"\nratio ipamd VERSION / host-local VERSION: median {start_ratio:.2f} (goal: at most {STARTUP_GOAL})"
        f" -> {'met' if start_ratio <= STARTUP_GOAL else 'NOT met'}"
    )
    return 0 if ratio <= CYCLE_GOAL and start_ratio <= STARTUP_GOAL else 1


if __name__ == "__main__":
    sys.exit(main())
