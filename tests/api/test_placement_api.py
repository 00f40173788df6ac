"""Placement rules through the REST API and the real CNI plugin binary: subnets bound to
sites (nodes) and tenants (namespaces) on one provider."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import Daemon

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugin" / "bin" / "ipamd"
PROVIDER = "edge.default"
EAST = {
    "name": "site-east",
    "cidrBlock": "192.0.2.0/28",
    "provider": PROVIDER,
    "nodeSelector": {"matchLabels": {"site": "east"}},
}
WEST = {"name": "site-west", "cidrBlock": "198.51.100.0/28", "provider": PROVIDER, "nodeNames": ["west-1", "west-2"]}


def allocate(daemon: Daemon, subnet: str, pod: str, **extra: Any):
    return daemon.client.post("/v1/allocations", {"subnet": subnet, "owner": {"namespace": "lab", "pod": pod}, **extra})


def plugin_add(daemon: Daemon, *, pod: str, namespace: str = "lab", provider: str = PROVIDER) -> tuple[int, Any]:
    """One CNI ADD through plugin/bin/ipamd, as a runtime runs it."""
    config = {
        "cniVersion": "1.0.0",
        "name": "edge",
        "ipam": {"type": "ipamd", "server_socket": daemon.socket, "provider": provider},
    }
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": f"ctr-{pod}",
        "CNI_IFNAME": "net1",
        "CNI_NETNS": "/var/run/netns/x",
        "CNI_PATH": "/opt/cni/bin",
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={pod}",
    }
    done = subprocess.run([str(PLUGIN)], input=json.dumps(config).encode(), env=env, capture_output=True, timeout=60)
    return done.returncode, json.loads(done.stdout)


@pytest.fixture
def sites(tmp_path: Path, postgres_url: str):
    """Two daemons on one PostgreSQL database, one per site's node."""
    daemons = [
        Daemon(tmp_path, postgres_url, name=node, extra_args=("--node-name", node)).start()
        for node in ("east-1", "west-1")
    ]
    yield daemons
    for daemon in daemons:
        daemon.stop()


def test_each_sites_nodes_get_their_sites_subnet_through_the_plugin(sites):
    east, west = sites
    assert east.client.post("/v1/subnets", {**EAST, "nodeSelector": None, "nodeNames": ["east-1"]}).status == 201
    assert east.client.post("/v1/subnets", WEST).status == 201
    code, result = plugin_add(west, pod="w")
    assert code == 0, result
    assert result["ips"][0]["address"] == "198.51.100.2/28"
    code, result = plugin_add(east, pod="e")
    assert code == 0, result
    assert result["ips"][0]["address"] == "192.0.2.2/28"
    # The east subnet has priority 0 like the west one and sorts first: the west node still
    # never gets it.
    code, result = plugin_add(west, pod="w2")
    assert result["ips"][0]["address"] == "198.51.100.3/28"


def test_a_node_no_subnet_admits_gets_a_clear_error_through_the_plugin(sites):
    east, _ = sites
    assert east.client.post("/v1/subnets", WEST).status == 201
    code, result = plugin_add(east, pod="lost")
    assert code == 1
    assert result["code"] == 107
    assert result["msg"] == (
        f"no subnet of network {PROVIDER} admits lab/lost (namespace lab, node east-1): "
        "subnet site-west: nodeNames [west-1, west-2] does not include node east-1"
    )


def test_rest_allocations_name_node_labels_and_namespace(daemon: Daemon):
    assert daemon.client.post("/v1/subnets", EAST).status == 201
    got = allocate(daemon, "site-east", "router", node="edge-9", labels={"node": {"site": "east"}})
    assert got.status == 201, got.body
    refused = allocate(daemon, "site-east", "router-b", node="edge-9", labels={"node": {"site": "west"}})
    assert refused.status == 409
    assert refused.error_code == "not_admitted"
    assert refused.message == (
        "subnet site-east does not admit lab/router-b (namespace lab, node edge-9): "
        "nodeSelector site=east does not match (site=east not met by the node's labels)"
    )
    unknown = allocate(daemon, "site-east", "router-c", node="edge-9")
    assert unknown.message.endswith("nodeSelector site=east cannot be checked: the node's labels are unknown")
    bad = allocate(daemon, "site-east", "router-d", labels={"node": {"site": "no spaces"}})
    assert bad.status == 400 and bad.message.startswith("labels.node.site: 'no spaces' is not a label value")
    # The node named is checked by the rule a CNI request's node meets (ipamd.core.identity).
    forged = allocate(daemon, "site-east", "router-e", node="edge-9\nforged", labels={"node": {"site": "east"}})
    assert forged.status == 400 and forged.message.startswith(
        "node: 'edge-9\\nforged' contains the control character '\\n'"
    )
    assert [a["owner"]["pod"] for a in daemon.client.get("/v1/allocations").body["items"]] == ["router"]


def test_namespace_bound_subnet_refuses_other_namespaces_and_exhaustion_is_another_error(daemon: Daemon):
    tenant = {
        "name": "tenant-a",
        "cidrBlock": "203.0.113.0/30",
        "provider": "tenants",
        "namespaces": ["team-a"],
        "gateway": "none",
    }
    reply = daemon.client.post("/v1/subnets", tenant)
    assert reply.status == 201 and reply.body["namespaces"] == ["team-a"]
    other = daemon.client.post("/v1/allocations", {"subnet": "tenant-a", "owner": {"namespace": "team-b", "pod": "p"}})
    assert other.status == 409 and other.error_code == "not_admitted"
    assert other.body["error"]["cniCode"] == 107
    # The daemon's node (its host name) is the node of an allocation that names none.
    assert other.message == (
        f"subnet tenant-a does not admit team-b/p (namespace team-b, node {socket.gethostname()}): "
        "namespaces [team-a] does not include namespace team-b"
    )
    for pod in ("p1", "p2"):
        assert (
            daemon.client.post(
                "/v1/allocations", {"subnet": "tenant-a", "owner": {"namespace": "team-a", "pod": pod}}
            ).status
            == 201
        )
    full = daemon.client.post("/v1/allocations", {"subnet": "tenant-a", "owner": {"namespace": "team-a", "pod": "p3"}})
    assert full.error_code == "exhausted"
    # Unbinding (PATCH to null) lets every namespace in again.
    patched = daemon.client.patch("/v1/subnets/tenant-a", {"namespaces": None})
    assert patched.status == 200 and "namespaces" not in patched.body


def test_cni_add_walks_past_refusing_subnets_in_priority_order(daemon: Daemon):
    daemon.client.post(
        "/v1/subnets",
        {"name": "a-first", "cidrBlock": "198.18.0.0/30", "provider": "p", "priority": 1, "namespaces": ["other"]},
    )
    daemon.client.post(
        "/v1/subnets",
        {"name": "b-second", "cidrBlock": "198.18.1.0/30", "provider": "p", "priority": 2, "gateway": "none"},
    )
    body = {
        "containerId": "c1",
        "ifName": "net1",
        "network": "n",
        "ipam": {"type": "ipamd", "provider": "p"},
        "podNamespace": "lab",
        "podName": "x",
    }
    reply = daemon.client.post("/v1/cni/add", body)
    assert reply.status == 200, reply.body
    assert reply.body["subnet"] == "b-second"
    daemon.client.post("/v1/cni/add", {**body, "containerId": "c2", "podName": "y"})
    full = daemon.client.post("/v1/cni/add", {**body, "containerId": "c3", "podName": "z"})
    # b-second admits the pod and is full; a-first never admitted it: exhaustion names b-second only.
    assert full.error_code == "exhausted"
    assert full.message == "no free address in subnet b-second (network p)"


def test_each_clusters_daemons_get_their_clusters_subnet_through_the_plugin(tmp_path: Path, postgres_url: str):
    """Two clusters on one database (docs/deploy.md): a subnet listing ``clusters`` serves
    only their daemons; the others walk past it, or are refused naming the rule."""
    daemons = [
        Daemon(
            tmp_path, postgres_url, name=cluster, extra_args=("--cluster-name", cluster, "--node-name", "n1")
        ).start()
        for cluster in ("east", "west")
    ]
    try:
        east, west = daemons
        east_only = {"name": "east-only", "cidrBlock": "192.0.2.0/28", "provider": PROVIDER, "clusters": ["east"]}
        made = east.client.post("/v1/subnets", east_only)
        assert (made.status, made.body["clusters"]) == (201, ["east"])
        code, result = plugin_add(west, pod="web")
        assert (code, result["code"]) == (1, 107)
        assert result["msg"] == (
            f"no subnet of network {PROVIDER} admits lab/web (namespace lab, node n1): "
            "subnet east-only: clusters [east] does not include cluster west"
        )
        shared = {"name": "shared", "cidrBlock": "198.51.100.0/28", "provider": PROVIDER, "priority": 1}
        assert east.client.post("/v1/subnets", shared).status == 201
        code, result = plugin_add(west, pod="web")
        assert code == 0, result
        assert result["ips"][0]["address"] == "198.51.100.2/28"
        code, result = plugin_add(east, pod="web")
        assert code == 0, result
        assert result["ips"][0]["address"] == "192.0.2.2/28"

        bad = east.client.patch("/v1/subnets/east-only", {"clusters": ["East"]})
        assert (bad.status, bad.body["error"]["details"]) == (400, {"field": "clusters[0]"})
        dropped = east.client.patch("/v1/subnets/east-only", {"clusters": None})
        assert dropped.status == 200 and "clusters" not in dropped.body
    finally:
        for daemon in daemons:
            daemon.stop()
