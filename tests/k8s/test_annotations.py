"""Kube-OVN annotation parsing and the result annotations, without any API server."""

from __future__ import annotations

import pytest

from ipamd.core.model import HeldAddress
from ipamd.errors import InvalidInput
from ipamd.k8s.annotations import PodAsk, parse_ip_pool, parse_pod_annotations, result_annotations
from tests.support.results import allocation_of

P = "macvlan.default"


def ask(**annotations: str) -> PodAsk:
    return parse_pod_annotations(
        {f"{P}.kubernetes.io/{k.replace('__', '.')}": v for k, v in annotations.items()}, provider=P, interface="net1"
    )


def test_nothing_asked():
    assert parse_pod_annotations(None, provider=P, interface="net1") == PodAsk()
    assert (
        parse_pod_annotations({"other.default.kubernetes.io/ip_address": "192.0.2.5"}, provider=P, interface="net1")
        == PodAsk()
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("192.0.2.5", ("192.0.2.5",), id="v4"),
        pytest.param("2001:db8::5", ("2001:db8::5",), id="v6"),
        pytest.param(" 192.0.2.5 , 2001:DB8::5 ", ("192.0.2.5", "2001:db8::5"), id="dual-stack-canonical"),
    ],
)
def test_static_address(value, expected):
    got = ask(ip_address=value)
    assert got.static_ips == expected
    assert got.static_key == f"{P}.kubernetes.io/ip_address"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(
            "192.0.2.300",
            "macvlan.default.kubernetes.io/ip_address: '192.0.2.300' is not a valid IP address",
            id="bad-address",
        ),
        pytest.param(
            "192.0.2.5/24",
            "macvlan.default.kubernetes.io/ip_address: expected an IP address without prefix length, got '192.0.2.5/24'",
            id="prefix",
        ),
        pytest.param(
            "192.0.2.5,192.0.2.6",
            "macvlan.default.kubernetes.io/ip_address: '192.0.2.5,192.0.2.6': two IPv4 addresses; expected v4, v6 or v4,v6",
            id="two-v4",
        ),
        pytest.param(
            "192.0.2.5,,",
            "macvlan.default.kubernetes.io/ip_address: '192.0.2.5,,': expected v4, v6 or v4,v6",
            id="three-parts",
        ),
    ],
)
def test_bad_static_address_names_the_annotation(value, message):
    with pytest.raises(InvalidInput) as caught:
        ask(ip_address=value)
    assert caught.value.message == message


def test_per_interface_keys_win():
    got = ask(
        ip_address="192.0.2.5",
        ip_address__net1="192.0.2.6",
        mac_address="02:00:00:00:00:05",
        mac_address__net1="02:00:00:00:00:06",
    )
    assert got.static_ips == ("192.0.2.6",)
    assert got.static_key == f"{P}.kubernetes.io/ip_address.net1"
    assert got.mac == "02:00:00:00:00:06"
    assert got.mac_key == f"{P}.kubernetes.io/mac_address.net1"
    other = parse_pod_annotations({f"{P}.kubernetes.io/ip_address.net2": "192.0.2.7"}, provider=P, interface="net1")
    assert other.static_ips == ()


def test_mac_is_canonical_and_checked():
    assert ask(mac_address="02-00-00-AA-BB-CC").mac == "02:00:00:aa:bb:cc"
    with pytest.raises(InvalidInput) as caught:
        ask(mac_address="01:00:00:00:00:01")
    assert (
        caught.value.message
        == "macvlan.default.kubernetes.io/mac_address: '01:00:00:00:00:01' is a multicast MAC; a unicast one is required"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("db", ("db", ()), id="pool-name"),
        pytest.param("192.0.2.50", (None, (("192.0.2.50",),)), id="one-address"),
        pytest.param(
            "192.0.2.50,192.0.2.51, 192.0.2.52",
            (None, (("192.0.2.50",), ("192.0.2.51",), ("192.0.2.52",))),
            id="comma-list",
        ),
        pytest.param("192.0.2.50,2001:db8::50", (None, (("192.0.2.50", "2001:db8::50"),)), id="two-families-one-entry"),
        pytest.param(
            "192.0.2.50,2001:db8::50;192.0.2.51,2001:db8::51",
            (None, (("192.0.2.50", "2001:db8::50"), ("192.0.2.51", "2001:db8::51"))),
            id="dual-stack-entries",
        ),
        pytest.param("192.0.2.50;192.0.2.51;", (None, (("192.0.2.50",), ("192.0.2.51",))), id="semicolons-trailing"),
    ],
)
def test_ip_pool_forms(value, expected):
    assert parse_ip_pool(value, field="ip_pool") == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param("192.0.2.50,db", "ip_pool[1]: 'db' is not a valid IP address", id="name-in-list"),
        pytest.param(
            "192.0.2.50,192.0.2.51;192.0.2.52",
            "ip_pool[0]: '192.0.2.50,192.0.2.51': two IPv4 addresses; expected v4, v6 or v4,v6",
            id="same-family-entry",
        ),
        pytest.param(" ", "ip_pool: empty ip_pool: give a pool name or a list of addresses", id="empty"),
    ],
)
def test_bad_ip_pool(value, message):
    with pytest.raises(InvalidInput) as caught:
        parse_ip_pool(value, field="ip_pool")
    assert caught.value.message == message


def test_pool_and_switch_from_annotations():
    got = ask(ip_pool="192.0.2.50,192.0.2.51", logical_switch="net1-backup", allocated="true")
    assert got.pool_entries == (("192.0.2.50",), ("192.0.2.51",))
    assert got.pool_key == f"{P}.kubernetes.io/ip_pool"
    assert got.subnet_name == "net1-backup"
    assert got.allocated is True


def test_result_annotations():
    allocation = allocation_of(
        HeldAddress(6, "2001:db8:1::b", 64, "2001:db8:1::1"),
        HeldAddress(4, "192.0.2.11", 24, "192.0.2.1"),
        mac="02:00:00:00:00:0b",
    )
    assert result_annotations(P, allocation) == {
        f"{P}.kubernetes.io/allocated": "true",
        f"{P}.kubernetes.io/ip_address": "192.0.2.11,2001:db8:1::b",
        f"{P}.kubernetes.io/cidr": "192.0.2.0/24,2001:db8:1::/64",
        f"{P}.kubernetes.io/gateway": "192.0.2.1,2001:db8:1::1",
        f"{P}.kubernetes.io/mac_address": "02:00:00:00:00:0b",
    }
    no_mac = result_annotations(P, allocation_of(HeldAddress(4, "192.0.2.11", 24, None), mac=None))
    assert no_mac == {
        f"{P}.kubernetes.io/allocated": "true",
        f"{P}.kubernetes.io/ip_address": "192.0.2.11",
        f"{P}.kubernetes.io/cidr": "192.0.2.0/24",
    }
