"""Kubernetes mode at cluster scale: the reconciler's memory, and the Lease load of 1,000 nodes.

    .venv/bin/python benchmarks/kube_load.py [--pods 5000,20000] [--allocated N] [--nodes 1000]

1. Peak RSS (VmHWM) of a daemon whose first reconcile pass reads N realistic pods (about
   7 KB of JSON each, managedFields included; tests/kube_double/realistic.py), of which
   the first ``--allocated`` hold an allocation (default: all of them, the worst case:
   every PodState is kept). The baseline is the same daemon over an empty cluster, in the
   same run; the goal is <= 200 MiB at 20,000 pods and the same within 20% at 5,000.
2. Lease requests per minute of N daemons (one holds the Lease), the others polling at
   the lease duration with jitter (now) vs at the renewal period (before), counted on the
   API double over 30 s of real time.
3. Pod list and watch requests of N daemons' node-scoped pod watches (the informer of
   ipamd/k8s/watch.py, now vs the loop it replaced), counted on the API double through
   two faults a real cluster has: an API server restart (every watch cut, the watch
   history gone, so every node lists again) and an API server that ends every watch as
   soon as it opens (a draining instance behind the load balancer). Lists are split by
   where a real API server serves them: its watch cache (``resourceVersion=0``) or etcd.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import re
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402
from ipamd.errors import IpamError  # noqa: E402
from ipamd.k8s.client import Gone, KubeClient  # noqa: E402
from ipamd.k8s.leader import LeaseElector  # noqa: E402
from ipamd.k8s.objects import object_key  # noqa: E402
from ipamd.k8s.watch import Backoff, Informer  # noqa: E402
from tests.kube_double import KubeApiDouble  # noqa: E402
from tests.kube_double.handlers import RecordedRequest  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402

SUBNET = {"name": "bench", "cidrBlock": "198.18.0.0/15", "provider": "bench"}
NAMESPACE = "bench"


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM for {pid}")


def fill_allocations(path: Path, count: int) -> None:
    """One CNI allocation per pod, written straight into the database."""
    connection = sqlite3.connect(path)
    subnet_id = connection.execute("SELECT id FROM subnets WHERE name = 'bench'").fetchone()[0]
    first = int.from_bytes(bytes([198, 18, 0, 0]), "big") + 2
    with connection:
        connection.executemany(
            "INSERT INTO allocations (subnet_id, network_key, namespace, pod, interface, address_v4, container_id, node, origin, created_at) "
            "VALUES (?, 'bench', ?, ?, 'net1', ?, ?, ?, 'cni', CURRENT_TIMESTAMP)",
            [
                (subnet_id, NAMESPACE, f"pod-{i}", (first + i).to_bytes(4, "big"), f"c{i}", f"node{i % 100}")
                for i in range(count)
            ],
        )
        updated = connection.execute(
            "UPDATE free_ranges SET first = ? WHERE subnet_id = ? AND family = 4 AND pool_id IS NULL",
            ((first + count).to_bytes(4, "big"), subnet_id),
        ).rowcount
        assert updated == 1
    connection.close()


def reconciler_peak(workdir: Path, pods: int, allocated: int | None = None) -> tuple[int, float, int]:
    """Returns the daemon's peak RSS (KiB) after its first pass over ``pods`` pods, the pass's seconds and list pages."""
    run = workdir / f"pods-{pods}"
    run.mkdir()
    url = f"sqlite:///{run / 'ipamd.db'}"
    setup = Daemon(run, url, name="setup").start()
    try:
        assert setup.client.post("/v1/subnets", SUBNET).status == 201
    finally:
        setup.stop()
    allocated = pods if allocated is None else min(allocated, pods)
    fill_allocations(run / "ipamd.db", allocated)
    handle = KubeApiDouble.start_in_thread(history_limit=100)
    try:
        for i in range(pods):
            handle.api.create_pod(f"pod-{i}", NAMESPACE, node_name=f"node{i % 100}", phase="Running", realistic=True)
        kubeconfig = handle.write_kubeconfig(run / "kubeconfig")
        daemon = Daemon(
            run,
            url,
            extra_args=(
                "--kubernetes",
                "--kubeconfig",
                str(kubeconfig),
                "--node-name",
                "n1",
                "--reconcile-interval",
                "3600",
                "--release-grace",
                "3600",
                "--log-level",
                "debug",
            ),
        )
        started = time.monotonic()
        try:
            daemon.start(timeout=120)
            deadline = time.monotonic() + 600
            while "reconcile pass 1:" not in daemon.log() and "reconcile: no pod allocations" not in daemon.log():  # noqa: E501
                if time.monotonic() > deadline:
                    raise TimeoutError(daemon.log()[-2000:])
                time.sleep(0.2)
            seconds = time.monotonic() - started
            assert daemon.process is not None
            peak = peak_rss_kib(daemon.process.pid)
            match = re.search(r"reconcile pass 1: (\d+) pod allocation\(s\), (\d+) pod\(s\)", daemon.log())
            if allocated:
                assert match and int(match.group(1)) == allocated and int(match.group(2)) == pods, daemon.log()[-2000:]
            pages = len([r for r in handle.api.recorded("GET", "/api/v1/pods") if not r.query.get("fieldSelector")])
        finally:
            daemon.stop()
    finally:
        handle.stop()
    return peak, seconds, pages


async def lease_reads_per_minute(nodes: int, *, before: bool, seconds: float = 30.0) -> float:
    """Lease GETs per minute of ``nodes`` daemons (one holder), with the default periods (15 s, 5 s)."""
    async with KubeApiDouble() as api:
        with tempfile.TemporaryDirectory() as tmp:
            client = await KubeClient.connect(str(api.write_kubeconfig(Path(tmp) / "kubeconfig")))
            try:
                electors = [LeaseElector(client, namespace="kube-system", identity=f"node{i}") for i in range(nodes)]
                if before:
                    # The earlier loop: every daemon read the Lease at the renewal period.
                    for elector in electors:
                        elector.run = _polling_at_renewal(elector)  # type: ignore[method-assign]
                tasks = [asyncio.create_task(e.run()) for e in electors]
                await asyncio.sleep(seconds)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                await client.close()
            reads = len(api.recorded("GET", "/leases/ipamd-reconciler"))
    return reads / seconds * 60


def _polling_at_renewal(elector: LeaseElector):  # type: ignore[no-untyped-def]
    async def run() -> None:
        await asyncio.sleep(random.uniform(0, elector.renew_every))
        while True:
            try:
                elector._set_leading(await elector.try_acquire())
            except Exception:  # noqa: BLE001 - the benchmark counts requests only
                pass
            await asyncio.sleep(elector.renew_every)

    return run


class InformerBefore(Informer):
    """The informer's loop before issue 11: lists from etcd (no resourceVersion), no gap
    between watches, and the backoff reset by any watch that ended cleanly."""

    async def run(self) -> None:
        backoff = Backoff()
        while True:
            try:
                if self.resource_version is None:
                    await self._relist()
                await self._watch()
                backoff.reset()
            except Gone:
                self.gone += 1
                self.resource_version = None
            except IpamError:
                await asyncio.sleep(backoff.next())

    async def _relist(self) -> None:
        items, resource_version = await self.client.list_all(self.path, field_selector=self.field_selector)
        self.lists += 1
        self.cache = {object_key(item): item for item in items}
        self.resource_version = resource_version or None
        self.synced.set()


async def pod_api_load(nodes: int, *, before: bool, pods_per_node: int = 1) -> dict[str, float]:
    """Pod requests of ``nodes`` node-scoped pod informers: the first lists, an API server
    restart, then 10 s of a server ending every watch at once; counted per phase."""
    async with KubeApiDouble(history_limit=100_000) as api:
        for node in range(nodes):
            for i in range(pods_per_node):
                api.create_pod(f"pod-{node}-{i}", NAMESPACE, node_name=f"node{node}", phase="Running")
        with tempfile.TemporaryDirectory() as tmp:
            client = await _client_for(nodes, api.write_kubeconfig(Path(tmp) / "kubeconfig"))
            kind = InformerBefore if before else Informer
            informers = [
                kind(client, "/api/v1/pods", field_selector=f"spec.nodeName=node{node}") for node in range(nodes)
            ]
            started = time.monotonic()
            tasks = [asyncio.create_task(informer.run()) for informer in informers]
            try:
                await asyncio.wait_for(asyncio.gather(*(i.synced.wait() for i in informers)), timeout=900)
                synced = time.monotonic()
                await asyncio.sleep(5)
                # The API server restarts: connections cut, and its new watch cache starts
                # after the resourceVersion every node holds, so every resume gets 410.
                restarted = time.monotonic()
                api.create_pod("restart-marker", NAMESPACE, node_name="elsewhere")
                api.compact()
                api.drop_watches(abrupt=True)
                lists_before_restart = sum(i.lists for i in informers)
                deadline = restarted + 300
                while sum(i.lists for i in informers) < lists_before_restart + nodes and time.monotonic() < deadline:
                    await asyncio.sleep(0.1)
                relisted = time.monotonic()
                await asyncio.sleep(5)
                # A draining API server ends every watch as soon as it opens, for 10 s.
                draining = time.monotonic()
                while time.monotonic() < draining + 10:
                    api.drop_watches()
                    await asyncio.sleep(0.05)
                drained = time.monotonic()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                await client.close()
        requests = api.recorded("GET", "/api/v1/pods")

    def between(first: float, last: float, *, watch: bool) -> list[RecordedRequest]:
        return [r for r in requests if first <= r.at < last and (r.query.get("watch") in ("true", "1")) == watch]

    start_lists = between(started, synced, watch=False)
    restart_lists = between(restarted, relisted, watch=False)
    drain_watches = between(draining, drained, watch=True)
    return {
        "start_lists": len(start_lists),
        "start_etcd": sum(1 for r in start_lists if r.served_from == "etcd"),
        "start_seconds": synced - started,
        "restart_lists": len(restart_lists),
        "restart_etcd": sum(1 for r in restart_lists if r.served_from == "etcd"),
        "restart_seconds": relisted - restarted,
        "drain_watches_per_minute": len(drain_watches) / (drained - draining) * 60,
    }


async def _client_for(connections: int, kubeconfig: Path) -> KubeClient:
    """One client for every simulated node, with a connection for each node's watch."""
    client = await KubeClient.connect(str(kubeconfig))
    await client.close()
    configuration = client.api_client.configuration
    configuration.connection_pool_maxsize = connections + 10
    return KubeClient(type(client.api_client)(configuration))


async def _sleep_until(moment: float) -> None:
    await asyncio.sleep(max(0.0, moment - time.monotonic()))


def report_pod_api_load(watchers: int, nodes: int) -> None:
    """Each node's informer acts alone, so the cluster's load is the per-node figure times
    the node count; it is measured with ``watchers`` informers, few enough that this
    machine's CPU (which also runs the API double) does not set the pace."""
    # Every node logs the cut connection; the counts are what this measures.
    logging.getLogger("ipamd.k8s.watch").setLevel(logging.ERROR)
    print(f"\nPod list and watch requests of the node-scoped pod watch, measured with {watchers} informers, per")
    print(f"{nodes:,} nodes (start; an API server restart; 10 s of a server ending every watch as soon as it opens)")
    before = asyncio.run(pod_api_load(watchers, before=True))
    now = asyncio.run(pod_api_load(watchers, before=False))
    scale = nodes / watchers
    print(
        "| informer | lists at start (from etcd) | lists after a restart (from etcd) | watch requests/min while draining |"
    )
    print("|---|---|---|---|")
    for label, f in (("before (no resourceVersion, no gap)", before), ("now (resourceVersion=0, paced)", now)):
        print(
            f"| {label} | {f['start_lists'] * scale:,.0f} ({f['start_etcd'] * scale:,.0f}) "
            f"| {f['restart_lists'] * scale:,.0f} ({f['restart_etcd'] * scale:,.0f}) | {f['drain_watches_per_minute'] * scale:,.0f} |"
        )
    ratio = now["drain_watches_per_minute"] / before["drain_watches_per_minute"]
    print(
        f"while draining, watch requests now/before: {ratio:.2f} (before reopens a watch ended cleanly at once, so its"
    )
    print(
        "figure is bounded only by the round trip and this machine's CPU; now each node waits at least 1 s, jittered)"
    )


def report_memory(workdir: Path, counts: list[int], allocated: int | None) -> None:
    base, base_seconds, _ = reconciler_peak(workdir, 0)
    held = "every pod holds an allocation" if allocated is None else f"{allocated:,} pods hold an allocation"
    print(f"\nreconciler: peak RSS of the daemon after its first pass ({held})")
    print("| pods | peak RSS | vs empty cluster | per pod | pass (incl. start) | list pages |")
    print("|---|---|---|---|---|---|")
    print(f"| 0 | {base / 1024:.1f} MiB | 1.00 | - | {base_seconds:.1f} s | - |")
    for count in counts:
        peak, seconds, pages = reconciler_peak(workdir, count, allocated)
        print(
            f"| {count:,} | {peak / 1024:.1f} MiB | {peak / base:.2f} | {(peak - base) / count:.2f} KiB | {seconds:.1f} s | {pages} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", default="5000,20000")
    parser.add_argument("--allocated", type=int, default=None, help="pods holding an allocation (default: all)")
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=100, help="pod informers actually run (scaled to --nodes)")
    parser.add_argument("--skip-lease", action="store_true")
    parser.add_argument("--only-lease", action="store_true", help="only the API request counts (Lease, pod lists)")
    args = parser.parse_args()
    print(machine())
    counts = [int(n) for n in args.pods.split(",")] if not args.only_lease else []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if counts:
            report_memory(workdir, counts, args.allocated)
    if args.skip_lease:
        return
    report_pod_api_load(args.watchers, args.nodes)
    print(f"\nLease reads per minute, {args.nodes} daemons (30 s each)")
    before = asyncio.run(lease_reads_per_minute(args.nodes, before=True))
    now = asyncio.run(lease_reads_per_minute(args.nodes, before=False))
    print("| polling | Lease GETs/min | ratio |")
    print("|---|---|---|")
    print(f"| at the renewal period (before) | {before:,.0f} | 1.00 |")
    print(f"| at the lease duration, jittered (now) | {now:,.0f} | {now / before:.2f} |")


if __name__ == "__main__":
    main()
