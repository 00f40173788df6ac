"""Other interface plugins with ipamd as IPAM: bridge, ptp, host-device, ipvlan, vlan."""

from __future__ import annotations

import pytest
from e2e_support import (
    Attachment,
    allocations,
    has_link,
    ipamd_ipam,
    kernel_supports,
    ns_addresses,
    ns_json,
    ns_routes,
    ping,
    root_has_link,
    root_json,
    skip_reason,
    unique,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]


def test_bridge_plugin(cni, ipamd, subnet, topo):
    net = subnet("198.18.10.0/24")
    bridge = topo.adopt_link(unique("e2ebr", 8))  # the plugin creates it; cleanup removes it
    assert len(bridge) <= 15
    config = {
        "cniVersion": "1.0.0",
        "name": "bridge-net",
        "type": "bridge",
        "bridge": bridge,
        "isGateway": False,
        "ipMasq": False,
        "ipam": ipamd_ipam(ipamd.socket, net["provider"]),
    }
    pods = [Attachment(cni, "bridge", config, topo.netns(), ifname="eth1") for _ in range(2)]
    results = [pod.add().expect_ok() for pod in pods]

    addresses = []
    for pod, result in zip(pods, results):
        (configured,) = result["ips"]
        assert configured["address"].startswith("198.18.10.")
        assert ns_addresses(pod.netns, "eth1") == [configured["address"]]
        addresses.append(configured["address"].split("/")[0])
    assert addresses[0] != addresses[1]
    # isGateway false: the bridge has no address; both host ends hang off it.
    assert [a for link in root_json("-4", "addr", "show", "dev", bridge) for a in link["addr_info"]] == []
    assert len(root_json("link", "show", "master", bridge)) == 2
    assert ping(pods[0].netns, addresses[1]).returncode == 0

    for pod in pods:
        pod.delete().expect_ok()
        assert not has_link(pod.netns, "eth1")
    assert allocations(ipamd, net["name"]) == []


def test_ptp_plugin(cni, ipamd, subnet, topo):
    net = subnet("198.18.11.0/24")
    config = {
        "cniVersion": "1.0.0",
        "name": "ptp-net",
        "type": "ptp",
        "ipMasq": False,
        "ipam": ipamd_ipam(ipamd.socket, net["provider"]),
    }
    pod = Attachment(cni, "ptp", config, topo.netns())
    result = pod.add().expect_ok()
    (configured,) = result["ips"]
    assert configured["gateway"] == "198.18.11.1"
    assert ns_addresses(pod.netns) == [configured["address"]]
    # ptp routes the subnet through the gateway on the point-to-point link.
    routes = ns_routes(pod.netns)
    assert any(r["dst"] == "198.18.11.0/24" and r.get("gateway") == "198.18.11.1" for r in routes), routes
    host_side = result["interfaces"][0]["name"]
    topo.adopt_link(host_side)  # removed with the namespace's veth; listed in case it is not

    pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []
    assert not has_link(pod.netns)


def test_host_device_plugin(cni, ipamd, subnet, topo):
    net = subnet("198.18.12.0/24")
    _, device = topo.veth()
    config = {
        "cniVersion": "1.0.0",
        "name": "hostdev-net",
        "type": "host-device",
        "device": device,
        "ipam": ipamd_ipam(ipamd.socket, net["provider"]),
    }
    pod = Attachment(cni, "host-device", config, topo.netns())
    result = pod.add().expect_ok()
    (configured,) = result["ips"]
    assert configured["address"].startswith("198.18.12.")
    # The device moved into the namespace under CNI_IFNAME, with ipamd's address.
    assert not root_has_link(device)
    assert ns_addresses(pod.netns) == [configured["address"]]
    assert allocations(ipamd, net["name"])[0]["owner"]["pod"] == pod.pod

    pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []
    assert root_has_link(device), "DEL should move the device back to the root namespace"
    assert not has_link(pod.netns)


@pytest.mark.parametrize("kind", ["ipvlan", "vlan"])
def test_ipvlan_and_vlan(kind, cni, ipamd, subnet, topo):
    master, _ = topo.veth()
    unsupported = kernel_supports(kind, master)
    if unsupported:
        reason = f"this kernel cannot create {kind} links ({unsupported})"
        print(reason)
        pytest.skip(reason)
    net = subnet("198.18.13.0/24" if kind == "ipvlan" else "198.18.14.0/24")
    ipam = ipamd_ipam(ipamd.socket, net["provider"])
    if kind == "ipvlan":
        config = {
            "cniVersion": "1.0.0",
            "name": "ipvlan-net",
            "type": "ipvlan",
            "master": master,
            "mode": "l2",
            "ipam": ipam,
        }
        pods = [Attachment(cni, "ipvlan", config, topo.netns()) for _ in range(2)]
    else:
        # A VLAN link takes its master's name space: one pod per VLAN id and master.
        config = {
            "cniVersion": "1.0.0",
            "name": "vlan-net",
            "type": "vlan",
            "master": master,
            "vlanId": 42,
            "ipam": ipam,
        }
        pods = [Attachment(cni, "vlan", config, topo.netns())]
    results = [pod.add().expect_ok() for pod in pods]
    addresses = []
    for pod, result in zip(pods, results):
        (configured,) = result["ips"]
        assert ns_addresses(pod.netns) == [configured["address"]]
        addresses.append(configured["address"].split("/")[0])
    assert len(set(addresses)) == len(pods)
    if kind == "ipvlan":
        assert ping(pods[0].netns, addresses[1]).returncode == 0
    else:
        (link,) = ns_json(pods[0].netns, "-d", "link", "show", "dev", "net1")
        assert link["linkinfo"]["info_data"]["id"] == 42
    for pod in pods:
        pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []
