"""Inline (Whereabouts and host-local style) ranges that overlap share one address space,
through the daemon's CNI endpoints on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.support.daemon import Daemon

RANGE = "203.0.113.0/28"


def add(daemon: Daemon, network: str, pod: str, ipam: dict[str, Any], **extra: Any):
    body = {
        "containerId": f"c-{network}-{pod}",
        "ifName": "net1",
        "network": network,
        "ipam": {"type": "whereabouts", **ipam},
        "podNamespace": "default",
        "podName": pod,
        **extra,
    }
    return daemon.client.post("/v1/cni/add", body)


def address(reply) -> str:
    assert reply.status == 200, reply.body
    return reply.body["ips"][0]["address"].split("/")[0]


def delete(daemon: Daemon, network: str, pod: str, ipam: dict[str, Any]):
    body = {
        "containerId": f"c-{network}-{pod}",
        "ifName": "net1",
        "network": network,
        "ipam": {"type": "whereabouts", **ipam},
        "podNamespace": "default",
        "podName": pod,
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
        daemon.client.post(
            "/v1/cni/add",
            {
                "containerId": f"c-{p}",
                "ifName": "net1",
                "network": p,
                "ipam": {"type": "ipamd", "provider": p},
                "podNamespace": "default",
                "podName": "x",
            },
        )
        for p in ("macvlan.a", "macvlan.b")
    ]
    assert [address(r) for r in replies] == ["203.0.113.2", "203.0.113.2"]
    assert address(add(daemon, "inline", "p", {"range": RANGE})) == "203.0.113.1"


# ----------------------------------------------------------------- nothing in the ipam section is dropped silently


def test_provider_form_routes_join_the_subnets_and_unknown_keys_are_refused(daemon: Daemon):
    subnet = {
        "name": "routed",
        "cidrBlock": "198.51.100.0/24",
        "provider": "routed.default",
        "routes": [{"dst": "203.0.113.0/24", "gw": "198.51.100.254"}],
    }
    assert daemon.client.post("/v1/subnets", subnet).status == 201
    ipam = {
        "type": "kube-ovn",
        "provider": "routed.default",
        "server_socket": "/run/openvswitch/kube-ovn-daemon.sock",
        "routes": [{"dst": "198.18.0.0/15", "gw": "198.51.100.253"}, {"dst": "203.0.113.0/24", "gw": "198.51.100.254"}],
    }
    body = {
        "containerId": "c1",
        "ifName": "net1",
        "network": "routed",
        "ipam": ipam,
        "podNamespace": "default",
        "podName": "p",
    }
    reply = daemon.client.post("/v1/cni/add", body)
    assert reply.status == 200, reply.body
    assert reply.body["routes"] == [
        {"dst": "203.0.113.0/24", "gw": "198.51.100.254"},
        {"dst": "198.18.0.0/15", "gw": "198.51.100.253"},
    ]
    unknown = daemon.client.post(
        "/v1/cni/add", {**body, "podName": "q", "ipam": {**ipam, "excludeIps": ["198.51.100.9"]}}
    )
    assert unknown.status == 400 and unknown.body["error"]["details"]["field"] == "ipam.excludeIps", unknown.body
    assert "known fields are" in unknown.body["error"]["message"]
    assert len(daemon.client.get("/v1/allocations").body["items"]) == 1


def test_host_local_resolv_conf_becomes_the_result_dns(daemon: Daemon, tmp_path):
    resolv = tmp_path / "resolv.conf"
    resolv.write_text(
        "# node resolver\nnameserver 192.0.2.53\nnameserver 2001:db8::53\nsearch lab.example example\noptions ndots:2\n"
    )
    ipam = {
        "type": "host-local",
        "ranges": [[{"subnet": "203.0.113.0/24"}]],
        "resolvConf": str(resolv),
        "dns": {"domain": "lab.example"},
    }
    body = {"containerId": "c1", "ifName": "net1", "network": "hl-dns", "ipam": ipam}
    reply = daemon.client.post("/v1/cni/add", body)
    assert reply.status == 200, reply.body
    assert reply.body["dns"] == {
        "nameservers": ["192.0.2.53", "2001:db8::53"],
        "search": ["lab.example", "example"],
        "options": ["ndots:2"],
        "domain": "lab.example",
    }
    missing = daemon.client.post(
        "/v1/cni/add", {**body, "containerId": "c2", "ipam": {**ipam, "resolvConf": str(tmp_path / "nope")}}
    )
    assert missing.status == 400 and "cannot be read by ipamd" in missing.body["error"]["message"]
    assert len(daemon.client.get("/v1/allocations").body["items"]) == 1
