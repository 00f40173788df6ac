"""``ipamctl import``: running pods' addresses from Kube-OVN, Whereabouts and host-local are
adopted before ipamd hands anything out; conflicts are reported, never overwritten.

The daemon runs in Kubernetes mode against the API double; ipamctl runs in-process and reads
the double (or files saved from it), and host-local leases from a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ipamd.ctl import main as ipamctl_main
from tests.k8s.conftest import NET1, NODE, Cluster, note

STATUS = "k8s.v1.cni.cncf.io/network-status"


def ipamctl(cluster: Cluster, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = ipamctl_main(["--socket", cluster.daemon.socket, "import", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def kubeconfig(cluster: Cluster, tmp_path: Path) -> str:
    return str(cluster.api.write_kubeconfig(tmp_path / "import-kubeconfig"))


def status(name: str, interface: str, ip: str) -> str:
    return json.dumps(
        [
            {"name": "kube-ovn", "interface": "eth0", "ips": ["198.18.1.5"], "default": True},
            {"name": name, "interface": interface, "ips": [ip], "mac": "02:00:00:00:01:01"},
        ]
    )


def nad(cluster: Cluster, name: str, config: dict[str, Any], namespace: str = "default") -> dict[str, Any]:
    body = {
        "apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"config": json.dumps(config)},
    }
    return cluster.api.create("network-attachment-definitions", body, namespace=namespace)


def test_kube_ovn_pods_are_adopted_and_a_new_pod_never_gets_their_addresses(
    cluster: Cluster,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
):
    running = {
        note("allocated"): "true",
        note("ip_address"): "192.0.2.11",
        note("mac_address"): "02:00:00:00:00:11",
        STATUS: status("default/macvlan", "net2", "192.0.2.11"),
        "ovn.kubernetes.io/allocated": "true",
        "ovn.kubernetes.io/ip_address": "198.18.1.5",
    }
    cluster.pod("legacy-a", annotations=running)
    cluster.pod("legacy-b", annotations={note("allocated"): "true", note("ip_address"): "192.0.2.12"})
    cluster.api.create_pod(
        "finished", annotations={note("allocated"): "true", note("ip_address"): "192.0.2.13"}, phase="Succeeded"
    )
    cluster.api.create(
        "ips",
        {
            "apiVersion": "kubeovn.io/v1",
            "kind": "IP",
            "metadata": {"name": "legacy-b.default.macvlan.default"},
            "spec": {
                "podName": "legacy-b",
                "namespace": "default",
                "containerID": "sandbox-of-b",
                "ipAddress": "192.0.2.12",
            },
        },
        namespace=None,
    )
    # ipamd already gave 192.0.2.11 to a new pod: that pod's old address is a conflict.
    assert cluster.add(cluster.pod("newcomer")).body["ips"][0]["address"] == "192.0.2.11/24"
    cluster.pod("legacy-c", annotations={note("allocated"): "true", note("ip_address"): "192.0.2.11"})
    before = cluster.allocations()

    code, out, err = ipamctl(cluster, capsys, "kube-ovn", "--kubeconfig", kubeconfig(cluster, tmp_path), "--dry-run")
    assert code == 0, err
    assert "would adopt default/legacy-a net2 192.0.2.11" in out and cluster.allocations() == before

    code, out, err = ipamctl(cluster, capsys, "kube-ovn", "--kubeconfig", kubeconfig(cluster, tmp_path))
    assert code == 1, (out, err)
    assert "conflict  default/legacy-a net2 192.0.2.11" in out and "held by default/newcomer net1" in out
    assert "conflict  default/legacy-c net1 192.0.2.11" in out
    assert "adopted   default/legacy-b net1 192.0.2.12" in out
    assert (
        "skipped   pod default/legacy-a annotations of provider ovn: provider ovn is Kube-OVN's own OVN network" in out
    )
    assert "finished" not in out
    # Nothing was overwritten: the newcomer keeps its address.
    [kept] = cluster.allocations("newcomer")
    assert kept["addresses"][0]["address"] == "192.0.2.11"
    [adopted] = cluster.allocations("legacy-b")
    assert adopted["addresses"][0]["address"] == "192.0.2.12"
    assert adopted["owner"]["containerId"] == "sandbox-of-b" and adopted["networkKey"] == "macvlan.default"
    # A CNI GC that lists none of them leaves adopted attachments alone (no runtime made them).
    gc = cluster.daemon.client.post(
        "/v1/cni/gc",
        {
            "network": "macvlan",
            "ipam": {"type": "ipamd", "provider": "macvlan.default"},
            "validAttachments": [{"containerId": kept["owner"]["containerId"], "ifName": "net1"}],
        },
    )
    assert gc.status == 200 and gc.body == {"released": 0}, gc.body
    assert cluster.allocations("legacy-b")

    # A new pod never gets an adopted address; the adopted pod's next sandbox keeps its own.
    assert cluster.add(cluster.pod("fresh")).body["ips"][0]["address"] == "192.0.2.13/24"
    legacy_b = cluster.api.get_pod("legacy-b")
    assert cluster.add(legacy_b).body["ips"][0]["address"] == "192.0.2.12/24"

    # Running the import again changes nothing and reports the same conflicts.
    code, out, _ = ipamctl(cluster, capsys, "kube-ovn", "--kubeconfig", kubeconfig(cluster, tmp_path))
    assert code == 1 and f"as allocation {adopted['id']} (192.0.2.12/24)" in out


def test_whereabouts_ippools_from_saved_objects(cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    config = {
        "cniVersion": "0.3.1",
        "name": "wb-net",
        "type": "macvlan",
        "master": "eth1",
        "ipam": {"type": "whereabouts", "range": "198.51.100.0/28", "exclude": ["198.51.100.0/31"]},
    }
    nads = [nad(cluster, "wb-net", config)]
    pods = [
        cluster.pod("wb-1", annotations={STATUS: status("default/wb-net", "net1", "198.51.100.3")}),
        cluster.pod("wb-2"),
        cluster.pod("wb-odd"),
    ]
    pool = {
        "apiVersion": "whereabouts.cni.cncf.io/v1alpha1",
        "kind": "IPPool",
        "metadata": {"name": "198.51.100.0-28", "namespace": "kube-system"},
        "spec": {
            "range": "198.51.100.0/28",
            "allocations": {
                "3": {"id": "cid-wb-1", "podref": "default/wb-1", "ifname": "net1"},
                "4": {"id": "cid-wb-2", "podref": "default/wb-2"},
                "5": {"id": "cid-gone", "podref": "default/deleted-long-ago"},
            },
        },
    }
    reservations = [
        {
            "apiVersion": "whereabouts.cni.cncf.io/v1alpha1",
            "kind": "OverlappingRangeIPReservation",
            "metadata": {"name": "198.51.100.3", "namespace": "kube-system"},
            "spec": {"podref": "default/wb-1", "ifname": "net1"},
        },
        {
            "apiVersion": "whereabouts.cni.cncf.io/v1alpha1",
            "kind": "OverlappingRangeIPReservation",
            "metadata": {"name": "198.51.100.9", "namespace": "kube-system"},
            "spec": {"podref": "default/wb-odd", "ifname": "net1"},
        },
    ]
    saved = tmp_path / "whereabouts.json"
    saved.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [*nads, *pods, pool, *reservations]}))

    code, out, err = ipamctl(cluster, capsys, "whereabouts", "--from-file", str(saved))
    assert code == 0, (out, err)
    assert "adopted   default/wb-1 net1 198.51.100.3" in out
    assert "adopted   default/wb-2 net1 198.51.100.4" in out
    assert "skipped   IPPool 198.51.100.0-28 offset 5: 198.51.100.5: pod default/deleted-long-ago is not running" in out
    assert "OverlappingRangeIPReservation 198.51.100.9: 198.51.100.9 is reserved for running pod default/wb-odd" in out
    # The reservation of an adopted allocation is its twin: not reported.
    assert "OverlappingRangeIPReservation 198.51.100.3" not in out

    # The NAD's own ADDs now skip the adopted addresses, and the adopted sandbox keeps its own.
    def add(pod: str, container: str) -> str:
        if cluster.api.get_pod(pod) is None:
            cluster.pod(pod)
        reply = cluster.daemon.client.post(
            "/v1/cni/add",
            {
                "containerId": container,
                "ifName": "net1",
                "network": "wb-net",
                "ipam": {**config["ipam"], "type": "ipamd"},
                "podNamespace": "default",
                "podName": pod,
            },
        )
        assert reply.status == 200, reply.body
        return str(reply.body["ips"][0]["address"])

    assert add("wb-1", "cid-wb-1") == "198.51.100.3/28"
    fresh = [add(name, f"c-{name}") for name in ("new-1", "new-2", "new-3")]
    assert fresh == ["198.51.100.2/28", "198.51.100.5/28", "198.51.100.6/28"]


def test_host_local_leases_from_its_data_directory(
    cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path
):
    config = {
        "cniVersion": "1.0.0",
        "name": "hl-net",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "br0",
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": "203.0.113.0/24", "rangeStart": "203.0.113.10"}]],
                },
            }
        ],
    }
    nad(cluster, "hl-net", config)
    cluster.pod("hl-pod", annotations={STATUS: status("default/hl-net", "net1", "203.0.113.10")})
    leases = tmp_path / "networks" / "hl-net"
    leases.mkdir(parents=True)
    (leases / "203.0.113.10").write_text("cid-hl-pod\r\nnet1")
    (leases / "203.0.113.11").write_text("cid-unknown")  # the pre-0.8 format: the container id only
    (leases / "last_reserved_ip.0").write_text("203.0.113.11")
    (leases / "lock").write_text("")
    (tmp_path / "networks" / "orphan-net").mkdir()
    (tmp_path / "networks" / "orphan-net" / "198.18.0.5").write_text("cid-x\r\neth0")

    code, out, err = ipamctl(
        cluster,
        capsys,
        "host-local",
        "--kubeconfig",
        kubeconfig(cluster, tmp_path),
        "--data-dir",
        str(tmp_path / "networks"),
    )
    assert code == 0, (out, err)
    assert "adopted   default/hl-pod net1 203.0.113.10" in out
    assert "adopted   container cid-unknown eth0 203.0.113.11" in out
    assert "orphan-net/198.18.0.5: no CNI config named orphan-net" in out
    assert [a["owner"]["containerId"] for a in cluster.allocations("hl-pod")] == ["cid-hl-pod"]

    cluster.pod("hl-next")
    reply = cluster.daemon.client.post(
        "/v1/cni/add",
        {
            "containerId": "c-next",
            "ifName": "net1",
            "network": "hl-net",
            "ipam": {**config["plugins"][0]["ipam"], "type": "ipamd"},
            "podNamespace": "default",
            "podName": "hl-next",
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body["ips"][0]["address"] == "203.0.113.12/24"


def test_import_errors_are_one_line(cluster: Cluster, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    code, _, err = ipamctl(cluster, capsys, "host-local", "--data-dir", str(tmp_path / "missing"))
    assert code == 1 and "is not a directory" in err and "Traceback" not in err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = ipamctl(cluster, capsys, "kube-ovn", "--from-file", str(bad))
    assert code == 1 and err.startswith("ipamctl: ") and "neither JSON nor YAML: not valid YAML at line 1" in err
    assert len(err.strip().splitlines()) == 1, err


def test_adopt_annotations_before_serving(make_cluster, kube, tmp_path: Path):
    """Migration with running Kube-OVN pods: the daemon adopts them before its first ADD."""
    config = tmp_path / "ipamd.yaml"
    config.write_text(json.dumps({"subnets": [{**NET1}]}))
    api = kube.api
    live = {
        note("allocated"): "true",
        note("ip_address"): "192.0.2.11",
        note("mac_address"): "02:00:00:00:00:11",
        STATUS: status("default/macvlan", "net1", "192.0.2.11"),
    }
    first = api.create_pod("running-a", node_name=NODE, annotations=live, phase="Running")
    api.create_pod(
        "running-b",
        node_name=NODE,
        annotations={note("allocated"): "true", note("ip_address"): "192.0.2.12"},
        phase="Running",
    )
    api.create_pod(
        "outside",
        node_name=NODE,
        annotations={note("allocated"): "true", note("ip_address"): "203.0.113.9"},
        phase="Running",
    )
    api.create_pod(
        "elsewhere",
        node_name="n2",
        annotations={note("allocated"): "true", note("ip_address"): "192.0.2.20"},
        phase="Running",
    )

    cluster = make_cluster(subnet=None, extra_args=("--config", str(config), "--adopt-annotations"))
    [a] = cluster.allocations("running-a")
    assert (a["addresses"][0]["address"], a["mac"], a["node"]) == ("192.0.2.11", "02:00:00:00:00:11", NODE)
    assert a["owner"]["podUid"] == first["metadata"]["uid"] and a["owner"]["interface"] == "net1"
    assert [x["address"] for x in cluster.allocations("running-b")[0]["addresses"]] == ["192.0.2.12"]
    # Another node's daemon adopts its own pods; an unusable address is refused with an Event.
    assert not cluster.allocations("elsewhere") and not cluster.allocations("outside")
    [event] = cluster.events("outside", reason="AdoptAddressFailed")
    assert "203.0.113.9 is outside subnet net1" in event["message"]

    # New pods never get an adopted address; an adopted pod's next sandbox keeps its own.
    assert cluster.add(cluster.pod("new-1")).body["ips"][0]["address"] == "192.0.2.13/24"
    assert cluster.add(api.get_pod("running-a")).body["ips"][0]["address"] == "192.0.2.11/24"
