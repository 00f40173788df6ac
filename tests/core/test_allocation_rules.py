"""Static requests, pools, NAD inline forms."""

import netaddr
import pytest

from ipamd.core.allocation import canonical_mac, parse_static_request, statefulset_ordinal
from ipamd.core.nad import parse_network_request
from ipamd.core.pool import canonical_pool
from ipamd.core.subnet import canonical_subnet
from ipamd.errors import AddressConflict, InvalidInput

SUBNET = canonical_subnet(
    {"name": "net1", "cidrBlock": "192.0.2.0/24,2001:db8:1::/64", "excludeIps": ["192.0.2.2..192.0.2.10"]}
)


def ip(text):
    return int(netaddr.IPAddress(text))


def test_static_request_may_use_an_excluded_address():
    assert parse_static_request(SUBNET, ["192.0.2.5/24"], field="ips") == {4: ip("192.0.2.5")}


@pytest.mark.parametrize(
    ("address", "error", "message"),
    [
        pytest.param("192.0.2.1", AddressConflict, "192.0.2.1 is the gateway of subnet net1", id="gateway"),
        pytest.param("192.0.2.0", AddressConflict, "192.0.2.0 is the network address of subnet net1", id="network"),
        pytest.param(
            "192.0.2.255", AddressConflict, "192.0.2.255 is the broadcast address of subnet net1", id="broadcast"
        ),
        pytest.param(
            "198.51.100.7", InvalidInput, "ips[0]: 198.51.100.7 is outside subnet net1 (192.0.2.0/24)", id="outside"
        ),
        pytest.param(
            "192.0.2.7/25",
            InvalidInput,
            "ips[0]: 192.0.2.7/25 has prefix /25 but subnet net1 is 192.0.2.0/24",
            id="prefix",
        ),
    ],
)
def test_static_requests_that_can_never_be_granted(address, error, message):
    with pytest.raises(error) as caught:
        parse_static_request(SUBNET, [address], field="ips")
    assert caught.value.message == message


def test_pool_members_must_be_inside_and_never_include_the_gateway():
    pool = canonical_pool(
        {"name": "db", "subnet": "net1", "ips": ["192.0.2.0/30", "2001:db8:1::10..2001:db8:1::11"]}, subnet=SUBNET
    )
    assert pool.intervals(4) == ((ip("192.0.2.2"), ip("192.0.2.3")),)
    assert pool.intervals(6) == ((ip("2001:db8:1::10"), ip("2001:db8:1::11")),)
    with pytest.raises(InvalidInput, match="outside subnet net1"):
        canonical_pool({"name": "db", "subnet": "net1", "ips": ["192.0.3.1"]}, subnet=SUBNET)


def test_statefulset_ordinal_and_macs():
    assert statefulset_ordinal("web-12") == 12
    assert statefulset_ordinal("web") is None
    assert canonical_mac("02-AA-bb-00-00-01", field="mac") == "02:aa:bb:00:00:01"
    with pytest.raises(InvalidInput, match="multicast"):
        canonical_mac("01:00:5e:00:00:01", field="mac")


def test_whereabouts_inline_range_becomes_a_subnet_confined_to_its_bounds():
    request = parse_network_request(
        {
            "type": "ipamd",
            "range": "192.0.2.0/24",
            "range_start": "192.0.2.20",
            "range_end": "192.0.2.30",
            "exclude": ["192.0.2.24/30"],
        },
        network_name="tenant-a",
    )
    assert request.network_key == "tenant-a"
    layout = request.inline_subnet.family(4)
    assert layout.gateway is None
    assert layout.dynamic_space() == [(ip("192.0.2.20"), ip("192.0.2.23")), (ip("192.0.2.28"), ip("192.0.2.30"))]


def test_whereabouts_out_of_range_start_is_an_error_not_ignored():
    with pytest.raises(InvalidInput) as caught:
        parse_network_request({"range": "192.0.2.0/24", "range_start": "198.51.100.5"}, network_name="n")
    assert caught.value.message == "ipam.range_start: 198.51.100.5 is not in network 192.0.2.0/24"


def test_host_local_ranges_dual_stack():
    request = parse_network_request(
        {
            "type": "ipamd",
            "ranges": [
                [{"subnet": "198.51.100.0/24", "rangeStart": "198.51.100.100", "gateway": "198.51.100.1"}],
                [{"subnet": "2001:db8:2::/64"}],
            ],
        },
        network_name="hl",
    )
    spec = request.inline_subnet
    assert spec.cidr_block == "198.51.100.0/24,2001:db8:2::/64"
    assert spec.family(4).dynamic_space()[0][0] == ip("198.51.100.100")


def test_network_key_prefers_provider_then_network_name():
    assert parse_network_request({"provider": "macvlan.default"}, network_name="n").network_key == "macvlan.default"
    with pytest.raises(InvalidInput, match="no provider and no inline range"):
        parse_network_request({"type": "ipamd"}, network_name="n")
