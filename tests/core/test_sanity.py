"""Subnet sanity (ipamd.core.sanity): CIDRs no attachment network is meant to cover."""

import netaddr
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipamd.core.nad import parse_network_request
from ipamd.core.sanity import broken_rule
from ipamd.core.subnet import canonical_subnet, requested_subnet
from ipamd.errors import ImplausibleSubnet, InvalidInput


@pytest.mark.parametrize(
    "cidr, rule, says",
    [
        pytest.param(
            "0.0.0.0/0",
            "minimum-prefix",
            "0.0.0.0/0 is shorter than /8, the shortest IPv4 prefix of a subnet",
            id="v4-0",
        ),
        pytest.param("128.0.0.0/7", "minimum-prefix", "is shorter than /8", id="v4-7"),
        pytest.param(
            "::/0", "minimum-prefix", "::/0 is shorter than /16, the shortest IPv6 prefix of a subnet", id="v6-0"
        ),
        pytest.param("2000::/15", "minimum-prefix", "is shorter than /16", id="v6-15"),
        pytest.param("127.0.0.0/8", "loopback", "127.0.0.0/8 overlaps loopback space 127.0.0.0/8", id="v4-loopback"),
        pytest.param("127.1.2.0/24", "loopback", "overlaps loopback space 127.0.0.0/8", id="v4-inside-loopback"),
        pytest.param("::/16", "unspecified", "overlaps unspecified space ::/128", id="v6-unspecified"),
        pytest.param("::/120", "unspecified", "overlaps unspecified space ::/128", id="v6-unspecified-and-loopback"),
        pytest.param("224.0.0.0/24", "multicast", "overlaps multicast space 224.0.0.0/4", id="v4-multicast"),
        pytest.param("239.255.0.0/16", "multicast", "overlaps multicast space 224.0.0.0/4", id="v4-multicast-admin"),
        pytest.param("ff02::/16", "multicast", "overlaps multicast space ff00::/8", id="v6-multicast"),
        pytest.param("0.0.0.0/8", "unspecified", "overlaps unspecified space 0.0.0.0/8", id="v4-this-network"),
        pytest.param(
            "255.255.255.0/24",
            "limited-broadcast",
            "overlaps limited-broadcast space 255.255.255.255/32",
            id="v4-limited-broadcast",
        ),
    ],
)
def test_each_refusal_names_its_rule(cidr, rule, says):
    with pytest.raises(ImplausibleSubnet) as caught:
        requested_subnet({"name": "x", "cidrBlock": cidr, "gateway": "none"})
    error = caught.value
    assert (error.rule, error.field, error.details) == (rule, "cidrBlock", {"field": "cidrBlock", "rule": rule})
    assert (
        error.message.startswith(f"cidrBlock: {cidr} ") and says in error.message and f"(rule {rule})" in error.message
    ), error.message
    assert '"force": true' in error.message
    # The same CIDR forced, and the same CIDR read back from storage, are accepted.
    assert requested_subnet({"name": "x", "cidrBlock": cidr, "gateway": "none", "force": True}).cidr_block == cidr
    assert canonical_subnet({"name": "x", "cidrBlock": cidr, "gateway": "none"}).cidr_block == cidr


@pytest.mark.parametrize(
    "cidr",
    [
        "198.0.0.0/8",
        "198.18.0.0/15",
        "192.0.2.0/24",
        "2001:db8::/32",
        "2000::/16",
        "126.0.0.0/8",
        "128.0.0.0/8",
        "223.255.255.0/24",
        "240.0.0.0/8",
        "fe80::/64",
    ],
)
def test_ordinary_subnets_pass(cidr):
    assert broken_rule(netaddr.IPNetwork(cidr)) is None
    assert requested_subnet({"name": "x", "cidrBlock": cidr}).cidr_block == cidr


def test_the_second_family_of_a_dual_stack_subnet_is_checked_too():
    with pytest.raises(ImplausibleSubnet) as caught:
        requested_subnet({"name": "x", "cidrBlock": "192.0.2.0/24,ff05::/64"})
    assert caught.value.rule == "multicast"


def test_force_must_be_a_boolean_and_is_not_stored():
    with pytest.raises(InvalidInput) as caught:
        requested_subnet({"name": "x", "cidrBlock": "192.0.2.0/24", "force": "yes"})
    assert caught.value.message == "force: expected true or false, got 'yes'"
    assert "force" not in requested_subnet({"name": "x", "cidrBlock": "192.0.2.0/24", "force": True}).to_json()


def test_a_change_rechecks_only_the_cidrs_it_brings():
    stored = requested_subnet({"name": "wide", "cidrBlock": "0.0.0.0/0", "gateway": "none", "force": True})
    edited = requested_subnet({**stored.to_json(), "excludeIps": ["192.0.2.7"]}, starting_from=stored)
    assert edited.cidr_block == "0.0.0.0/0"
    with pytest.raises(ImplausibleSubnet):
        requested_subnet({**stored.to_json(), "cidrBlock": "0.0.0.0/0,::/0"}, starting_from=stored)


@pytest.mark.parametrize(
    "ipam, field",
    [
        pytest.param({"range": "0.0.0.0/0"}, "ipam.range", id="whereabouts"),
        pytest.param(
            {"range": "192.0.2.0/24", "ipRanges": [{"range": "ff00::/64"}]},
            "ipam.ipRanges[0].range",
            id="whereabouts-ipranges",
        ),
        pytest.param({"ranges": [[{"subnet": "127.0.0.0/24"}]]}, "ipam.ranges[0][0].subnet", id="host-local"),
        pytest.param({"subnet": "::/0"}, "ipam.subnet", id="host-local-old"),
    ],
)
def test_inline_ranges_are_held_to_the_same_rules_and_cannot_be_forced(ipam, field):
    with pytest.raises(ImplausibleSubnet) as caught:
        parse_network_request({"type": "ipamd", **ipam}, network_name="n")
    assert caught.value.field == field and "cannot be forced" in caught.value.message


# The special-purpose blocks as plain integer intervals: a model independent of netaddr's "in".
SPECIAL_V4 = [
    (int(netaddr.IPAddress(a)), int(netaddr.IPAddress(b)))
    for a, b in (
        ("127.0.0.0", "127.255.255.255"),
        ("224.0.0.0", "239.255.255.255"),
        ("0.0.0.0", "0.255.255.255"),
        ("255.255.255.255", "255.255.255.255"),
    )
]


@given(prefix=st.integers(min_value=0, max_value=32), address=st.integers(min_value=0, max_value=2**32 - 1))
def test_the_ipv4_rules_agree_with_a_model_of_intervals(prefix, address):
    network = netaddr.IPNetwork(f"{netaddr.IPAddress(address)}/{prefix}").cidr
    special = any(first <= network.last and network.first <= last for first, last in SPECIAL_V4)
    assert (broken_rule(network) is not None) == (prefix < 8 or special)
