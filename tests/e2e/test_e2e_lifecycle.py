"""Attachment life cycle through macvlan: DEL then ADD again, repeated DEL, DEL after the
namespace is gone, GC with a valid-attachments list, the daemon stopped and started
again, and the same on PostgreSQL."""

from __future__ import annotations

import time

import pytest
from e2e_support import (
    Attachment,
    allocations,
    has_link,
    held_addresses,
    ipamd_ipam,
    macvlan_config,
    make_subnet,
    ns_addresses,
    skip_reason,
    unique,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]


def test_del_then_add_of_the_same_attachment(cni, ipamd, subnet, topo):
    net = subnet("192.0.2.0/24")
    master, _ = topo.veth()
    pod = Attachment(
        cni, "macvlan", macvlan_config("readd", master, ipamd_ipam(ipamd.socket, net["provider"])), topo.netns()
    )
    first = pod.add().expect_ok()
    pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []
    assert not has_link(pod.netns)

    second = pod.add().expect_ok()  # same container id, interface, pod
    (ip,) = second["ips"]
    assert ns_addresses(pod.netns) == [ip["address"]]
    (held,) = allocations(ipamd, net["name"])
    assert held["addresses"][0]["cidr"] == ip["address"]
    assert held["owner"]["containerId"] == pod.container_id
    assert first["ips"][0]["address"].startswith("192.0.2.")
    pod.check(second).expect_ok()


def test_del_twice_and_del_of_unknown_and_vanished_attachments(cni, ipamd, subnet, topo):
    net = subnet("192.0.2.0/24")
    master, _ = topo.veth()
    config = macvlan_config("deltwice", master, ipamd_ipam(ipamd.socket, net["provider"]))
    pod = Attachment(cni, "macvlan", config, topo.netns())
    pod.add().expect_ok()
    bystander = Attachment(cni, "macvlan", config, topo.netns())
    kept = bystander.add().expect_ok()["ips"][0]["address"].split("/")[0]

    pod.delete().expect_ok()
    pod.delete().expect_ok()  # the second DEL finds nothing and still succeeds
    assert held_addresses(ipamd, net["name"]) == {kept}

    never_added = Attachment(cni, "macvlan", config, topo.netns())
    never_added.delete().expect_ok()
    assert held_addresses(ipamd, net["name"]) == {kept}

    # The runtime may tear down after the namespace is already gone: macvlan then only
    # asks IPAM to release, and the address is freed.
    topo.discard_netns(bystander.netns)
    bystander.delete().expect_ok()
    bystander.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []


def test_gc_releases_only_what_the_valid_attachments_list_omits(cni, ipamd, subnet, topo):
    net = subnet("198.18.60.0/24")
    other = subnet("198.18.61.0/24")
    master, _ = topo.veth()
    config = macvlan_config("gc-net", master, ipamd_ipam(ipamd.socket, net["provider"]))
    pods = [Attachment(cni, "macvlan", config, topo.netns()) for _ in range(3)]
    addresses = [pod.add().expect_ok()["ips"][0]["address"].split("/")[0] for pod in pods]
    # A pod of another network, absent from the list, is not this network's to collect.
    outsider = Attachment(
        cni, "macvlan", macvlan_config("gc-other", master, ipamd_ipam(ipamd.socket, other["provider"])), topo.netns()
    )
    outsider.add().expect_ok()

    gc_config = {
        "cniVersion": "1.1.0",
        "name": "gc-net",
        "ipam": ipamd_ipam(ipamd.socket, net["provider"]),
        "cni.dev/valid-attachments": [{"containerID": pod.container_id, "ifname": pod.ifname} for pod in pods[:2]]
        # plus an attachment of the list the daemon never saw: harmless
        + [{"containerID": unique("c", 16), "ifname": "net1"}],
    }
    done = cni.run("ipamd", "GC", gc_config, ifname="")
    assert done.returncode == 0 and done.stdout == "", done.describe()
    assert held_addresses(ipamd, net["name"]) == set(addresses[:2])
    assert len(allocations(ipamd, other["name"])) == 1

    # The same list again releases nothing more; without the list GC refuses (code 7)
    # rather than read its absence as "nothing is valid".
    cni.run("ipamd", "GC", gc_config, ifname="").expect_ok()
    assert held_addresses(ipamd, net["name"]) == set(addresses[:2])
    missing = {k: v for k, v in gc_config.items() if k != "cni.dev/valid-attachments"}
    refused = cni.run("ipamd", "GC", missing, ifname="")
    assert refused.returncode != 0 and refused.code == 7, refused.describe()
    assert held_addresses(ipamd, net["name"]) == set(addresses[:2])

    # The collected pod's runtime cleanup still succeeds.
    pods[2].delete().expect_ok()


def test_daemon_stopped_then_started(cni, own_ipamd, topo):
    net = make_subnet(own_ipamd, "198.51.100.0/24")
    master, _ = topo.veth()
    config = macvlan_config("restart", master, ipamd_ipam(own_ipamd.socket, net["provider"]))
    running = Attachment(cni, "macvlan", config, topo.netns())
    kept = running.add().expect_ok()["ips"][0]["address"]

    own_ipamd.stop()
    status = cni.run("ipamd", "STATUS", {"cniVersion": "1.1.0", "name": "restart", "ipam": config["ipam"]}, ifname="")
    assert status.returncode != 0 and status.code == 50, status.describe()

    pod = Attachment(cni, "macvlan", config, topo.netns())
    started = time.monotonic()
    failed = pod.add()
    elapsed = time.monotonic() - started
    # macvlan passes the shim's "try again later" up to the runtime, which retries.
    assert failed.returncode != 0 and failed.code == 11, failed.describe()
    assert "ipamd" in failed.output["msg"]
    assert elapsed < 10, f"an unreachable daemon should fail at once, took {elapsed:.1f}s"
    # The teardown the runtime attempts meanwhile fails too (retried until the daemon is back).
    down = pod.delete()
    assert down.returncode != 0 and down.code == 11, down.describe()

    own_ipamd.start()
    pod.delete().expect_ok()  # the runtime's cleanup of the failed sandbox
    # Debian's macvlan 1.1.1 leaves its link in the namespace when IPAM fails; a runtime
    # discards the namespace and makes a new sandbox (new container id) for the pod.
    topo.discard_netns(pod.netns)
    retry = Attachment(cni, "macvlan", config, topo.netns(), pod=pod.pod, pod_uid=pod.pod_uid)
    (ip,) = retry.add().expect_ok()["ips"]
    assert ns_addresses(retry.netns) == [ip["address"]]
    assert ip["address"] != kept

    # What was allocated before the stop survived it.
    owners = {a["owner"]["pod"]: a["addresses"][0]["cidr"] for a in allocations(own_ipamd, net["name"])}
    assert owners == {running.pod: kept, pod.pod: ip["address"]}


def test_postgresql_backend(cni, pg_ipamd, topo):
    net = make_subnet(pg_ipamd, "198.18.62.0/24,2001:db8:62::/64")
    master, _ = topo.veth()
    config = macvlan_config("pg-net", master, ipamd_ipam(pg_ipamd.socket, net["provider"]), version="0.4.0")
    pods = [Attachment(cni, "macvlan", config, topo.netns()) for _ in range(2)]
    results = [pod.add().expect_ok() for pod in pods]
    for pod, result in zip(pods, results):
        assert [ip["version"] for ip in result["ips"]] == ["4", "6"]
        assert ns_addresses(pod.netns, family=4) == [result["ips"][0]["address"]]
        assert ns_addresses(pod.netns, family=6) == [result["ips"][1]["address"]]
        pod.check(result).expect_ok()
    assert len({r["ips"][0]["address"] for r in results}) == 2
    assert len(allocations(pg_ipamd, net["name"])) == 2
    for pod in pods:
        pod.delete().expect_ok()
        pod.delete().expect_ok()
    assert allocations(pg_ipamd, net["name"]) == []
