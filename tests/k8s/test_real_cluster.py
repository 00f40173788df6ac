"""Kubernetes mode as a real cluster needs it: SQLite on one node only, readiness that
means it, and a client polite to the API server (watch cache, 429, watch pacing, clock)."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tests.k8s.conftest import NET1, NODE, Cluster
from tests.kube_double import ThreadedKubeApi
from tests.plugin.shim_harness import ShimRun, run_shim
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for


def _daemon(kube: ThreadedKubeApi, tmp_path: Path, node: str, *extra: str) -> Daemon:
    workdir = tmp_path / node
    workdir.mkdir()
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig")
    return Daemon(
        workdir,
        f"sqlite:///{workdir / 'ipamd.db'}",
        extra_args=(
            "--kubernetes",
            "--kubeconfig",
            str(kubeconfig),
            "--node-name",
            node,
            "--log-level",
            "debug",
            *extra,
        ),
    )


def _wait_serving(daemon: Daemon) -> None:
    wait_for(
        lambda: os.path.exists(daemon.socket) and daemon.client.get("/healthz").status == 200,
        what="the daemon to serve",
    )


# ----------------------------------------------------------------- SQLite serves one node


def test_two_nodes_with_their_own_sqlite_files_never_both_allocate(kube: ThreadedKubeApi, tmp_path: Path):
    first = _daemon(kube, tmp_path, "n1").start()
    second = _daemon(kube, tmp_path, "n2").start(wait=False)
    try:
        _wait_serving(second)
        for daemon in (first, second):
            assert daemon.client.post("/v1/subnets", NET1).status == 201
        on_n1 = Cluster(kube.api, first)
        on_n2 = Cluster(kube.api, second)
        assert on_n1.add(on_n1.pod("a", node="n1")).body["ips"][0]["address"] == "192.0.2.11/24"

        refused = on_n2.add(on_n2.pod("b", node="n2"))
        assert refused.status == 503, refused.body
        assert refused.body["error"]["cniCode"] == 11
        assert refused.message == (
            "this node (n2) cannot allocate: ipamd runs on SQLite, which serves one node only, and node n1 holds it "
            "(Lease kube-system/ipamd-sqlite); use PostgreSQL for more than one node, or delete the Lease to move SQLite here "
            "(docs/deploy.md)"
        )
        assert not on_n2.allocations()
        [event] = on_n2.events("b", reason="DatabaseOnAnotherNode")
        assert "node n1 holds it" in event["message"]
        ready = second.client.get("/readyz")
        assert ready.status == 503 and "node n1 holds it" in ready.message
        assert second.client.get("/v1/cni/status").status == 503
        # Nor through the REST API.
        rest = second.client.post("/v1/allocations", {"subnet": "net1", "owner": {"pod": "outside"}})
        assert rest.status == 503 and "node n1 holds it" in rest.message

        # A restart of the holder keeps the claim (it never expires): n2 cannot slip in.
        first.stop()
        first.start()
        assert on_n1.add(on_n1.pod("c", node="n1")).status == 200
        assert on_n2.add(on_n2.pod("d", node="n2")).status == 503
        lease = kube.api.get("leases", "ipamd-sqlite", "kube-system")
        assert lease is not None and lease["spec"]["holderIdentity"] == "n1"
    finally:
        first.stop()
        second.stop()


def test_the_claim_moves_only_when_the_lease_is_deleted(kube: ThreadedKubeApi, tmp_path: Path):
    kube.api.create(
        "leases",
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "ipamd-sqlite", "namespace": "kube-system"},
            "spec": {"holderIdentity": "gone-node"},
        },
        namespace="kube-system",
    )
    daemon = _daemon(kube, tmp_path, "n1", "--reconcile-interval", "600").start(wait=False)
    try:
        _wait_serving(daemon)
        # Serving starts before the claim's first check ('not checked yet'); then it names the holder.
        wait_for(
            lambda: "node gone-node holds it" in daemon.client.get("/readyz").message,
            what="readiness to name the Lease's holder",
        )
        # The operator moves SQLite here: deletes the Lease, and the daemon's next check (here
        # its restart's) claims it.
        request = urllib.request.Request(
            kube.url + "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/ipamd-sqlite", method="DELETE"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        daemon.stop()
        daemon.start()
        assert kube.api.get("leases", "ipamd-sqlite", "kube-system")["spec"]["holderIdentity"] == "n1"
    finally:
        daemon.stop()


# ----------------------------------------------------------------- readiness


def _shim_status(cluster: Cluster) -> ShimRun:
    config = {
        "cniVersion": "1.1.0",
        "name": "macvlan",
        "type": "macvlan",
        "ipam": {"type": "ipamd", "server_socket": cluster.daemon.socket, "provider": "macvlan.default"},
    }
    return run_shim("STATUS", config, container_id=None, ifname=None, netns=None)


def test_a_403_on_pods_makes_readyz_and_status_fail(cluster: Cluster):
    assert cluster.daemon.client.get("/readyz").status == 200
    cluster.api.inject_error(
        "GET",
        r"^/api/v1/pods$",
        code=403,
        reason="Forbidden",
        message='pods is forbidden: User "system:serviceaccount:kube-system:ipamd" cannot watch resource "pods"',
        times=1_000_000,
    )
    cluster.api.drop_watches(abrupt=True)
    not_ready = wait_for(lambda: (r := cluster.daemon.client.get("/readyz")).status == 503 and r, what="readyz to fail")
    assert "watch failing" in not_ready.message and "403 Forbidden" in not_ready.message
    assert cluster.daemon.client.get("/v1/cni/status").status == 503
    # The runtime's STATUS, through the plugin binary, answers the same.
    status = _shim_status(cluster)
    assert status.returncode != 0 and status.output["code"] == 50, status
    assert "watch failing" in status.output["msg"] and "403 Forbidden" in status.output["msg"]
    # The rules are fixed: ready again, without a restart.
    cluster.api.clear_faults()
    wait_for(lambda: cluster.daemon.client.get("/readyz").status == 200, what="readyz to recover")
    assert _shim_status(cluster).returncode == 0


def test_readyz_waits_for_the_api_server(kube: ThreadedKubeApi, tmp_path: Path):
    """A daemon whose API server never answered is not ready, though its database is."""
    kube.api.inject_error("*", r"^/api", code=503, reason="ServiceUnavailable", times=1_000_000)
    daemon = _daemon(kube, tmp_path, "n1").start(wait=False)
    try:
        _wait_serving(daemon)
        assert daemon.client.get("/readyz").status == 503
        kube.api.clear_faults()
        daemon.wait_ready()
    finally:
        daemon.stop()


# ----------------------------------------------------------------- polite to the API server


def _node_lists(cluster: Cluster) -> list:
    return [
        r
        for r in cluster.api.recorded("GET", "/api/v1/pods")
        if r.query.get("fieldSelector") == f"spec.nodeName={NODE}" and not r.query.get("watch")
    ]


def test_the_node_watch_lists_from_the_watch_cache(cluster: Cluster):
    cluster.barrier()
    cluster.api.expire_watches()
    first, relist = wait_for(
        lambda: len(_node_lists(cluster)) == 2 and _node_lists(cluster), what="the relist after 410"
    )
    # The first list from the watch cache at any version; the relist too, but never older
    # than what the watch had shown (ipamd/k8s/watch.py).
    assert first.query.get("resourceVersion") == "0" and first.served_from == "cache"
    assert relist.query.get("resourceVersionMatch") == "NotOlderThan" and relist.query.get("resourceVersion") not in (
        None,
        "0",
    )
    assert "limit" not in relist.query and relist.served_from == "cache"


def test_a_429_is_retried_after_the_delay_it_asks_for(cluster: Cluster):
    # A pod of another node is not in this node's watch cache: the ADD GETs it.
    pod = cluster.pod("busy", node="n2")
    cluster.api.inject_error(
        "GET", r"/pods/busy$", code=429, reason="TooManyRequests", message="too many requests", retry_after=1
    )
    reply = cluster.add(pod)
    assert reply.status == 200, reply.body
    first, second = cluster.api.recorded("GET", "/pods/busy")
    assert second.at - first.at >= 0.95, "the GET was retried before Retry-After"


def test_a_429_on_the_watch_waits_retry_after(make_cluster: Callable[..., Cluster]):
    cluster = make_cluster(reconcile_interval=600.0)
    cluster.barrier()
    cluster.api.inject_error(
        "GET",
        r"^/api/v1/pods$",
        code=429,
        reason="TooManyRequests",
        message="too many requests",
        times=2,
        retry_after=2,
    )
    cut = time.monotonic()
    cluster.api.drop_watches(abrupt=True)
    cluster.barrier()
    requests = [r for r in cluster.api.recorded("GET", "/api/v1/pods") if r.at >= cut and r.query.get("fieldSelector")]
    assert len(requests) >= 3
    assert requests[1].at - requests[0].at >= 1.9 and requests[2].at - requests[1].at >= 1.9


def test_watches_ended_at_once_are_not_reopened_in_a_tight_loop(cluster: Cluster):
    cluster.barrier()
    start = time.monotonic()
    for _ in range(4):
        count = len([r for r in cluster.api.recorded("GET", "/api/v1/pods") if r.query.get("watch")])
        cluster.api.drop_watches(abrupt=False)  # a clean end, as at the server's timeout
        wait_for(
            lambda c=count: len([r for r in cluster.api.recorded("GET", "/api/v1/pods") if r.query.get("watch")]) > c,
            what="the watch to be reopened",
        )
    watches = [r for r in cluster.api.recorded("GET", "/api/v1/pods") if r.query.get("watch") and r.at >= start]
    gaps = [b.at - a.at for a, b in zip(watches, watches[1:])]
    assert gaps and min(gaps) >= 0.95, gaps


def test_release_decisions_use_the_api_servers_clock(make_cluster: Callable[..., Cluster]):
    """The API server's clock runs an hour ahead: a pod stuck terminating past its deadline
    by that clock is released, though by the node's clock the deadline is an hour away."""
    cluster = make_cluster(reconcile_interval=1.0, release_grace=600.0)
    pod = cluster.api.create_pod("stuck", node_name="other-node", phase="Running", finalizers=["example.com/hold"])
    assert cluster.add(pod).status == 200
    cluster.api.delete_pod("stuck", grace_period_seconds=1)
    cluster.api.clock.advance(3600)
    cluster.wait_released("stuck")
    history = cluster.daemon.client.get("/v1/ips/192.0.2.11").body["history"]
    assert history[-1]["releaseReason"] == "pod stuck terminating"
