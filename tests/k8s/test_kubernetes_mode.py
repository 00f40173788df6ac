"""Kubernetes mode end to end: the real daemon, the API double, CNI calls on the Unix socket."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.k8s.conftest import NET1, Cluster, note
from tests.support.waiting import wait_for

# ----------------------------------------------------------------- annotations in, results out


def test_static_ip_and_mac_annotations_are_honoured_and_written_back(cluster: Cluster):
    pod = cluster.pod(
        "static", annotations={note("ip_address"): "192.0.2.50", note("mac_address"): "02:00:00:00:00:50"}
    )
    reply = cluster.add(pod)
    assert reply.status == 200, reply.body
    assert reply.body["ips"] == [{"address": "192.0.2.50/24", "gateway": "192.0.2.1", "family": 4}]
    assert reply.body["mac"] == "02:00:00:00:00:50"
    [allocation] = cluster.allocations("static")
    assert allocation["owner"]["podUid"] == pod["metadata"]["uid"]
    assert allocation["node"] == "n1"
    assert allocation["mac"] == "02:00:00:00:00:50"
    # The first write is made before the ADD answers.
    assert cluster.annotations("static") == {
        note("ip_address"): "192.0.2.50",
        note("mac_address"): "02:00:00:00:00:50",
        note("allocated"): "true",
        note("cidr"): "192.0.2.0/24",
        note("gateway"): "192.0.2.1",
    }


def test_result_annotations_of_a_dynamic_allocation_use_a_merge_patch(cluster: Cluster):
    pod = cluster.pod("dynamic", annotations={"team": "blue"})
    reply = cluster.add(pod)
    assert reply.status == 200, reply.body
    assert cluster.annotations("dynamic") == {
        "team": "blue",
        note("allocated"): "true",
        note("ip_address"): "192.0.2.11",
        note("cidr"): "192.0.2.0/24",
        note("gateway"): "192.0.2.1",
    }
    [patch] = [r for r in cluster.api.recorded("PATCH", "/pods/dynamic")]
    assert patch.content_type.startswith("application/merge-patch+json")
    # Annotations only, with the pod's UID as a precondition.
    assert set(patch.body) == {"metadata"} and set(patch.body["metadata"]) == {"annotations", "uid"}


def test_per_interface_annotation_wins(cluster: Cluster):
    pod = cluster.pod("twice", annotations={note("ip_address"): "192.0.2.60", note("ip_address", "net2"): "192.0.2.61"})
    first = cluster.add(pod, ifname="net1")
    second = cluster.add(pod, ifname="net2")
    assert first.status == 200 and second.status == 200, (first.body, second.body)
    assert first.body["ips"][0]["address"] == "192.0.2.60/24"
    assert second.body["ips"][0]["address"] == "192.0.2.61/24"


def test_one_network_attached_twice_does_not_read_its_own_result_as_a_request(cluster: Cluster):
    pod = cluster.pod("double")
    first = cluster.add(pod, ifname="net1")
    assert first.status == 200, first.body
    # The result of net1 now sits in the plain ip_address key; net2 must not ask for it.
    second = cluster.add(pod, ifname="net2")
    assert second.status == 200, second.body
    assert second.body["ips"][0]["address"] != first.body["ips"][0]["address"]
    # A sandbox restart of net1 still gets its own address back.
    assert cluster.add(pod, ifname="net1", new_sandbox=True).body["ips"] == first.body["ips"]


def test_conflicting_static_ip_fails_with_an_event_naming_the_holder(cluster: Cluster):
    holder = cluster.pod("holder", annotations={note("ip_address"): "192.0.2.70"})
    assert cluster.add(holder).status == 200
    thief = cluster.pod("thief", annotations={note("ip_address"): "192.0.2.70"})
    reply = cluster.add(thief)
    assert reply.status == 409
    assert reply.body["error"]["code"] == "address_conflict"
    assert reply.body["error"]["cniCode"] == 101
    assert "192.0.2.70 in subnet net1 is held by default/holder net1" in reply.message
    [event] = cluster.events("thief")
    assert event["type"] == "Warning"
    assert event["involvedObject"]["uid"] == thief["metadata"]["uid"]
    assert event["source"]["component"] == "ipamd"
    assert event["message"].startswith("ipamd could not allocate an address on net1 (network macvlan.default): ")
    assert "held by default/holder" in event["message"]
    assert note("allocated") not in cluster.annotations("thief")
    # The kubelet retries: the same failure is counted on the same Event, not repeated.
    assert cluster.add(thief, new_sandbox=True).status == 409
    [event] = cluster.events("thief")
    assert event["count"] == 2


def test_conflicting_mac_fails(cluster: Cluster):
    assert cluster.add(cluster.pod("mac-a", annotations={note("mac_address"): "02:00:00:00:00:aa"})).status == 200
    reply = cluster.add(cluster.pod("mac-b", annotations={note("mac_address"): "02:00:00:00:00:AA"}))
    assert reply.status == 409
    assert "MAC 02:00:00:00:00:aa is already used by default/mac-a net1" in reply.message
    assert cluster.events("mac-b")


def test_unusable_annotations_fail_with_a_clear_message_and_an_event(cluster: Cluster):
    outside = cluster.add(cluster.pod("outside", annotations={note("ip_address"): "203.0.113.5"}))
    assert outside.status == 400
    assert (
        outside.message == "macvlan.default.kubernetes.io/ip_address: 203.0.113.5 is outside subnet net1 (192.0.2.0/24)"
    )
    assert "203.0.113.5 is outside subnet net1" in cluster.events("outside")[0]["message"]

    garbage = cluster.add(cluster.pod("garbage", annotations={note("ip_address"): "192.0.2.x"}))
    assert garbage.status == 400
    assert garbage.message == "macvlan.default.kubernetes.io/ip_address: '192.0.2.x' is not a valid IP address"
    assert cluster.events("garbage")

    gateway = cluster.add(cluster.pod("gw", annotations={note("ip_address"): "192.0.2.1"}))
    assert gateway.status == 409
    assert gateway.message == "192.0.2.1 is the gateway of subnet net1"


def test_a_pod_unknown_to_the_api_server_is_refused_without_an_event(cluster: Cluster):
    ghost = {"metadata": {"name": "ghost", "namespace": "default", "uid": "no-such-uid"}}
    reply = cluster.add(ghost)
    assert reply.status == 404
    assert (
        reply.message
        == "pod default/ghost not found in Kubernetes; the runtime passed a pod that the API server does not know"
    )
    assert not cluster.events("ghost")


def test_logical_switch_picks_the_subnet(cluster: Cluster):
    backup = {
        **NET1,
        "name": "net1-backup",
        "cidrBlock": "198.51.100.0/24",
        "gateway": "198.51.100.1",
        "excludeIps": [],
    }
    assert cluster.daemon.client.post("/v1/subnets", backup).status == 201
    reply = cluster.add(cluster.pod("switched", annotations={note("logical_switch"): "net1-backup"}))
    assert reply.status == 200, reply.body
    assert reply.body["subnet"] == "net1-backup"
    assert reply.body["ips"][0]["address"] == "198.51.100.2/24"


# ----------------------------------------------------------------- ip_pool


def test_ip_pool_list_for_deployment_pods_takes_the_first_free_and_exhausts(cluster: Cluster):
    replicaset = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "name": "web-5d4f",
        "uid": "rs-uid",
        "controller": True,
    }
    pool = {note("ip_pool"): "192.0.2.80, 192.0.2.81"}
    first = cluster.add(cluster.pod("web-5d4f-abcde", annotations=pool, owner=replicaset))
    second = cluster.add(cluster.pod("web-5d4f-fghij", annotations=pool, owner=replicaset))
    assert [first.body["ips"][0]["address"], second.body["ips"][0]["address"]] == ["192.0.2.80/24", "192.0.2.81/24"]
    third = cluster.add(cluster.pod("web-5d4f-klmno", annotations=pool, owner=replicaset))
    assert third.status == 409
    assert third.body["error"]["code"] == "exhausted"
    assert third.message == "every address of ip_pool 192.0.2.80, 192.0.2.81 is held"
    [event] = cluster.events("web-5d4f-klmno")
    assert "every address of ip_pool 192.0.2.80, 192.0.2.81 is held" in event["message"]
    # A freed member goes to the next pod.
    cluster.api.delete_pod("web-5d4f-abcde", grace_period_seconds=0)
    cluster.wait_released("web-5d4f-abcde")
    assert (
        cluster.add(cluster.pod("web-5d4f-pqrst", annotations=pool, owner=replicaset)).body["ips"][0]["address"]
        == "192.0.2.80/24"
    )


def test_ip_pool_list_for_statefulset_pods_goes_by_ordinal(cluster: Cluster):
    sts = cluster.api.create_statefulset("db", replicas=3)
    pool = {note("ip_pool"): "192.0.2.90,2001:db8::90;192.0.2.91,2001:db8::91;192.0.2.92,2001:db8::92"}
    # A v4-only subnet: the v6 half of each entry is refused as outside it.
    refused = cluster.add(cluster.statefulset_pod(sts, 2, annotations=pool))
    assert refused.status == 400
    assert "2001:db8::90" in refused.message or "2001:db8::92" in refused.message
    v4_pool = {note("ip_pool"): "192.0.2.90;192.0.2.91;192.0.2.92"}
    sts2 = cluster.api.create_statefulset("cache", replicas=3)
    got = {
        n: cluster.add(cluster.statefulset_pod(sts2, n, annotations=v4_pool)).body["ips"][0]["address"] for n in (2, 0)
    }
    assert got == {2: "192.0.2.92/24", 0: "192.0.2.90/24"}
    [allocation] = cluster.allocations("cache-2")
    assert allocation["hold"] == "statefulset"
    beyond = cluster.add(
        cluster.statefulset_pod(cluster.api.create_statefulset("big", replicas=5), 4, annotations=v4_pool)
    )
    assert beyond.status == 409
    assert beyond.message == "ip_pool lists 3 entries; none for ordinal 4"
    assert cluster.events("big-4")


def test_ip_pool_by_name_takes_the_ordinal_member_or_the_first_free(cluster: Cluster):
    assert (
        cluster.daemon.client.post(
            "/v1/pools", {"name": "db-pool", "subnet": "net1", "ips": ["192.0.2.100..192.0.2.102"]}
        ).status
        == 201
    )
    sts = cluster.api.create_statefulset("pg", replicas=3)
    by_ordinal = cluster.add(cluster.statefulset_pod(sts, 1, annotations={note("ip_pool"): "db-pool"}))
    assert by_ordinal.body["ips"][0]["address"] == "192.0.2.101/24"
    plain = cluster.add(cluster.pod("worker", annotations={note("ip_pool"): "db-pool"}))
    assert plain.body["ips"][0]["address"] == "192.0.2.100/24"
    missing = cluster.add(cluster.pod("lost", annotations={note("ip_pool"): "no-such-pool"}))
    assert missing.status == 404
    assert missing.message == "pool no-such-pool not found"
    assert cluster.events("lost")


def test_a_pool_of_another_network_is_refused_with_an_event(cluster: Cluster):
    other = {"name": "other", "cidrBlock": "198.51.100.0/24", "provider": "other-net"}
    assert cluster.daemon.client.post("/v1/subnets", other).status == 201
    assert (
        cluster.daemon.client.post(
            "/v1/pools", {"name": "other-pool", "subnet": "other", "ips": ["198.51.100.10"]}
        ).status
        == 201
    )
    reply = cluster.add(cluster.pod("stray", annotations={note("ip_pool"): "other-pool"}))
    assert reply.status == 400, reply.body
    assert reply.message == (
        "ip_pool: pool other-pool belongs to subnet other of provider other-net, but default/stray net1 "
        "(macvlan.default) asks for provider macvlan.default; name a pool of that network"
    )
    assert "pool other-pool belongs to subnet other" in cluster.events("stray")[0]["message"]
    assert not cluster.allocations("stray")
    assert cluster.daemon.client.get("/v1/pools/other-pool").body["usage"]["used"] == 0
    # logical_switch and ip_pool must agree too.
    backup = {**NET1, "name": "net1-backup", "cidrBlock": "203.0.113.0/24", "gateway": "203.0.113.1", "excludeIps": []}
    assert cluster.daemon.client.post("/v1/subnets", backup).status == 201
    assert (
        cluster.daemon.client.post("/v1/pools", {"name": "net1-pool", "subnet": "net1", "ips": ["192.0.2.120"]}).status
        == 201
    )
    crossed = cluster.add(
        cluster.pod("crossed", annotations={note("ip_pool"): "net1-pool", note("logical_switch"): "net1-backup"})
    )
    assert crossed.status == 400 and "subnet net1-backup named by logical_switch" in crossed.message


# ----------------------------------------------------------------- addresses follow the pod


def test_del_and_add_while_the_pod_lives_keep_the_address(cluster: Cluster):
    pod = cluster.pod("sandboxed")
    address = cluster.add(pod).body["ips"]
    kept = cluster.delete(pod)
    assert kept.status == 200
    assert kept.body == {"released": 0, "kept": True}
    assert cluster.add(pod, new_sandbox=True).body["ips"] == address
    [allocation] = cluster.allocations("sandboxed")
    assert allocation["owner"]["containerId"] == "sandboxed-sandbox-2"


def test_deleting_the_pod_releases_its_address(cluster: Cluster):
    pod = cluster.pod("short-lived")
    assert cluster.add(pod).status == 200
    cluster.api.delete_pod("short-lived")  # graceful: terminating first
    cluster.barrier()
    assert cluster.allocations("short-lived"), "a terminating pod keeps its address until it is gone"
    # The kubelet's DEL of a terminating pod releases.
    assert cluster.delete(pod).body == {"released": 1}
    assert not cluster.allocations("short-lived")


def test_pod_gone_through_the_watch_releases(cluster: Cluster):
    pod = cluster.pod("watched")
    assert cluster.add(pod).status == 200
    cluster.api.delete_pod("watched")
    cluster.api.finalize_deletions(name="watched")
    cluster.wait_released("watched")
    history = cluster.daemon.client.get("/v1/ips/192.0.2.11").body["history"]
    assert history[-1]["releaseReason"] == "pod gone"


def test_terminal_and_evicted_pods_release(cluster: Cluster):
    done = cluster.pod("job")
    evicted = cluster.pod("evicted")
    assert cluster.add(done).status == 200 and cluster.add(evicted).status == 200
    cluster.api.set_pod_phase("job", phase="Succeeded")
    cluster.api.set_pod_phase(
        "evicted", phase="Failed", reason="Evicted", message="The node was low on resource: memory."
    )
    cluster.wait_released("job")
    cluster.wait_released("evicted")


def test_statefulset_pod_keeps_its_address_across_delete_and_recreate_until_scaled_down(cluster: Cluster):
    sts = cluster.api.create_statefulset("web", replicas=2)
    pod = cluster.statefulset_pod(sts, 1)
    address = cluster.add(pod).body["ips"]
    cluster.api.delete_pod("web-1", grace_period_seconds=0)
    # The sandbox DEL of the old pod comes late, after it is gone: still kept.
    assert cluster.delete(pod).body == {"released": 0, "kept": True}
    cluster.barrier()
    assert cluster.allocations("web-1"), "the StatefulSet still wants web-1"

    recreated = cluster.statefulset_pod(sts, 1)
    assert recreated["metadata"]["uid"] != pod["metadata"]["uid"]
    assert cluster.add(recreated).body["ips"] == address
    [allocation] = cluster.allocations("web-1")
    assert allocation["owner"]["podUid"] == recreated["metadata"]["uid"]

    cluster.api.scale_statefulset("web", 1)
    cluster.api.delete_pod("web-1", grace_period_seconds=0)
    cluster.wait_released("web-1")


def test_deleting_the_statefulset_releases_its_pods(cluster: Cluster):
    sts = cluster.api.create_statefulset("gone", replicas=1)
    assert cluster.add(cluster.statefulset_pod(sts, 0)).status == 200
    cluster.api.delete_pod("gone-0", grace_period_seconds=0)
    cluster.barrier()
    assert cluster.allocations("gone-0")
    assert cluster.kube_request("DELETE", "/apis/apps/v1/namespaces/default/statefulsets/gone") == 200
    # Nothing about the pod changes now: the reconciler finds the hold invalid.
    cluster.wait_released("gone-0")


# ----------------------------------------------------------------- the reconciler


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_pod_deleted_while_the_daemon_was_stopped_is_released_after_restart(
    make_cluster: Callable[..., Cluster],
    backend: str,
    request: pytest.FixtureRequest,
):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    cluster = make_cluster(reconcile_interval=1.0, release_grace=1.0, database_url=url)
    sts = cluster.api.create_statefulset("keep", replicas=1)
    for pod in (cluster.pod("left-behind"), cluster.statefulset_pod(sts, 0), cluster.pod("alive")):
        assert cluster.add(pod).status == 200
    cluster.daemon.stop()
    cluster.api.delete_pod("left-behind", grace_period_seconds=0)
    cluster.api.delete_pod("keep-0", grace_period_seconds=0)
    cluster.daemon.start()
    cluster.wait_released("left-behind")
    # The pass that released it judged the others too: a valid hold and a live pod stay.
    assert cluster.allocations("keep-0") and cluster.allocations("alive")
    log = cluster.daemon.log()
    assert "reconcile: released allocation 1: pod default/left-behind gone" in log
    metrics = cluster.daemon.client.get("/metrics")
    assert metrics.status == 200
    assert b'ipamd_reconciler_released_total{cluster="default"} 1.0' in metrics.raw
    assert b'ipamd_releases_total{cluster="default",reason="pod_gone",subnet="net1"} 1.0' in metrics.raw


def test_the_daemon_takes_the_reconciler_lease_and_gives_it_up_on_stop(cluster: Cluster):
    wait_for(lambda: cluster.api.get("leases", "ipamd-reconciler", "kube-system"), what="the reconciler's Lease")
    lease = cluster.api.get("leases", "ipamd-reconciler", "kube-system")
    assert lease is not None and lease["spec"]["holderIdentity"] == "n1"
    cluster.daemon.stop()
    released = cluster.api.get("leases", "ipamd-reconciler", "kube-system")
    assert released is not None and not released["spec"].get("holderIdentity"), "a stopping daemon gives its Lease up"


# ----------------------------------------------------------------- the watch


def _node_requests(cluster: Cluster, *, watch: bool) -> list:
    """The daemon's list (or watch) requests for its node's pods, in order."""
    return [
        r
        for r in cluster.api.recorded("GET", "/api/v1/pods")
        if r.query.get("fieldSelector") == "spec.nodeName=n1" and bool(r.query.get("watch")) == watch
    ]


def _block_pod_collection(cluster: Cluster) -> None:
    """Makes list and watch of /api/v1/pods fail and cuts the daemon's open watch."""
    cluster.api.inject_error("GET", r"^/api/v1/pods$", code=503, reason="ServiceUnavailable", times=1_000_000)
    cluster.api.drop_watches(abrupt=True)
    wait_for(lambda: cluster.api.watch_count("pods") == 0, what="the pod watch to be cut")


def test_the_watch_resumes_after_a_dropped_connection_without_missing_a_deletion(make_cluster: Callable[..., Cluster]):
    # No reconciler pass during the test: the watch alone must find the deletion.
    cluster = make_cluster(reconcile_interval=600.0)
    pod = cluster.pod("while-cut")
    assert cluster.add(pod).status == 200
    cluster.barrier()
    _block_pod_collection(cluster)
    cluster.api.delete_pod("while-cut", grace_period_seconds=0)
    lists_before = len(_node_requests(cluster, watch=False))
    last_seen = _node_requests(cluster, watch=True)[-1].query["resourceVersion"]
    cluster.api.clear_faults()
    cluster.wait_released("while-cut")
    # Resumed from where it was (the deletion replayed from history), without a new list.
    assert len(_node_requests(cluster, watch=False)) == lists_before
    resumed = _node_requests(cluster, watch=True)[-1]
    assert int(resumed.query["resourceVersion"]) >= int(last_seen)


def test_the_watch_relists_after_410_gone_without_missing_a_deletion(make_cluster: Callable[..., Cluster]):
    # No reconciler pass during the test: the watch alone must find the deletion.
    cluster = make_cluster(reconcile_interval=600.0)
    pod = cluster.pod("while-expired")
    assert cluster.add(pod).status == 200
    cluster.barrier()
    _block_pod_collection(cluster)
    cluster.api.delete_pod("while-expired", grace_period_seconds=0)
    cluster.api.compact()
    lists_before = len(_node_requests(cluster, watch=False))
    cluster.api.clear_faults()
    cluster.wait_released("while-expired")
    assert "expired" in cluster.daemon.log() and "listing again" in cluster.daemon.log()
    # The deletion was found by comparing the new list with the cache.
    assert len(_node_requests(cluster, watch=False)) == lists_before + 1


def test_an_expired_watch_event_makes_it_relist(cluster: Cluster):
    cluster.barrier()
    cluster.api.expire_watches()
    cluster.barrier()
    assert "listing again" in cluster.daemon.log()


def test_write_back_failures_are_retried_and_never_undo_the_allocation(cluster: Cluster):
    pod = cluster.pod("flaky")
    cluster.api.inject_error("PATCH", r"/pods/flaky$", code=500, times=2)
    reply = cluster.add(pod)
    assert reply.status == 200, reply.body
    wait_for(lambda: cluster.annotations("flaky").get(note("allocated")) == "true", what="the retried write-back")
    assert cluster.addresses("flaky") == ["192.0.2.11"]


# ----------------------------------------------------------------- through the real CNI shim


def test_through_the_cni_shim(cluster: Cluster):
    from tests.plugin.shim_harness import run_shim

    def shim(command: str, pod: dict, container: str):
        config = {
            "cniVersion": "1.0.0",
            "name": "macvlan",
            "type": "macvlan",
            "ipam": {"type": "ipamd", "server_socket": cluster.daemon.socket, "provider": "macvlan.default"},
        }
        args = (
            f"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod['metadata']['name']};"
            f"K8S_POD_INFRA_CONTAINER_ID={container};K8S_POD_UID={pod['metadata']['uid']}"
        )
        return run_shim(command, config, container_id=container, ifname="net1", cni_args=args)

    pod = cluster.pod("shimmed", annotations={note("ip_address"): "192.0.2.77"})
    added = shim("ADD", pod, "ctr-1")
    assert added.returncode == 0, added.stderr + added.stdout
    assert added.output["ips"] == [{"address": "192.0.2.77/24", "gateway": "192.0.2.1"}]
    assert cluster.annotations("shimmed")[note("ip_address")] == "192.0.2.77"

    rival = cluster.pod("rival", annotations={note("ip_address"): "192.0.2.77"})
    refused = shim("ADD", rival, "ctr-2")
    assert refused.returncode != 0
    assert refused.output["code"] == 101
    assert "held by default/shimmed" in refused.output["msg"]
    assert "held by default/shimmed" in cluster.events("rival")[0]["message"]

    # DEL while the pod lives keeps the address; a new sandbox gets it back.
    assert shim("DEL", pod, "ctr-1").returncode == 0
    again = shim("ADD", pod, "ctr-3")
    assert again.returncode == 0 and again.output["ips"][0]["address"] == "192.0.2.77/24"
    cluster.api.delete_pod("shimmed", grace_period_seconds=0)
    cluster.wait_released("shimmed")
    assert shim("DEL", pod, "ctr-3").returncode == 0


# ----------------------------------------------------------------- routes, ip_family, MAC, ordinals.start, dual-stack pools

DUAL = {**NET1, "cidrBlock": "192.0.2.0/24,2001:db8:7::/64", "gateway": "192.0.2.1,2001:db8:7::1"}


def test_routes_annotation_joins_the_result_and_bad_routes_are_refused(cluster: Cluster):
    routes = '[{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}]'
    reply = cluster.add(cluster.pod("routed", annotations={note("routes"): routes}))
    assert reply.status == 200, reply.body
    assert reply.body["routes"] == [{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}]
    bad = cluster.add(cluster.pod("misrouted", annotations={note("routes"): '[{"dst": "nowhere"}]'}))
    assert bad.status == 400 and bad.message.startswith(f"{note('routes')}[0].dst:"), bad.body
    assert cluster.events("misrouted")


def test_ip_family_on_a_single_stack_subnet(cluster: Cluster):
    assert (
        cluster.add(cluster.pod("v4", annotations={note("ip_family"): "ipv4"})).body["ips"][0]["address"]
        == "192.0.2.11/24"
    )
    v6 = cluster.add(cluster.pod("v6", annotations={note("ip_family"): "ipv6"}))
    assert (
        v6.status == 400
        and v6.message == f"{note('ip_family')}: IPv6 asked, but no subnet of network macvlan.default has IPv6"
    )
    assert "IPv6 asked" in cluster.events("v6")[0]["message"]
    odd = cluster.add(cluster.pod("odd", annotations={note("ip_family"): "dual"}))
    assert odd.status == 400 and odd.message == f"{note('ip_family')}: 'dual': expected ipv4 or ipv6"
    assert not cluster.allocations("v6") and not cluster.allocations("odd")


def test_ip_family_and_pools_on_a_dual_stack_subnet(make_cluster):
    cluster = make_cluster(subnet=DUAL)
    both = cluster.add(cluster.pod("both")).body["ips"]
    assert [ip["family"] for ip in both] == [4, 6]
    only6 = cluster.add(cluster.pod("only6", annotations={note("ip_family", "net1"): "ipv6"}))
    assert [ip["address"] for ip in only6.body["ips"]] == ["2001:db8:7::3/64"], only6.body
    clash = cluster.add(
        cluster.pod("clash", annotations={note("ip_family"): "ipv4", note("ip_address"): "2001:db8:7::50"})
    )
    assert clash.status == 400 and "ip_family asks for IPv4 only" in clash.message
    # One dual-stack rule for every pool form: a family the pool does not list comes from
    # the subnet's dynamic space.
    assert (
        cluster.daemon.client.post("/v1/pools", {"name": "v4-only", "subnet": "net1", "ips": ["192.0.2.100"]}).status
        == 201
    )
    named = cluster.add(cluster.pod("named", annotations={note("ip_pool"): "v4-only"})).body["ips"]
    listed = cluster.add(cluster.pod("listed", annotations={note("ip_pool"): "192.0.2.110"})).body["ips"]
    assert [(ip["family"], ip["address"]) for ip in named] == [(4, "192.0.2.100/24"), (6, "2001:db8:7::4/64")]
    assert [(ip["family"], ip["address"]) for ip in listed] == [(4, "192.0.2.110/24"), (6, "2001:db8:7::5/64")]
    pooled4 = cluster.add(cluster.pod("pooled4", annotations={note("ip_pool"): "v4-only", note("ip_family"): "ipv6"}))
    assert pooled4.status == 400 and pooled4.message == f"{note('ip_family')}: pool v4-only has no IPv6 member"


def test_a_mac_annotation_without_the_runtime_mac_raises_an_event(cluster: Cluster):
    reply = cluster.add(cluster.pod("macless", annotations={note("mac_address"): "02:00:00:00:00:51"}))
    assert reply.status == 200 and reply.body["mac"] == "02:00:00:00:00:51"
    [event] = cluster.events("macless", reason="MacNotApplied")
    assert '"capabilities": {"mac": true}' in event["message"] and "02:00:00:00:00:51 on net1" in event["message"]
    passed = cluster.add(
        cluster.pod("macful", annotations={note("mac_address"): "02:00:00:00:00:52"}), mac="02:00:00:00:00:52"
    )
    assert passed.status == 200 and not cluster.events("macful", reason="MacNotApplied")


def test_statefulset_ordinals_start_counts_pool_members_from_start(cluster: Cluster):
    assert (
        cluster.daemon.client.post(
            "/v1/pools", {"name": "db-pool", "subnet": "net1", "ips": ["192.0.2.100..192.0.2.102"]}
        ).status
        == 201
    )
    sts = cluster.api.create_statefulset("pg", replicas=3)
    cluster.api.update("statefulsets", "pg", lambda obj: obj["spec"].__setitem__("ordinals", {"start": 5}))
    pod = cluster.statefulset_pod(sts, 6, annotations={note("ip_pool"): "db-pool"})
    reply = cluster.add(pod)
    assert reply.body["ips"][0]["address"] == "192.0.2.101/24", reply.body
    # ordinal 6 of 5..7 is not scaled away: a DEL while the pod lives keeps its address.
    assert cluster.delete(pod).body == {"released": 0, "kept": True}
    below = cluster.add(cluster.statefulset_pod(sts, 2, annotations={note("ip_pool"): "db-pool"}))
    assert below.status == 400 and "below spec.ordinals.start 5" in below.message
