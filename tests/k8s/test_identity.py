"""Identity is the pod UID: a late ADD from a deleted instance of a pod never gets the
address of the instance that carries the name now, nor changes anything."""

from __future__ import annotations

from typing import Any

from tests.k8s.conftest import Cluster, note
from tests.support.waiting import wait_for


def _recreate(
    cluster: Cluster, name: str, sts: dict[str, Any], ordinal: int
) -> tuple[dict[str, Any], dict[str, Any], list]:
    """Gives ``name`` an address, force-deletes the pod and recreates it; the new one ADDs."""
    old = cluster.statefulset_pod(sts, ordinal)
    address = cluster.add(old).body["ips"]
    cluster.api.delete_pod(name, grace_period_seconds=0)
    new = cluster.statefulset_pod(sts, ordinal)
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    reply = cluster.add(new)
    assert reply.status == 200, reply.body
    assert reply.body["ips"] == address, "a recreated StatefulSet pod gets its address back"
    return old, new, address


def _assert_live_pod_kept(cluster: Cluster, name: str, new: dict[str, Any], address: list) -> None:
    [allocation] = cluster.allocations(name)
    assert allocation["owner"]["podUid"] == new["metadata"]["uid"]
    assert [f"{a['cidr']}" for a in allocation["addresses"]] == [ip["address"] for ip in address]


def test_a_late_add_of_a_deleted_instance_is_refused_and_changes_nothing(cluster: Cluster):
    sts = cluster.api.create_statefulset("db", replicas=2)
    old, new, address = _recreate(cluster, "db-1", sts, 1)
    annotations = cluster.annotations("db-1")
    patches = len(cluster.api.recorded("PATCH", "/pods/db-1"))

    # The old node restarts the sandbox of the deleted instance.
    stale = cluster.add(old, new_sandbox=True)
    assert stale.status == 409, stale.body
    assert stale.body["error"]["code"] == "stale_pod"
    assert stale.body["error"]["cniCode"] == 105
    assert stale.message == (
        f"pod default/db-1 is uid {new['metadata']['uid']} now, but this ADD carries uid {old['metadata']['uid']} "
        "of an earlier instance (a late sandbox of a deleted pod); it gets no address and the live pod keeps its own"
    )
    _assert_live_pod_kept(cluster, "db-1", new, address)
    assert cluster.annotations("db-1") == annotations
    assert len(cluster.api.recorded("PATCH", "/pods/db-1")) == patches
    assert not cluster.events("db-1"), "the Event would name a pod instance that is gone"

    # The live pod's own address is released when it goes: nothing leaks.
    cluster.api.scale_statefulset("db", 1)
    cluster.api.delete_pod("db-1", grace_period_seconds=0)
    cluster.wait_released("db-1")


def test_a_stale_watch_cache_does_not_let_the_old_instance_in(cluster: Cluster):
    """The watch is cut, so the cache still shows the deleted instance when both ADDs come."""
    sts = cluster.api.create_statefulset("cache", replicas=1)
    old = cluster.statefulset_pod(sts, 0)
    address = cluster.add(old).body["ips"]
    cluster.barrier()
    cluster.api.inject_error("GET", r"^/api/v1/pods$", code=503, reason="ServiceUnavailable", times=1_000_000)
    cluster.api.drop_watches(abrupt=True)
    wait_for(lambda: cluster.api.watch_count("pods") == 0, what="the pod watch to be cut")
    cluster.api.delete_pod("cache-0", grace_period_seconds=0)
    new = cluster.statefulset_pod(sts, 0)

    # The new instance is confirmed by a GET (the cache disagrees) and takes the address over.
    assert cluster.add(new).body["ips"] == address
    # The old instance matches the stale cache, but its allocation is held for another UID
    # now: a fresh GET decides, and refuses.
    stale = cluster.add(old, new_sandbox=True)
    assert stale.status == 409 and stale.body["error"]["code"] == "stale_pod", stale.body
    _assert_live_pod_kept(cluster, "cache-0", new, address)
    cluster.api.clear_faults()


def test_write_back_carries_the_uid_precondition(cluster: Cluster):
    pod = cluster.pod("precond")
    assert cluster.add(pod).status == 200
    [patch] = cluster.api.recorded("PATCH", "/pods/precond")
    assert patch.body["metadata"]["uid"] == pod["metadata"]["uid"]
    # The double (like the API server) refuses the patch on another instance of the name.
    cluster.api.delete_pod("precond", grace_period_seconds=0)
    cluster.pod("precond")
    status = cluster.kube_patch("/api/v1/namespaces/default/pods/precond", {"metadata": patch.body["metadata"]})
    assert status == 409
    assert note("allocated") not in cluster.annotations("precond")


def test_the_stale_add_through_the_cni_shim_exits_with_code_105(cluster: Cluster):
    from tests.plugin.shim_harness import run_shim

    sts = cluster.api.create_statefulset("shimmed", replicas=1)
    old, new, address = _recreate(cluster, "shimmed-0", sts, 0)
    config = {
        "cniVersion": "1.0.0",
        "name": "macvlan",
        "type": "macvlan",
        "ipam": {"type": "ipamd", "server_socket": cluster.daemon.socket, "provider": "macvlan.default"},
    }
    args = f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=shimmed-0;K8S_POD_INFRA_CONTAINER_ID=late;K8S_POD_UID={old['metadata']['uid']}"
    refused = run_shim("ADD", config, container_id="late", ifname="net1", cni_args=args)
    assert refused.returncode != 0
    assert refused.output["code"] == 105
    assert f"carries uid {old['metadata']['uid']} of an earlier instance" in refused.output["msg"]
    _assert_live_pod_kept(cluster, "shimmed-0", new, address)
