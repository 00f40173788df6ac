"""Inline (Whereabouts and host-local style) ranges that overlap share one address space,
through the daemon's CNI endpoints on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.support.daemon import Daemon

RANGE = "203.0.113.0/28"


def add(daemon: Daemon, network: str, pod: str, ipam: dict[str, Any], **extra: Any):
    body = {
        "containerId": f"c-{network}-{pod}", "ifName": "net1", "network": network,
        "ipam": {"type": "whereabouts", **ipam}, "podNamespace": "default", "podName": pod, **extra,
    }
    return daemon.client.post("/v1/cni/add", body)


def address(reply) -> str:
    assert reply.status == 200, reply.body
    return reply.body["ips"][0]["address"].split("/")[0]


def delete(daemon: Daemon, network: str, pod: str, ipam: dict[str, Any]):
    body = {
        "containerId": f"c-{network}-{pod}", "ifName": "net1", "network": network,
        "ipam": {"type": "whereabouts", **ipam}, "podNamespace": "default", "podName": pod,
    }
    return daemon.client.post("/v1/cni/del", body)


def test_two_nads_with_one_range_never_share_an_address(daemon: Daemon):
    got = [address(add(daemon, "nad-a" if i % 2 else "nad-b", f"p{i}", {"range": RANGE})) for i in range(14)]
    assert sorted(got, key=lambda a: int(a.rsplit(".", 1)[1])) == [f"203.0.113.{h}" for h in range(1, 15)]
    for network in ("nad-a", "nad-b"):
        full = add(daemon, network, "late", {"range": RANGE})
        assert full.status == 409 and full.body["error"]["code"] == "exhausted", full.body
    # A release in one NAD frees the address for the other.
    assert delete(daemon, "nad-b", "p0", {"range": RANGE}).body == {"released": 1}
    assert address(add(daemon, "nad-a", "late", {"range": RANGE})) == got[0]


def test_a_range_inside_another_is_protected_both_ways(daemon: Daemon):
    inner = {"range": "203.0.113.0/29"}
    outer = {"range": RANGE, "range_start": "203.0.113.1"}
    first = address(add(daemon, "inner", "a", inner))
    second = address(add(daemon, "outer", "a", outer))
    third = address(add(daemon, "inner", "b", inner))
    assert len({first, second, third}) == 3
    # A static request for an address the other NAD holds is a conflict naming the holder.
    clash = add(daemon, "outer", "static", outer, ips=[f"{first}/28"])
    assert clash.status == 409 and "default/a net1 (network inner" in clash.body["error"]["message"], clash.body
    # Released in the outer range, the address goes back to the inner one too.
    assert delete(daemon, "outer", "a", outer).body == {"released": 1}
    inner_rest = [address(add(daemon, "inner", f"fill{i}", inner)) for i in range(4)]
    assert second in inner_rest and first not in inner_rest and third not in inner_rest
    assert add(daemon, "inner", "one-too-many", inner).status == 409


def test_a_new_nad_does_not_hand_out_what_an_older_overlapping_one_holds(daemon: Daemon):
    held = {address(add(daemon, "old", f"p{i}", {"range": "203.0.113.0/29"})) for i in range(3)}
    newer = {address(add(daemon, "new", f"p{i}", {"range": RANGE})) for i in range(11)}
    assert not held & newer and len(newer) == 11
    assert add(daemon, "new", "one-too-many", {"range": RANGE}).status == 409


def test_network_name_separates_address_spaces(daemon: Daemon):
    a = address(add(daemon, "nad-a", "p", {"range": RANGE, "network_name": "tenant-x"}))
    b = address(add(daemon, "nad-b", "p", {"range": RANGE, "network_name": "tenant-y"}))
    c = address(add(daemon, "nad-c", "p", {"range": RANGE}))
    assert a == b == c == "203.0.113.1"
    # One network_name is one network: a second NAD naming it shares its addresses.
    assert address(add(daemon, "nad-d", "q", {"range": RANGE, "network_name": "tenant-x"})) == "203.0.113.2"


def test_enable_overlapping_ranges_false_only_shares_an_identical_range(daemon: Daemon):
    off = {"range": RANGE, "enable_overlapping_ranges": False}
    assert address(add(daemon, "wide", "p", off)) == "203.0.113.1"
    # An identical range is one Whereabouts IPPool: shared whatever the flag says.
    assert address(add(daemon, "same", "p", off)) == "203.0.113.2"
    # A different, overlapping range is not protected against this one.
    assert address(add(daemon, "narrow", "p", {"range": "203.0.113.0/29"})) == "203.0.113.1"
    bad = add(daemon, "odd", "p", {"range": RANGE, "enable_overlapping_ranges": "no"})
    assert bad.status == 400 and bad.body["error"]["details"]["field"] == "ipam.enable_overlapping_ranges"


def test_provider_subnets_keep_separate_l2_domains(daemon: Daemon):
    for name, provider in (("l2-a", "macvlan.a"), ("l2-b", "macvlan.b")):
        assert daemon.client.post("/v1/subnets", {"name": name, "cidrBlock": RANGE, "provider": provider}).status == 201
    replies = [
        daemon.client.post("/v1/cni/add", {
            "containerId": f"c-{p}", "ifName": "net1", "network": p, "ipam": {"type": "ipamd", "provider": p},
            "podNamespace": "default", "podName": "x",
        })
        for p in ("macvlan.a", "macvlan.b")
    ]
    assert [address(r) for r in replies] == ["203.0.113.2", "203.0.113.2"]
    assert address(add(daemon, "inline", "p", {"range": RANGE})) == "203.0.113.1"
