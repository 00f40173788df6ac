"""Subnet canonicalisation: gateways, exclusions, validation messages."""

import pytest

from ipamd.core.subnet import canonical_subnet
from ipamd.errors import InvalidInput

IP = lambda text: int(__import__("netaddr").IPAddress(text))  # noqa: E731


def test_gateway_defaults_to_first_usable_and_is_never_dynamic():
    spec = canonical_subnet({"name": "net1", "cidrBlock": "192.0.2.0/24"})
    layout = spec.family(4)
    assert layout.gateway == IP("192.0.2.1")
    assert layout.dynamic_space() == [(IP("192.0.2.2"), IP("192.0.2.254"))]


def test_exclusions_accept_ranges_cidrs_and_single_addresses_clipped_to_the_cidr():
    spec = canonical_subnet(
        {
            "name": "net1",
            "cidrBlock": "192.0.2.0/24",
            "excludeIps": [
                "192.0.2.2..192.0.2.10",
                "192.0.2.128/30",
                "192.0.2.200",
                "198.51.100.0/24",
                "192.0.2.250..192.0.3.20",
            ],
        }
    )
    assert spec.family(4).dynamic_space() == [
        (IP("192.0.2.11"), IP("192.0.2.127")),
        (IP("192.0.2.132"), IP("192.0.2.199")),
        (IP("192.0.2.201"), IP("192.0.2.249")),
    ]


def test_dual_stack_orders_families_and_defaults_each_gateway():
    spec = canonical_subnet({"name": "ds", "cidrBlock": "2001:db8:1::/64,198.51.100.0/24", "gateway": "198.51.100.254"})
    assert spec.cidr_block == "198.51.100.0/24,2001:db8:1::/64"
    assert spec.gateway == "198.51.100.254,2001:db8:1::1"
    v6 = spec.family(6)
    # IPv6 has no broadcast: the last address of the /64 is allocatable.
    assert v6.allocatable[1] == IP("2001:db8:1::ffff:ffff:ffff:ffff")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            {"name": "x", "cidrBlock": "192.0.2.5/24"},
            "cidrBlock: '192.0.2.5/24' has host bits set; did you mean 192.0.2.0/24?",
            id="host-bits",
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "192.0.2.0/33"},
            "cidrBlock: '192.0.2.0/33' has an invalid prefix length",
            id="prefix",
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "192.0.2.0/24,198.51.100.0/24"},
            "cidrBlock: '192.0.2.0/24,198.51.100.0/24': at most one IPv4 and one IPv6 CIDR",
            id="two-v4",
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "192.0.2.0/24", "gateway": "198.51.100.1"},
            "gateway: 198.51.100.1 is not inside 192.0.2.0/24",
            id="gateway-outside",
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "192.0.2.0/24", "gateway": "192.0.2.255"},
            "gateway: 192.0.2.255 is the network or broadcast address of 192.0.2.0/24",
            id="gateway-broadcast",
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "198.51.100.0/24", "gateway": "198.51.100.1,198.51.100.2"},
            "gateway: 198.51.100.1 and 198.51.100.2 are both IPv4 gateways; give at most one per family",
            id="two-v4-gateways",
        ),
        pytest.param(
            {
                "name": "x",
                "cidrBlock": "198.51.100.0/24,2001:db8:5::/64",
                "gateway": "2001:db8:5::1, 198.51.100.1,2001:db8:5::2",
            },
            "gateway: 2001:db8:5::1 and 2001:db8:5::2 are both IPv6 gateways",
            id="two-v6-gateways",
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "198.51.100.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": "2001:db8::1"}]},
            "routes[0].gw: route to 0.0.0.0/0 (IPv4) cannot go via 2001:db8::1 (IPv6): a route's dst and gw must be of one address family",
            id="route-v4-via-v6",
        ),
        pytest.param(
            {
                "name": "x",
                "cidrBlock": "198.51.100.0/24,2001:db8:5::/64",
                "routes": [{"dst": "::/0", "gw": "2001:db8:5::1"}, {"dst": "2001:db8:77::/48", "gw": "198.51.100.1"}],
            },
            "routes[1].gw: route to 2001:db8:77::/48 (IPv6) cannot go via 198.51.100.1 (IPv4)",
            id="route-v6-via-v4",
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "192.0.2.0/24", "excludeIps": ["192.0.2.9..192.0.2.3"]},
            "excludeIps[0]: range '192.0.2.9..192.0.2.3' ends before it starts",
            id="backwards-range",
        ),
        pytest.param(
            {"name": "Bad Name", "cidrBlock": "192.0.2.0/24"}, "name: 'Bad Name' is not a valid name", id="name"
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "192.0.2.0/24", "colour": "red"}, "colour: unknown field", id="unknown-field"
        ),
        pytest.param(
            {"name": "x", "cidrBlock": "192.0.2.0/24", "priority": "high"},
            "priority: expected a 32-bit integer",
            id="priority",
        ),
    ],
)
def test_invalid_subnets_are_rejected_with_the_field_and_the_value(raw, message):
    with pytest.raises(InvalidInput) as caught:
        canonical_subnet(raw)
    assert caught.value.message.startswith(message)
