"""Placement rules in Kubernetes mode, through the real CNI plugin binary: labels of the
node, the namespace and the pod come from the API double, refusals raise an Event."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from ipamd.ctl import main as ipamctl_main
from tests.k8s.conftest import NODE, PROVIDER
from tests.support.waiting import wait_for


def subnet(name: str, cidr: str, **rules: Any) -> dict[str, Any]:
    return {"name": name, "cidrBlock": cidr, "provider": PROVIDER, **rules}


def address(result: Any) -> str:
    return str(result["ips"][0]["address"])


def test_a_nodes_site_label_picks_its_sites_subnet_and_follows_a_relabel(make_cluster):
    cluster = make_cluster(subnet=None)
    cluster.api.create_node(NODE, labels={"topology.kubernetes.io/zone": "east"})
    for name, cidr, zone in (("site-east", "192.0.2.0/24", "east"), ("site-west", "198.51.100.0/24", "west")):
        rules = {"nodeSelector": {"matchLabels": {"topology.kubernetes.io/zone": zone}}}
        assert cluster.daemon.client.post("/v1/subnets", subnet(name, cidr, **rules)).status == 201

    # The node watch may not have listed yet: the ADD then reads the node itself.
    code, result = cluster.plugin("ADD", cluster.pod("a"))
    assert code == 0, result
    assert address(result) == "192.0.2.2/24"

    cluster.api.update(
        "nodes",
        NODE,
        lambda node: node["metadata"]["labels"].update({"topology.kubernetes.io/zone": "west"}),
        namespace="",
    )
    # The watch brings the new label: a later pod gets the west subnet, the first keeps its address.
    names = (f"b-{n}" for n in itertools.count())

    def second() -> Any:
        code, result = cluster.plugin("ADD", cluster.pod(next(names)))
        return result if code == 0 and address(result).startswith("198.51.100.") else None

    assert address(wait_for(second, what="the node's new zone label to reach the daemon")) == "198.51.100.2/24"
    assert cluster.addresses("a") == ["192.0.2.2"]


def test_namespace_bound_subnet_refuses_other_namespaces_with_an_event(make_cluster):
    cluster = make_cluster(subnet=None)
    cluster.api.create_namespace("tenant-a", labels={"tenant": "a"})
    cluster.api.create_namespace("tenant-b", labels={"tenant": "b"})
    tenant = subnet("tenant-a-net", "203.0.113.0/24", namespaceSelector={"matchLabels": {"tenant": "a"}})
    assert cluster.daemon.client.post("/v1/subnets", tenant).status == 201

    code, result = cluster.plugin("ADD", cluster.pod("ok", namespace="tenant-a"))
    assert code == 0, result
    assert address(result) == "203.0.113.2/24"

    intruder = cluster.pod("intruder", namespace="tenant-b")
    code, result = cluster.plugin("ADD", intruder)
    assert code == 1
    assert result["code"] == 107
    message = (
        f"no subnet of network {PROVIDER} admits tenant-b/intruder (namespace tenant-b, node {NODE}): "
        "subnet tenant-a-net: namespaceSelector tenant=a does not match (tenant=a not met by the namespace's labels)"
    )
    assert result["msg"] == message
    [event] = cluster.api.events("tenant-b", involved_name="intruder", reason="AcquireAddressFailed")
    assert event["type"] == "Warning"
    assert event["message"] == f"ipamd could not allocate an address on net1 (network {PROVIDER}): {message}"

    # Relabelling the namespace (the namespace watch keeps it current) lets its next pod in.
    cluster.api.update(
        "namespaces", "tenant-b", lambda ns: ns["metadata"]["labels"].update({"tenant": "a"}), namespace=""
    )

    def admitted() -> Any:
        code, result = cluster.plugin("ADD", intruder)
        return result if code == 0 else None

    assert address(wait_for(admitted, what="the namespace's new label to reach the daemon")) == "203.0.113.3/24"


def test_pod_selector_uses_the_pods_own_labels(make_cluster):
    cluster = make_cluster(subnet=None)
    routers = subnet(
        "routers",
        "198.18.0.0/24",
        priority=1,
        podSelector={"matchExpressions": [{"key": "app", "operator": "In", "values": ["router"]}]},
    )
    rest = subnet("everyone-else", "198.18.1.0/24", priority=2)
    for body in (routers, rest):
        assert cluster.daemon.client.post("/v1/subnets", body).status == 201
    code, result = cluster.plugin("ADD", cluster.pod("r1", labels={"app": "router"}))
    assert (code, address(result)) == (0, "198.18.0.2/24")
    code, result = cluster.plugin("ADD", cluster.pod("w1", labels={"app": "web"}))
    assert (code, address(result)) == (0, "198.18.1.2/24")


def test_kube_ovn_subnet_with_namespaces_applied_unchanged_binds_the_same(
    make_cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    cluster = make_cluster(subnet=None)
    manifest = tmp_path / "subnet.yaml"
    manifest.write_text(
        f"""\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: team-a
spec:
  protocol: IPv4
  cidrBlock: 198.51.100.0/24
  gateway: 198.51.100.1
  provider: {PROVIDER}
  namespaces: [team-a]
"""
    )
    assert ipamctl_main(["--socket", cluster.daemon.socket, "apply", "-f", str(manifest)]) == 0
    assert "subnet/team-a created" in capsys.readouterr().out
    cluster.api.create_namespace("team-a")
    cluster.api.create_namespace("team-b")
    code, result = cluster.plugin("ADD", cluster.pod("mine", namespace="team-a"))
    assert (code, address(result)) == (0, "198.51.100.2/24")
    code, result = cluster.plugin("ADD", cluster.pod("theirs", namespace="team-b"))
    assert code == 1 and result["code"] == 107
    assert result["msg"].endswith("subnet team-a: namespaces [team-a] does not include namespace team-b")
    assert cluster.api.events("team-b", involved_name="theirs", reason="AcquireAddressFailed")


def test_a_pool_bound_to_pods_by_label_refuses_others_that_name_it(make_cluster):
    cluster = make_cluster(subnet=None)
    assert cluster.daemon.client.post("/v1/subnets", subnet("net1", "192.0.2.0/24")).status == 201
    pool = {
        "name": "routers",
        "subnet": "net1",
        "ips": ["192.0.2.50..192.0.2.51"],
        "podSelector": {"matchLabels": {"app": "router"}},
    }
    reply = cluster.daemon.client.post("/v1/pools", pool)
    assert reply.status == 201 and reply.body["podSelector"] == {"matchLabels": {"app": "router"}}
    ask = {f"{PROVIDER}.kubernetes.io/ip_pool": "routers"}
    code, result = cluster.plugin("ADD", cluster.pod("r1", labels={"app": "router"}, annotations=ask))
    assert (code, address(result)) == (0, "192.0.2.50/24")
    code, result = cluster.plugin("ADD", cluster.pod("web-1", labels={"app": "web"}, annotations=ask))
    assert code == 1 and result["code"] == 107
    assert result["msg"] == (
        f"pool routers does not admit default/web-1 (namespace default, node {NODE}): "
        "podSelector app=router does not match (app=router not met by the pod's labels)"
    )
    assert cluster.api.events("default", involved_name="web-1", reason="AcquireAddressFailed")
