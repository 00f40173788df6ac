"""macvlan (Debian's plugin) with ipamd as IPAM: bridge mode and passthru mode."""

from __future__ import annotations

import ipaddress

import pytest
from e2e_support import (
    Attachment,
    allocations,
    has_link,
    ipamd_ipam,
    macvlan_config,
    ns_addresses,
    ns_routes,
    ping,
    skip_reason,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]


def test_bridge_mode_three_namespaces_distinct_addresses_gateway_routes_and_ping(cni, ipamd, subnet, topo):
    net = subnet("192.0.2.0/24", routes=[{"dst": "203.0.113.0/24", "gw": "192.0.2.254"}])
    master, _ = topo.veth()
    config = macvlan_config("macvlan-bridge", master, ipamd_ipam(ipamd.socket, net["provider"]))

    pods = [Attachment(cni, "macvlan", config, topo.netns()) for _ in range(3)]
    results = [pod.add().expect_ok() for pod in pods]

    addresses = []
    for pod, result in zip(pods, results):
        (ip,) = result["ips"]
        assert ip["gateway"] == "192.0.2.1"  # the subnet's default gateway, first usable address
        assert {"dst": "203.0.113.0/24", "gw": "192.0.2.254"} in result["routes"]
        interface = ipaddress.ip_interface(ip["address"])
        assert interface.network == ipaddress.ip_network("192.0.2.0/24")
        assert interface.ip not in (
            ipaddress.ip_address("192.0.2.0"),
            ipaddress.ip_address("192.0.2.1"),
            ipaddress.ip_address("192.0.2.255"),
        )
        # What macvlan configured in the namespace is exactly what ipamd returned.
        assert ns_addresses(pod.netns) == [ip["address"]]
        routes = ns_routes(pod.netns)
        assert {"dst": "203.0.113.0/24", "gateway": "192.0.2.254", "dev": "net1"}.items() <= next(
            r for r in routes if r["dst"] == "203.0.113.0/24"
        ).items(), routes
        assert any(r["dst"] == "192.0.2.0/24" and r["dev"] == "net1" for r in routes), routes
        addresses.append(str(interface.ip))
    assert len(set(addresses)) == 3, addresses

    held = allocations(ipamd, net["name"])
    assert sorted(a["addresses"][0]["address"] for a in held) == sorted(addresses)
    assert {a["owner"]["pod"] for a in held} == {pod.pod for pod in pods}

    # Every pod reaches the two others through the macvlan bridge on the shared master.
    for pod, own in zip(pods, addresses):
        for other in addresses:
            if other != own:
                done = ping(pod.netns, other)
                assert done.returncode == 0, f"{pod.netns} -> {other}: {done.stdout}{done.stderr}"

    for pod in pods:
        pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []


def test_passthru_one_namespace_per_master_second_attach_fails_and_leaks_nothing(cni, ipamd, subnet, topo):
    net = subnet("198.51.100.0/24")
    first_master, _ = topo.veth()
    second_master, _ = topo.veth()
    ipam = ipamd_ipam(ipamd.socket, net["provider"])

    on_first = Attachment(cni, "macvlan", macvlan_config("passthru", first_master, ipam, mode="passthru"), topo.netns())
    on_second = Attachment(
        cni, "macvlan", macvlan_config("passthru", second_master, ipam, mode="passthru"), topo.netns()
    )
    first = on_first.add().expect_ok()
    second = on_second.add().expect_ok()
    assert ns_addresses(on_first.netns) == [first["ips"][0]["address"]]
    assert ns_addresses(on_second.netns) == [second["ips"][0]["address"]]
    assert first["ips"][0]["address"] != second["ips"][0]["address"]
    held_before = allocations(ipamd, net["name"])
    assert len(held_before) == 2

    # A passthru macvlan owns its master: a second one on it cannot be created.
    intruder = Attachment(cni, "macvlan", macvlan_config("passthru", first_master, ipam, mode="passthru"), topo.netns())
    failed = intruder.add()
    assert failed.returncode != 0, failed.describe()
    assert isinstance(failed.code, int) and failed.code != 0, failed.describe()
    assert "macvlan" in failed.output["msg"], failed.describe()
    assert "Traceback" not in failed.stdout + failed.stderr
    assert allocations(ipamd, net["name"]) == held_before  # nothing leaked
    assert not has_link(intruder.netns), "a failed ADD left an interface behind"

    # The runtime cleans the failed sandbox up; that succeeds and changes nothing.
    intruder.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == held_before

    # The pod that owned the master keeps working: its DEL frees the master for another.
    on_first.delete().expect_ok()
    assert len(allocations(ipamd, net["name"])) == 1
    replacement = Attachment(
        cni, "macvlan", macvlan_config("passthru", first_master, ipam, mode="passthru"), topo.netns()
    )
    replacement.add().expect_ok()
    assert len(allocations(ipamd, net["name"])) == 2
