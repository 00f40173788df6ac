"""Every cniVersion the shim supports, checked against that version's result shape.

0.3.0 to 1.0.0 go through Debian's macvlan (spec up to 1.0.0), which converts the IPAM
result and adds its interface; 1.1.0 goes to the shim directly, as a 1.1 runtime would
call it. VERSION is asked of both installed names of the shim.
"""

from __future__ import annotations

import pytest
from e2e_support import (
    NETNS_DIR,
    SUPPORTED_VERSIONS,
    Attachment,
    allocations,
    ipamd_ipam,
    macvlan_config,
    ns_addresses,
    skip_reason,
    unique,
)

pytestmark = [pytest.mark.root, pytest.mark.skipif(skip_reason() is not None, reason=str(skip_reason()))]


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_result_shape_through_macvlan(version, cni, ipamd, subnet, topo):
    net = subnet("192.0.2.0/24", routes=[{"dst": "203.0.113.0/24", "gw": "192.0.2.254"}])
    master, _ = topo.veth()
    pod = Attachment(
        cni,
        "macvlan",
        macvlan_config("versions", master, ipamd_ipam(ipamd.socket, net["provider"]), version=version),
        topo.netns(),
    )
    result = pod.add().expect_ok()

    assert result["cniVersion"] == version
    (interface,) = result["interfaces"]  # added by macvlan, never by the IPAM plugin
    assert interface["name"] == "net1"
    assert interface["sandbox"] == str(NETNS_DIR / pod.netns)
    (ip,) = result["ips"]
    expected_keys = {"address", "gateway", "interface"} | ({"version"} if version != "1.0.0" else set())
    assert set(ip) == expected_keys, ip
    if version != "1.0.0":
        assert ip["version"] == "4"
    assert ip["interface"] == 0
    assert ip["gateway"] == "192.0.2.1"
    assert result["routes"] == [{"dst": "203.0.113.0/24", "gw": "192.0.2.254"}]
    # (macvlan 1.1.1 replaces the IPAM result's dns with the config's own "dns" section.)
    assert ns_addresses(pod.netns) == [ip["address"]]

    if version in ("0.4.0", "1.0.0"):
        # CHECK came with 0.4.0: macvlan asks the shim, which asks the daemon to compare
        # prevResult with what it holds; then macvlan checks the interface itself.
        pod.check(result).expect_ok()
        wrong = {**result, "ips": [{**ip, "address": "192.0.2.250/24"}]}
        refused = pod.check(wrong)
        assert refused.returncode != 0 and refused.code == 101, refused.describe()

    pod.delete().expect_ok()
    assert allocations(ipamd, net["name"]) == []


def _shim_config(version: str, socket: str, provider: str, **extra):
    return {"cniVersion": version, "name": "direct", "ipam": ipamd_ipam(socket, provider), **extra}


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_dual_stack_result_shape_of_the_shim_itself(version, cni, ipamd, subnet):
    """The IPAM result as the shim prints it, before any interface plugin touches it."""
    net = subnet(
        "198.51.100.0/24,2001:db8:20::/64",
        routes=[{"dst": "203.0.113.0/24", "gw": "198.51.100.254"}],
        dns={"nameservers": ["198.51.100.53"], "domain": "example.net"},
    )
    container = unique("c", 16)
    done = cni.run(
        "ipamd",
        "ADD",
        _shim_config(version, ipamd.socket, net["provider"]),
        container_id=container,
        netns=unique("gone-"),
        pod=unique("pod-"),
    )
    result = done.expect_ok()
    assert set(result) == {"cniVersion", "ips", "routes", "dns"}, result  # no interfaces
    assert result["cniVersion"] == version
    v4, v6 = result["ips"]
    assert v4["address"].startswith("198.51.100.") and v4["gateway"] == "198.51.100.1"
    assert v6["address"].startswith("2001:db8:20::") and v6["gateway"] == "2001:db8:20::1"
    if version.startswith("0."):
        assert (set(v4), set(v6)) == ({"version", "address", "gateway"},) * 2
        assert (v4["version"], v6["version"]) == ("4", "6")
    else:
        assert (set(v4), set(v6)) == ({"address", "gateway"},) * 2
    assert result["routes"] == [{"dst": "203.0.113.0/24", "gw": "198.51.100.254"}]
    assert result["dns"] == {"nameservers": ["198.51.100.53"], "domain": "example.net"}
    cni.run("ipamd", "DEL", _shim_config(version, ipamd.socket, net["provider"]), container_id=container).expect_ok()


def test_1_1_0_directly_against_the_shim_with_check_and_status(cni, ipamd, subnet):
    net = subnet("198.18.40.0/24")
    config = _shim_config("1.1.0", ipamd.socket, net["provider"])
    identity = {"container_id": unique("c", 16), "pod": unique("pod-"), "ifname": "net1"}
    result = cni.run("ipamd", "ADD", config, **identity).expect_ok()
    assert result == {
        "cniVersion": "1.1.0",
        "ips": [{"address": result["ips"][0]["address"], "gateway": "198.18.40.1"}],
        "routes": [],
        "dns": {},
    }
    assert cni.run("ipamd", "CHECK", {**config, "prevResult": result}, **identity).expect_ok() is None
    status = cni.run("ipamd", "STATUS", config)
    assert status.returncode == 0 and status.stdout == "", status.describe()
    assert cni.run("ipamd", "DEL", config, **identity).expect_ok() is None
    assert allocations(ipamd, net["name"]) == []


@pytest.mark.parametrize("name", ["ipamd", "kube-ovn"])
def test_version_command(name, cni):
    for stdin, expected in ((None, "1.1.0"), ({"cniVersion": "1.0.0"}, "1.0.0"), ({"cniVersion": "0.3.1"}, "0.3.1")):
        done = cni.run(name, "VERSION", stdin, ifname="")
        assert done.expect_ok() == {"cniVersion": expected, "supportedVersions": SUPPORTED_VERSIONS}
        assert done.stderr == ""


def test_a_version_macvlan_does_not_speak_is_refused_by_it(cni, ipamd, subnet, topo):
    """1.1.0 is the shim's, not Debian's 1.1.1 plugins': macvlan refuses before any IPAM call."""
    net = subnet("198.18.41.0/24")
    master, _ = topo.veth()
    pod = Attachment(
        cni,
        "macvlan",
        macvlan_config("v110", master, ipamd_ipam(ipamd.socket, net["provider"]), version="1.1.0"),
        topo.netns(),
    )
    refused = pod.add()
    assert refused.returncode != 0 and refused.code == 1, refused.describe()
    assert allocations(ipamd, net["name"]) == []
