"""The config forms users already write, through macvlan: dual stack, a static address
in runtimeConfig.ips, Whereabouts-style and host-local-style inline ranges, and a
Kube-OVN NAD with "type": "kube-ovn"."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from e2e_support import (
    Attachment,
    allocations,
    held_addresses,
    ipamd_ipam,
    macvlan_config,
    ns_addresses,
    ns_routes,
    ping,
    skip_reason,
    unique,
)

from tests.support.daemon import REPO

pytestmark = [pytest.mark.root, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]


def test_dual_stack(cni, ipamd, subnet, topo):
    net = subnet("198.51.100.0/24,2001:db8:10::/64")
    master, _ = topo.veth()
    config = macvlan_config("dual", master, ipamd_ipam(ipamd.socket, net["provider"]))
    pods = [Attachment(cni, "macvlan", config, topo.netns()) for _ in range(2)]
    results = [pod.add().expect_ok() for pod in pods]
    for pod, result in zip(pods, results):
        v4, v6 = result["ips"]
        assert ipaddress.ip_interface(v4["address"]).network == ipaddress.ip_network("198.51.100.0/24")
        assert ipaddress.ip_interface(v6["address"]).network == ipaddress.ip_network("2001:db8:10::/64")
        assert (v4["gateway"], v6["gateway"]) == ("198.51.100.1", "2001:db8:10::1")
        assert ns_addresses(pod.netns, family=4) == [v4["address"]]
        # Present is enough: duplicate address detection may still hold it tentative.
        assert ns_addresses(pod.netns, family=6) == [v6["address"]]
    (held,) = [a for a in allocations(ipamd, net["name"]) if a["owner"]["pod"] == pods[0].pod]
    assert {a["family"] for a in held["addresses"]} == {4, 6}
    # IPv4 needs no DAD: the two pods reach each other over the macvlan bridge.
    assert ping(pods[0].netns, results[1]["ips"][0]["address"].split("/")[0]).returncode == 0
    for pod in pods:
        pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []


def test_static_address_through_runtime_config_ips(cni, ipamd, subnet, topo):
    net = subnet("192.0.2.0/24")
    master, _ = topo.veth()
    config = macvlan_config(
        "static",
        master,
        ipamd_ipam(ipamd.socket, net["provider"]),
        capabilities={"ips": True},
        runtimeConfig={"ips": ["192.0.2.77/24"]},
    )
    pod = Attachment(cni, "macvlan", config, topo.netns())
    result = pod.add().expect_ok()
    assert [ip["address"] for ip in result["ips"]] == ["192.0.2.77/24"]
    assert ns_addresses(pod.netns) == ["192.0.2.77/24"]
    assert held_addresses(ipamd, net["name"]) == {"192.0.2.77"}

    # Another pod asking for the same address is refused with ipamd's conflict code,
    # which macvlan passes up unchanged, and nothing more is allocated.
    rival = Attachment(cni, "macvlan", config, topo.netns())
    refused = rival.add()
    assert refused.returncode != 0 and refused.code == 101, refused.describe()
    assert "192.0.2.77" in refused.output["msg"]
    assert len(allocations(ipamd, net["name"])) == 1
    rival.delete().expect_ok()
    pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []


def _subnet_of(daemon, name: str) -> dict:
    reply = daemon.client.get(f"/v1/subnets/{name}")
    assert reply.status == 200, (reply.status, reply.body)
    return reply.body


def _fill(cni, config: dict, count: int) -> list[str]:
    """ADDs straight to the shim (no interface needed) for count more pods."""
    addresses = []
    for _ in range(count):
        result = cni.run("ipamd", "ADD", config, container_id=unique("c", 16), pod=unique("pod-")).expect_ok()
        addresses += [ip["address"] for ip in result["ips"]]
    return addresses


def test_whereabouts_style_inline_config(cni, ipamd, topo):
    network_name = unique("wb-")
    ipam = {
        "type": "ipamd",
        "server_socket": ipamd.socket,
        "network_name": network_name,
        "range": "198.18.50.0/24",
        "range_start": "198.18.50.10",
        "range_end": "198.18.50.20",
        "exclude": ["198.18.50.10/31", "198.18.50.15/32"],
        "routes": [{"dst": "203.0.113.0/24", "gw": "198.18.50.254"}],
    }
    allowed = {f"198.18.50.{n}/24" for n in (12, 13, 14, 16, 17, 18, 19, 20)}
    master, _ = topo.veth()
    config = macvlan_config("whereabouts-net", master, ipam)
    pod = Attachment(cni, "macvlan", config, topo.netns())
    result = pod.add().expect_ok()
    (ip,) = result["ips"]
    assert ip["address"] in allowed
    assert "gateway" not in ip  # Whereabouts configs without "gateway" have none
    assert ns_addresses(pod.netns) == [ip["address"]]
    assert any(r["dst"] == "203.0.113.0/24" and r.get("gateway") == "198.18.50.254" for r in ns_routes(pod.netns))

    # The daemon made the subnet from the NAD, named after network_name.
    created = _subnet_of(ipamd, network_name)
    assert created["origin"] == "inline" and created["cidrBlock"] == "198.18.50.0/24"

    # Exactly range_start..range_end minus the excludes can be handed out, then no more.
    rest = _fill(cni, config, len(allowed) - 1)
    assert {ip["address"], *rest} == allowed
    exhausted = cni.run("ipamd", "ADD", config, container_id=unique("c", 16), pod=unique("pod-"))
    assert exhausted.returncode != 0 and exhausted.code == 102, exhausted.describe()


def test_host_local_style_inline_config(cni, ipamd, topo):
    network = unique("hl-")  # the network name names the subnet: no network_name here
    ipam = {
        "type": "ipamd",
        "server_socket": ipamd.socket,
        "ranges": [
            [
                {
                    "subnet": "198.18.51.0/24",
                    "rangeStart": "198.18.51.100",
                    "rangeEnd": "198.18.51.102",
                    "gateway": "198.18.51.254",
                }
            ]
        ],
        "routes": [{"dst": "203.0.113.0/24"}],
    }
    master, _ = topo.veth()
    config = macvlan_config(network, master, ipam)
    pod = Attachment(cni, "macvlan", config, topo.netns())
    result = pod.add().expect_ok()
    (ip,) = result["ips"]
    allowed = {f"198.18.51.{n}/24" for n in (100, 101, 102)}
    assert ip["address"] in allowed and ip["gateway"] == "198.18.51.254"
    assert ns_addresses(pod.netns) == [ip["address"]]
    # A route without gw goes through the range's gateway (macvlan fills it in).
    assert any(r["dst"] == "203.0.113.0/24" and r.get("gateway") == "198.18.51.254" for r in ns_routes(pod.netns))
    assert _subnet_of(ipamd, network)["origin"] == "inline"

    rest = _fill(cni, config, 2)
    assert {ip["address"], *rest} == allowed
    exhausted = cni.run("ipamd", "ADD", config, container_id=unique("c", 16), pod=unique("pod-"))
    assert exhausted.returncode != 0 and exhausted.code == 102, exhausted.describe()
    pod.delete().expect_ok()
    assert len(allocations(ipamd, network)) == 2


def test_kube_ovn_nad_unchanged(cni, cni_bin: Path, ipamd, subnet, topo):
    # The NAD of Kube-OVN's multi-NIC documentation, with the socket pointed at this daemon
    # and the name Multus adds (the NAD's metadata.name).
    nad = unique("macvlan-")
    provider = f"{nad}.default"
    net = subnet("198.18.52.0/24", provider=provider)
    master, _ = topo.veth()
    config = {
        "cniVersion": "0.3.0",
        "name": nad,
        "type": "macvlan",
        "master": master,
        "mode": "bridge",
        "ipam": {
            "type": "kube-ovn",
            "server_socket": ipamd.socket,
            "provider": provider,
            # Kube-OVN's provider form may carry routes: they reach the interface.
            "routes": [{"dst": "203.0.113.0/24", "gw": "198.18.52.254"}],
        },
    }
    installed = cni_bin / "kube-ovn"
    # The same static binary under the name Kube-OVN NADs call.
    assert installed.read_bytes() == (REPO / "plugin" / "bin" / "ipamd").read_bytes()
    assert installed.stat().st_mode & 0o777 == 0o755
    pod = Attachment(cni, "macvlan", config, topo.netns())
    result = pod.add().expect_ok()
    (ip,) = result["ips"]
    assert ip["version"] == "4" and ip["address"].startswith("198.18.52.") and ip["gateway"] == "198.18.52.1"
    assert ns_addresses(pod.netns) == [ip["address"]]
    assert any(r["dst"] == "203.0.113.0/24" and r.get("gateway") == "198.18.52.254" for r in ns_routes(pod.netns))
    (held,) = allocations(ipamd, net["name"])
    assert (held["owner"]["namespace"], held["owner"]["pod"], held["networkKey"]) == ("default", pod.pod, provider)
    pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []


def test_overlapping_whereabouts_ranges_share_addresses_unless_network_names_differ(cni, ipamd, topo):
    master, _ = topo.veth()
    wide = macvlan_config(
        unique("wb-wide-"), master, {"type": "ipamd", "server_socket": ipamd.socket, "range": "198.18.54.0/28"}
    )
    narrow = macvlan_config(
        unique("wb-narrow-"), master, {"type": "ipamd", "server_socket": ipamd.socket, "range": "198.18.54.0/29"}
    )
    pods = [Attachment(cni, "macvlan", config, topo.netns()) for config in (narrow, wide)]
    first = [pod.add().expect_ok()["ips"][0]["address"].split("/")[0] for pod in pods]
    assert first == ["198.18.54.1", "198.18.54.2"]
    assert [ns_addresses(pod.netns) for pod in pods] == [["198.18.54.1/29"], ["198.18.54.2/28"]]
    rest = _fill(cni, narrow, 4) + _fill(cni, wide, 8)
    every = first + [a.split("/")[0] for a in rest]
    assert sorted(every, key=lambda a: int(a.rsplit(".", 1)[1])) == [f"198.18.54.{n}" for n in range(1, 15)]
    for config in (narrow, wide):
        exhausted = cni.run("ipamd", "ADD", config, container_id=unique("c", 16), pod=unique("pod-"))
        assert exhausted.returncode != 0 and exhausted.code == 102, exhausted.describe()

    # Different network_names are different address spaces: both may hand out .1.
    tenants = [
        macvlan_config(
            unique("wb-t-"),
            master,
            {
                "type": "ipamd",
                "server_socket": ipamd.socket,
                "range": "198.18.55.0/28",
                "network_name": unique("tenant-"),
            },
        )
        for _ in range(2)
    ]
    assert [_fill(cni, config, 1) for config in tenants] == [["198.18.55.1/28"], ["198.18.55.1/28"]]
