"""Reading other IPAMs' recorded state into adoptions: names, offsets, interfaces."""

from __future__ import annotations

import json

from ipamd.core import adopt


def pod(name: str, annotations: dict[str, str] | None = None, *, phase: str = "Running", node: str = "n1") -> dict:
    return {
        "metadata": {"name": name, "namespace": "default", "annotations": annotations or {}},
        "spec": {"nodeName": node},
        "status": {"phase": phase},
    }


def test_whereabouts_pool_names_follow_ippoolname():
    assert adopt.whereabouts_pool_name("192.0.2.0/24", "") == "192.0.2.0-24"
    assert adopt.whereabouts_pool_name("192.0.2.0/24", "tenant-a") == "tenant-a-192.0.2.0-24"
    assert adopt.whereabouts_pool_name("2001:db8::/64", "") == "2001-db8---64"


def test_ippool_offsets_count_from_the_range_and_interfaces_come_from_selections():
    nad = {
        "metadata": {"name": "wb", "namespace": "default"},
        "spec": {
            "config": json.dumps(
                {
                    "name": "wb-net",
                    "plugins": [{"type": "macvlan", "ipam": {"type": "whereabouts", "range": "2001:db8::/64"}}],
                }
            )
        },
    }
    selected = pod("p", {adopt.NETWORKS: '[{"name": "other"}, {"name": "wb", "interface": "wb0"}]'})
    pools = [
        {
            "metadata": {"name": "2001-db8---64"},
            "spec": {"range": "2001:db8::/64", "allocations": {"16": {"id": "c", "podref": "default/p"}}},
        }
    ]
    plan = adopt.whereabouts(pools, [], [nad], [selected])
    [adoption] = plan.adoptions
    assert (adoption.ips, adoption.interface, adoption.network, adoption.node) == (
        ("2001:db8::10",),
        "wb0",
        "wb-net",
        "n1",
    )
    assert adoption.cni_add()["ipam"] == {"type": "whereabouts", "range": "2001:db8::/64"}


def test_reservation_names_give_their_address():
    assert adopt._reservation_address("192.0.2.9") == "192.0.2.9"
    assert adopt._reservation_address("tenant-a-192.0.2.9") == "192.0.2.9"
    assert adopt._reservation_address("2001-db8--9") == "2001:db8::9"


def test_kube_ovn_plan_skips_its_own_network_terminal_pods_and_empty_results():
    note = "macvlan.default.kubernetes.io/"
    pods = [
        pod(
            "a",
            {
                f"{note}allocated": "true",
                f"{note}ip_address": "192.0.2.5,2001:db8::5",
                f"{note}mac_address": "02:00:00:00:00:05",
                "ovn.kubernetes.io/allocated": "true",
                "ovn.kubernetes.io/ip_address": "198.18.1.5",
                "attach.default.ovn.kubernetes.io/allocated": "true",
                "attach.default.ovn.kubernetes.io/ip_address": "198.18.2.5",
            },
        ),
        pod("done", {f"{note}allocated": "true", f"{note}ip_address": "192.0.2.6"}, phase="Failed"),
        pod("empty", {f"{note}allocated": "true"}),
    ]
    plan = adopt.kube_ovn(pods)
    [adoption] = plan.adoptions
    assert (adoption.pod, adoption.ips, adoption.mac, adoption.interface) == (
        "a",
        ("192.0.2.5", "2001:db8::5"),
        "02:00:00:00:00:05",
        "net1",
    )
    assert adoption.notes == ("interface not recorded on the pod; assumed net1",)
    reasons = sorted(s.reason for s in plan.skipped)
    assert reasons == [
        "no ip_address recorded",
        "provider attach.default.ovn is Kube-OVN's own OVN network, not an attachment ipamd serves",
        "provider ovn is Kube-OVN's own OVN network, not an attachment ipamd serves",
    ]


def test_host_local_without_a_config_or_with_an_empty_lease():
    plan = adopt.host_local(
        {"net": {"192.0.2.5": "", "198.51.100.1": "cid"}, "lonely": {"192.0.2.7": "cid"}},
        {"net": {"type": "host-local", "subnet": "192.0.2.0/24"}},
        [],
    )
    assert [(s.source.rsplit("/", 2)[-2:], s.reason) for s in plan.skipped] == [
        (["lonely", "192.0.2.7"], "no CNI config named lonely: pass it with --cni-config or create its NAD"),
        (["net", "192.0.2.5"], "empty lease file"),
    ]
    [adoption] = plan.adoptions
    assert (adoption.pod, adoption.container_id, adoption.interface) == (None, "cid", "eth0")
    assert "podName" not in adoption.cni_add()
