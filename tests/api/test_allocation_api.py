"""The REST and CNI API through the real Unix socket, on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import stat

import pytest

from tests.support.daemon import Daemon

NET1 = {
    "name": "net1",
    "cidrBlock": "192.0.2.0/24",
    "gateway": "192.0.2.1",
    "excludeIps": ["192.0.2.2..192.0.2.10"],
    "provider": "macvlan.default",
}


def cni_add(daemon: Daemon, pod: str, *, ifname: str = "net1", provider: str = "macvlan.default", **extra):
    body = {
        "containerId": f"c-{pod}",
        "ifName": ifname,
        "network": "macvlan",
        "ipam": {"type": "ipamd", "provider": provider},
        "podNamespace": "default",
        "podName": pod,
        **extra,
    }
    return daemon.client.post("/v1/cni/add", body)


def cni_del(daemon: Daemon, pod: str, *, ifname: str = "net1"):
    return daemon.client.post(
        "/v1/cni/del",
        {
            "containerId": f"c-{pod}",
            "ifName": ifname,
            "network": "macvlan",
            "ipam": {"type": "ipamd", "provider": "macvlan.default"},
            "podNamespace": "default",
            "podName": pod,
        },
    )


def test_create_subnet_exactly_as_documented(daemon: Daemon):
    reply = daemon.client.post("/v1/subnets", NET1)
    assert reply.status == 201
    assert {key: reply.body[key] for key in NET1} == NET1
    usage = reply.body["usage"]["v4"]
    assert usage == {
        "total": 254,
        "used": 0,
        "available": 244,
        "excluded": 10,
        "reserved": 0,
        "pooled": 0,
        "freeRanges": ["192.0.2.11-192.0.2.254"],
    }
    assert daemon.client.get("/v1/subnets/net1").body["cidrBlock"] == "192.0.2.0/24"


def test_fill_release_reuse_and_restart(daemon: Daemon):
    assert daemon.client.post("/v1/subnets", NET1).status == 201
    got = []
    for index in range(244):
        reply = cni_add(daemon, f"pod-{index}")
        assert reply.status == 200, reply.body
        got.append(reply.body["ips"][0]["address"])
    assert got == [f"192.0.2.{host}/24" for host in range(11, 255)]
    assert all(ip["gateway"] == "192.0.2.1" for ip in cni_add(daemon, "pod-0").body["ips"])

    full = cni_add(daemon, "one-too-many")
    assert full.status == 409
    assert full.body["error"]["code"] == "exhausted"
    assert "net1" in full.body["error"]["message"]
    assert full.body["error"]["cniCode"] == 102

    # pod-9 holds .20, pod-19 holds .30: release .20 then .30, get them back in that order.
    assert cni_del(daemon, "pod-9").body == {"released": 1}
    assert cni_del(daemon, "pod-19").body == {"released": 1}
    assert cni_del(daemon, "pod-19").body == {"released": 0}
    assert cni_add(daemon, "late-a").body["ips"][0]["address"] == "192.0.2.20/24"
    assert cni_add(daemon, "late-b").body["ips"][0]["address"] == "192.0.2.30/24"

    before = daemon.client.get("/v1/allocations").body["items"]
    daemon.restart()
    after = daemon.client.get("/v1/allocations").body["items"]
    assert [(a["id"], a["addresses"]) for a in after] == [(a["id"], a["addresses"]) for a in before]
    assert cni_add(daemon, "pod-100").body["ips"][0]["address"] == "192.0.2.111/24"


def test_static_conflicts_name_the_holder_and_change_nothing(daemon: Daemon):
    daemon.client.post("/v1/subnets", NET1)
    assert cni_add(daemon, "a", ips=["192.0.2.5"]).body["ips"][0]["address"] == "192.0.2.5/24"
    clash = cni_add(daemon, "b", ips=["192.0.2.5/24"])
    assert clash.status == 409
    assert (
        clash.body["error"]["message"]
        == "192.0.2.5 in subnet net1 is held by default/a net1 (network macvlan.default, allocation 1)"
    )
    gateway = cni_add(daemon, "b", ips=["192.0.2.1"])
    assert (gateway.status, gateway.body["error"]["message"]) == (409, "192.0.2.1 is the gateway of subnet net1")
    outside = cni_add(daemon, "b", ips=["198.51.100.7"])
    assert outside.status == 400
    assert "outside subnet net1" in outside.body["error"]["message"]
    assert len(daemon.client.get("/v1/allocations").body["items"]) == 1


def test_pools_reservations_and_providers(daemon: Daemon):
    daemon.client.post("/v1/subnets", NET1)
    pool = daemon.client.post("/v1/pools", {"name": "db", "subnet": "net1", "ips": ["192.0.2.11..192.0.2.12"]})
    assert pool.status == 201, pool.body
    assert pool.body["usage"] == {"total": 2, "used": 0, "available": 2, "freeRanges": ["192.0.2.11-192.0.2.12"]}
    reservation = daemon.client.post(
        "/v1/reservations", {"subnet": "net1", "address": "192.0.2.13", "owner": "default/router", "note": "lab router"}
    )
    assert reservation.status == 201
    # Dynamic allocation skips the pool and the reservation.
    assert cni_add(daemon, "x").body["ips"][0]["address"] == "192.0.2.14/24"
    taken = cni_add(daemon, "y", ips=["192.0.2.13"])
    assert taken.status == 409 and "reserved" in taken.body["error"]["message"]
    assert cni_add(daemon, "router", ips=["192.0.2.13"]).status == 200

    allocate = daemon.client.post(
        "/v1/allocations", {"subnet": "net1", "owner": {"namespace": "lab", "pod": "vm-1", "interface": "eth1"}}
    )
    assert allocate.status == 201
    assert allocate.body["addresses"][0]["address"] == "192.0.2.15"
    assert daemon.client.delete(f"/v1/allocations/{allocate.body['id']}").status == 200
    assert daemon.client.get(f"/v1/allocations/{allocate.body['id']}").status == 404

    # Same CIDR under another provider is a separate L2 domain; under the same one it overlaps.
    assert daemon.client.post("/v1/subnets", {**NET1, "name": "net2", "provider": "other.default"}).status == 201
    overlap = daemon.client.post(
        "/v1/subnets", {**NET1, "name": "net3", "cidrBlock": "192.0.2.128/25", "gateway": None, "excludeIps": []}
    )
    assert overlap.status == 409 and "overlaps 192.0.2.0/24 of subnet net1" in overlap.body["error"]["message"]

    history = daemon.client.get("/v1/ips/192.0.2.15").body
    assert history["holders"] == []
    assert [(h["pod"], h["to"] is not None) for h in history["history"]] == [("vm-1", True)]

    refused = daemon.client.delete("/v1/subnets/net1")
    assert refused.status == 409 and refused.body["error"]["code"] == "in_use"
    assert daemon.client.delete("/v1/subnets/net1?force=true").status == 200
    assert daemon.client.get("/v1/subnets/net1").status == 404


def test_priority_fallthrough_and_dual_stack(daemon: Daemon):
    daemon.client.post(
        "/v1/subnets", {"name": "small", "cidrBlock": "203.0.113.0/30", "provider": "p.ns", "priority": 0}
    )
    daemon.client.post(
        "/v1/subnets",
        {"name": "big", "cidrBlock": "198.51.100.0/24,2001:db8:4::/64", "provider": "p.ns", "priority": 10},
    )
    first = cni_add(daemon, "a", provider="p.ns")
    assert first.body["subnet"] == "small"
    second = cni_add(daemon, "b", provider="p.ns")
    assert second.body["subnet"] == "big"
    assert [ip["address"] for ip in second.body["ips"]] == ["198.51.100.2/24", "2001:db8:4::2/64"]


def test_a_dual_stack_static_request_blames_only_the_address_outside(daemon: Daemon):
    assert (
        daemon.client.post(
            "/v1/subnets", {"name": "ds", "cidrBlock": "198.51.100.0/24,2001:db8:4::/64", "provider": "ds.ns"}
        ).status
        == 201
    )
    before = daemon.client.get("/v1/allocations").body
    for ips, blamed in (
        (["198.51.100.7", "2001:db8:99::7"], "2001:db8:99::7 is outside subnet ds"),
        (["203.0.113.7", "2001:db8:4::7"], "203.0.113.7 is outside subnet ds"),
    ):
        reply = cni_add(daemon, "s", provider="ds.ns", ips=ips)
        assert reply.status == 400, reply.body
        message = reply.body["error"]["message"]
        assert blamed in message, message
        good = next(ip for ip in ips if ip not in blamed)
        assert f"{good} is" not in message and f"{good}," not in message, message
    reply = cni_add(daemon, "s", provider="ds.ns", ips=["203.0.113.7", "2001:db8:99::7"])
    assert "203.0.113.7, 2001:db8:99::7 are outside subnet ds" in reply.body["error"]["message"], reply.body
    # Each inside a different subnet of the provider: said so, not "outside".
    assert (
        daemon.client.post(
            "/v1/subnets", {"name": "v6only", "cidrBlock": "2001:db8:6::/64", "provider": "ds.ns"}
        ).status
        == 201
    )
    reply = cni_add(daemon, "s", provider="ds.ns", ips=["198.51.100.7", "2001:db8:6::7"])
    assert reply.status == 400 and "in different subnets" in reply.body["error"]["message"], reply.body
    assert "2001:db8:6::7 is in v6only" in reply.body["error"]["message"]
    assert daemon.client.get("/v1/allocations").body == before


def test_inline_whereabouts_network_owned_by_the_daemon(daemon: Daemon):
    ipam = {
        "type": "ipamd",
        "range": "198.51.100.0/24",
        "range_start": "198.51.100.50",
        "range_end": "198.51.100.51",
        "network_name": "tenant-a",
    }
    body = {"containerId": "c1", "ifName": "net1", "network": "wb", "ipam": ipam}
    assert daemon.client.post("/v1/cni/add", body).body["ips"][0]["address"] == "198.51.100.50/24"
    assert (
        daemon.client.post("/v1/cni/add", {**body, "containerId": "c2"}).body["ips"][0]["address"] == "198.51.100.51/24"
    )
    assert daemon.client.post("/v1/cni/add", {**body, "containerId": "c3"}).body["error"]["code"] == "exhausted"
    clash = daemon.client.post(
        "/v1/cni/add",
        {
            **body,
            "containerId": "c4",
            "ipam": {**ipam, "range": "203.0.113.0/24", "range_start": None, "range_end": None},
        },
    )
    assert clash.status == 409 and "give one of them its own network_name" in clash.body["error"]["message"]


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        pytest.param(b"{not json", 400, "invalid_input", id="malformed"),
        pytest.param(b"[1,2]", 400, "invalid_input", id="not-object"),
        pytest.param(b'{"name": "\xff"}', 400, "invalid_input", id="bad-utf8"),
        pytest.param(
            b'{"name":"x","cidrBlock":"192.0.2.0/24","priority":' + b"9" * 5000 + b"}",
            400,
            "invalid_input",
            id="huge-number",
        ),
        pytest.param(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}", 400, "invalid_input", id="deep"),
        pytest.param(
            b'{"name":"x","cidrBlock":"192.0.2.0/24","pad":"' + b"x" * (1024 * 1024 + 10) + b'"}',
            413,
            "payload_too_large",
            id="oversized",
        ),
    ],
)
def test_bad_bodies_get_clear_errors_and_change_nothing(module_daemon: Daemon, raw: bytes, status: int, code: str):
    daemon = module_daemon
    reply = daemon.client.post("/v1/subnets", raw=raw)
    assert (reply.status, reply.error_code) == (status, code)
    assert daemon.client.get("/v1/subnets").body == {"items": []}


def test_socket_mode_health_and_ready(module_daemon: Daemon):
    daemon = module_daemon
    assert stat.S_IMODE(os.stat(daemon.socket).st_mode) == 0o660
    assert daemon.client.get("/healthz").body == {"ok": True}
    assert daemon.client.get("/readyz").body == {"ready": True}
    assert daemon.client.get("/v1/nothing").status == 404


def test_replacing_a_pool_is_one_step_and_keeps_held_addresses(daemon: Daemon):
    daemon.client.post("/v1/subnets", NET1)
    daemon.client.post("/v1/pools", {"name": "db", "subnet": "net1", "ips": ["192.0.2.20..192.0.2.21"]})
    held = cni_add(daemon, "db-a", **{"ipam": {"type": "ipamd", "provider": "macvlan.default"}})
    assert held.status == 200
    allocate = daemon.client.post(
        "/v1/allocations", {"subnet": "net1", "owner": {"pod": "vm"}, "address": "192.0.2.20"}
    )
    assert allocate.status == 201
    replaced = daemon.client.request("PUT", "/v1/pools/db", {"subnet": "net1", "ips": ["192.0.2.21..192.0.2.23"]})
    assert replaced.status == 200, replaced.body
    assert replaced.body["usage"]["freeRanges"] == ["192.0.2.21-192.0.2.23"]
    # .20 left the pool but its holder keeps it; dynamic allocation still skips pool members.
    assert daemon.client.get("/v1/ips/192.0.2.20").body["holders"][0]["owner"]["pod"] == "vm"
    created = daemon.client.request("PUT", "/v1/pools/new", {"subnet": "net1", "ips": ["192.0.2.30"]})
    assert created.status == 201
    clash = daemon.client.request("PUT", "/v1/pools/db", {"subnet": "net1", "ips": ["192.0.2.30"]})
    assert clash.status == 409 and "overlaps pool new" in clash.body["error"]["message"]
    assert daemon.client.get("/v1/pools/db").body["ips"] == ["192.0.2.21..192.0.2.23"]


def test_sigkill_leaves_a_stale_socket_that_the_next_start_replaces(daemon: Daemon):
    daemon.client.post("/v1/subnets", NET1)
    first = cni_add(daemon, "survivor").body["ips"]
    daemon.kill()
    assert stat.S_ISSOCK(os.lstat(daemon.socket).st_mode), "SIGKILL should leave the socket file behind"
    daemon.start()
    assert cni_add(daemon, "survivor").body["ips"] == first


def test_sigterm_stops_cleanly_and_removes_the_socket(daemon: Daemon):
    assert daemon.stop() == 0
    assert not os.path.exists(daemon.socket)
    assert "stopped" in daemon.log()


def test_a_mac_is_held_once_per_network_even_when_asked_for_at_once(daemon: Daemon):
    from concurrent.futures import ThreadPoolExecutor

    daemon.client.post("/v1/subnets", NET1)
    with ThreadPoolExecutor(16) as pool:
        replies = list(pool.map(lambda i: cni_add(daemon, f"mac-{i}", mac="02:00:00:00:00:aa"), range(16)))
    assert sorted(r.status for r in replies) == [200] + [409] * 15, [r.body for r in replies]
    assert all("MAC 02:00:00:00:00:aa is already used" in r.message for r in replies if r.status == 409)
    # Another network may use the same MAC (a separate L2 domain).
    daemon.client.post("/v1/subnets", {**NET1, "name": "other", "provider": "other.default"})
    assert cni_add(daemon, "elsewhere", provider="other.default", mac="02:00:00:00:00:aa").status == 200


def test_del_finds_an_inline_attachment_after_its_range_was_edited(daemon: Daemon):
    ipam = {"type": "ipamd", "range": "198.51.100.0/24", "network_name": "tenant-b"}
    body = {"containerId": "c1", "ifName": "net1", "network": "wb", "ipam": ipam}
    assert daemon.client.post("/v1/cni/add", body).status == 200
    edited = {**body, "ipam": {**ipam, "range": "198.51.100.0/33"}}
    assert daemon.client.post("/v1/cni/add", {**edited, "containerId": "c2"}).status == 400
    assert daemon.client.post("/v1/cni/del", edited).body == {"released": 1}
    assert daemon.client.get("/v1/allocations").body["items"] == []
