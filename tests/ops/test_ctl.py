"""ipamctl against a live daemon (SQLite and PostgreSQL): every command and output format."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ipamd.ctl import cli as ctl_cli
from tests.ops.support import ADMIN_TOKEN, FIXTURES, READONLY_TOKEN, Ctl, CtlRun, TcpDaemon, reload_and_wait
from tests.support.daemon import REPO, Daemon

NET1 = {
    "name": "net1",
    "cidrBlock": "192.0.2.0/24,2001:db8:1::/64",
    "excludeIps": ["192.0.2.2..192.0.2.10"],
    "provider": "macvlan.default",
    "routes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}],
    "dns": {"nameservers": ["192.0.2.53"]},
}


def populate(daemon: Daemon) -> dict[str, Any]:
    """net1 with a pool, a reservation, one live allocation and one released; returns the live one."""
    client = daemon.client
    assert client.post("/v1/subnets", NET1).status == 201
    assert client.post("/v1/pools", {"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.59"]}).status == 201
    reservation = {
        "subnet": "net1",
        "address": "192.0.2.7",
        "mac": "02:00:00:00:00:07",
        "owner": "default/router-a",
        "note": "lab router",
    }
    assert client.post("/v1/reservations", reservation).status == 201
    live = client.post(
        "/v1/allocations", {"subnet": "net1", "owner": {"namespace": "lab", "pod": "router-a", "interface": "eth1"}}
    )
    assert live.status == 201, live.body
    gone = client.post(
        "/v1/allocations", {"subnet": "net1", "owner": {"namespace": "lab", "pod": "router-b", "interface": "eth1"}}
    )
    assert gone.status == 201 and client.delete(f"/v1/allocations/{gone.body['id']}").status == 200
    return dict(live.body)


@dataclass
class Populated:
    daemon: Daemon
    live: dict[str, Any]  # populate()'s live allocation
    ctl: Ctl


@pytest.fixture(scope="module")
def populated_daemon(module_daemon: Daemon) -> tuple[Daemon, dict[str, Any]]:
    """One daemon per database with populate()'s objects, shared by the tests that only read."""
    return module_daemon, populate(module_daemon)


@pytest.fixture
def populated(
    populated_daemon: tuple[Daemon, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> Iterator[Populated]:
    """The shared populated daemon, with an ipamctl that captures this test's output; the test
    fails if it changed an object."""
    daemon, live = populated_daemon
    before = daemon.objects()
    yield Populated(daemon, live, Ctl(capsys, ["--socket", daemon.socket]))
    assert daemon.objects() == before, "a test of the shared daemon changed its objects"


def rows(table: str) -> list[list[str]]:
    """Returns a printed table as lists of cells (cells never contain two spaces)."""
    return [re.split(r"\s{2,}", line.strip()) for line in table.splitlines()]


# ---------------------------------------------------------------------------- get


def test_get_subnets_table_shows_usage_per_family(populated: Populated) -> None:
    table = rows(populated.ctl.ok("get", "subnets").out)
    assert table[0] == ["NAME", "PROVIDER", "CIDR", "IPV4", "IPV6", "ORIGIN"]
    # IPv4: 1 used + 233 available (254 minus gateway, 9 excluded, the reservation, 10 pooled).
    assert table[1] == [
        "net1",
        "macvlan.default",
        "192.0.2.0/24,2001:db8:1::/64",
        "1/234 [----------] <1%",
        "1/18.4E [----------] <1%",
        "api",
    ]


def test_get_subnets_bar_fills_with_use(daemon: Daemon, ctl: Ctl) -> None:
    assert daemon.client.post("/v1/subnets", {"name": "tiny", "cidrBlock": "203.0.113.0/29"}).status == 201
    # /29: 6 allocatable, minus the gateway: 5. Take 2 of them.
    for pod in ("a", "b"):
        assert daemon.client.post("/v1/allocations", {"subnet": "tiny", "owner": {"pod": pod}}).status == 201
    assert rows(ctl.ok("get", "subnet", "tiny").out)[1][3] == "2/5 [####------] 40%"
    for pod in ("c", "d", "e"):
        assert daemon.client.post("/v1/allocations", {"subnet": "tiny", "owner": {"pod": pod}}).status == 201
    assert rows(ctl.ok("get", "subnet", "tiny").out)[1][3] == "5/5 [##########] 100%"


@pytest.mark.parametrize(
    "fmt, load", [pytest.param("json", None, id="json"), pytest.param("yaml", yaml.safe_load, id="yaml")]
)
@pytest.mark.parametrize("resource", ["subnets", "pools", "reservations", "allocations"])
def test_get_lists_in_machine_formats_equal_the_api(populated: Populated, resource: str, fmt: str, load: Any) -> None:
    run = populated.ctl.ok("get", resource, "-o", fmt)
    parsed = run.json() if load is None else load(run.out)
    assert parsed == populated.daemon.client.get(f"/v1/{resource}").body
    assert len(parsed["items"]) == 1


def test_get_one_by_name_or_id(populated: Populated) -> None:
    daemon, live, ctl = populated.daemon, populated.live, populated.ctl
    assert ctl.ok("get", "subnet", "net1", "-o", "json").json()["name"] == "net1"
    assert rows(ctl.ok("get", "pool", "db").out) == [
        ["NAME", "SUBNET", "IPS", "USAGE", "ORIGIN"],
        ["db", "net1", "192.0.2.50..192.0.2.59", "0/10 [----------] 0%", "api"],
    ]
    reservation_id = daemon.client.get("/v1/reservations").body["items"][0]["id"]
    assert rows(ctl.ok("get", "reservation", str(reservation_id)).out)[1] == [
        str(reservation_id),
        "net1",
        "192.0.2.7",
        "02:00:00:00:00:07",
        "default/router-a",
        "lab router",
        "api",
    ]
    one = rows(ctl.ok("get", "allocation", str(live["id"])).out)
    assert one[1][:8] == [
        str(live["id"]),
        "net1",
        "default",
        "lab",
        "router-a",
        "eth1",
        "192.0.2.11,2001:db8:1::2",
        "-",
    ]
    assert yaml.safe_load(ctl.ok("get", "allocation", str(live["id"]), "-o", "yaml").out) == live


def test_get_allocations_filters(daemon: Daemon, ctl: Ctl) -> None:
    populate(daemon)
    assert daemon.client.post("/v1/subnets", {"name": "other", "cidrBlock": "198.51.100.0/24"}).status == 201
    assert (
        daemon.client.post("/v1/allocations", {"subnet": "other", "owner": {"namespace": "ops", "pod": "probe"}}).status
        == 201
    )

    def pods(*filters: str) -> list[str]:
        return [item["owner"]["pod"] for item in ctl.ok("get", "allocations", *filters, "-o", "json").json()["items"]]

    assert pods() == ["router-a", "probe"]
    assert pods("--subnet", "net1") == ["router-a"]
    assert pods("--namespace", "ops") == ["probe"]
    assert pods("--pod", "router-a") == ["router-a"]
    assert pods("--subnet", "net1", "--namespace", "ops") == []
    assert pods("--cluster", "default") == ["router-a", "probe"]
    assert pods("--cluster", "west") == []
    assert rows(ctl.ok("get", "allocations", "--pod", "probe").out)[0][:3] == ["ID", "SUBNET", "CLUSTER"]
    assert rows(ctl.ok("get", "allocations", "--pod", "probe").out)[1][1:5] == ["other", "default", "ops", "probe"]
    assert ctl.ok("get", "allocations", "--pod", "nobody").out.strip() == "No allocations found."


# ---------------------------------------------------------------------------- describe, who-has, history


def test_describe_subnet_lists_free_ranges_pools_and_reservations(populated: Populated) -> None:
    daemon, ctl = populated.daemon, populated.ctl
    text = ctl.ok("describe", "subnet", "net1").out
    lines = text.splitlines()
    assert "Provider:    macvlan.default" in lines
    assert "Routes:      198.51.100.0/24 via 192.0.2.254" in lines
    v4 = lines.index("IPv4:")
    assert lines[v4 + 1] == "  Usage:     1/234 [----------] <1%"
    free = lines.index("  Free ranges:", v4)
    # 192.0.2.12 was released: it is free again, next to the never-used space up to the pool.
    assert lines[free + 1 : free + 3] == ["    192.0.2.12-192.0.2.49", "    192.0.2.60-192.0.2.254"]
    assert "    2001:db8:1::3-2001:db8:1:0:ffff:ffff:ffff:ffff" in lines
    assert any(line.split()[:2] == ["db", "net1"] for line in lines[lines.index("Pools:") :])
    assert any("192.0.2.7" in line and "lab router" in line for line in lines[lines.index("Reservations:") :])
    assert ctl.ok("describe", "subnet", "net1", "-o", "json").json() == daemon.client.get("/v1/subnets/net1").body


def test_describe_pool(populated: Populated) -> None:
    lines = populated.ctl.ok("describe", "pool", "db").out.splitlines()
    assert "Usage:     0/10 [----------] 0%" in lines
    assert lines[-2:] == ["Free ranges:", "  192.0.2.50-192.0.2.59"]


def test_who_has_names_the_holder(populated: Populated) -> None:
    live, ctl = populated.live, populated.ctl
    table = rows(ctl.ok("who-has", "192.0.2.11").out)
    assert table[0] == [
        "ALLOCATION",
        "SUBNET",
        "CLUSTER",
        "NETWORK",
        "NAMESPACE",
        "POD",
        "INTERFACE",
        "CONTAINER",
        "SINCE",
    ]
    assert table[1][:8] == [str(live["id"]), "net1", "default", "macvlan.default", "lab", "router-a", "eth1", "-"]
    assert ctl.ok("who-has", "2001:db8:1::2", "-o", "json").json()["holders"][0]["id"] == live["id"]
    free = ctl.ok("who-has", "192.0.2.12").out.strip()
    assert free.startswith("nobody holds 192.0.2.12; last held by lab/router-b eth1 until ")
    assert ctl.ok("who-has", "192.0.2.200").out.strip() == "nobody holds 192.0.2.200"


def test_history_lists_every_holder(populated: Populated) -> None:
    ctl = populated.ctl
    table = rows(ctl.ok("history", "192.0.2.12").out)
    assert table[0] == [
        "SUBNET",
        "CLUSTER",
        "NETWORK",
        "NAMESPACE",
        "POD",
        "INTERFACE",
        "CONTAINER",
        "FROM",
        "TO",
        "REASON",
    ]
    assert table[1][:7] == ["net1", "default", "macvlan.default", "lab", "router-b", "eth1", "-"]
    assert table[1][-1] == "api"
    assert rows(ctl.ok("history", "192.0.2.11").out)[1][8] == "(held)"
    history = yaml.safe_load(ctl.ok("history", "192.0.2.12", "-o", "yaml").out)["history"]
    assert [(h["pod"], h["releaseReason"]) for h in history] == [("router-b", "api")]
    assert ctl.ok("history", "192.0.2.99").out.strip() == "no history for 192.0.2.99"


# ---------------------------------------------------------------------------- apply


def test_apply_kube_ovn_subnet_unchanged(daemon: Daemon, ctl: Ctl) -> None:
    path = str(FIXTURES / "kubeovn-macvlan-subnet.yaml")
    first = ctl.ok("apply", "-f", path)
    assert first.out.splitlines() == ["subnet/macvlan created"]
    assert first.err.splitlines() == [
        "warning: kubeovn.io/v1 Subnet macvlan: spec.protocol ignored: ipamd derives the families from cidrBlock"
    ]
    subnet = daemon.client.get("/v1/subnets/macvlan").body
    assert (subnet["cidrBlock"], subnet["gateway"], subnet["excludeIps"], subnet["provider"]) == (
        "198.18.0.0/16",
        "198.18.0.1",
        ["198.18.0.1..198.18.0.10"],
        "macvlan.default",
    )
    assert ctl.ok("apply", "-f", path).out.splitlines() == ["subnet/macvlan unchanged"]


def test_apply_kube_ovn_reports_every_field_it_does_not_use(daemon: Daemon, ctl: Ctl, tmp_path: Path) -> None:
    manifest = tmp_path / "kubeovn.yaml"
    manifest.write_text(
        """\
apiVersion: kubeovn.io/v1
kind: IPPool
metadata:
  name: web
spec:
  subnet: lab
  ips: [198.51.100.20..198.51.100.29]
  namespaces: [web]
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: lab
spec:
  protocol: IPv4
  cidrBlock: 198.51.100.0/24
  natOutgoing: true
  gatewayType: distributed
  vlan: vlan10
  private: false
  vpc: ovn-cluster
status:
  v4availableIPs: 253
"""
    )
    run = ctl.ok("apply", "-f", str(manifest))
    assert run.out.splitlines() == ["subnet/lab created", "pool/web created"]
    warnings = run.err.splitlines()
    ignored = sorted(line.split("spec.")[1].split(" ")[0] for line in warnings if " ignored: " in line)
    assert ignored == ["gatewayType", "natOutgoing", "private", "protocol", "vlan", "vpc"]
    assert any("spec.provider is not set; using Kube-OVN's default 'ovn'" in line for line in warnings)
    assert daemon.client.get("/v1/subnets/lab").body["provider"] == "ovn"
    pool = daemon.client.get("/v1/pools/web").body
    assert (pool["ips"], pool["namespaces"]) == (["198.51.100.20..198.51.100.29"], ["web"])
    # Applied again: nothing changes, the pool's rules included.
    assert ctl.ok("apply", "-f", str(manifest)).out.splitlines() == ["subnet/lab unchanged", "pool/web unchanged"]


def test_apply_kube_ovn_subnet_keeps_its_namespaces_binding(daemon: Daemon, ctl: Ctl, tmp_path: Path) -> None:
    manifest = tmp_path / "tenant.yaml"
    manifest.write_text(
        """\
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: tenant-a
spec:
  cidrBlock: 198.51.100.0/24
  provider: tenant.default
  namespaces: [team-a, team-a2]
"""
    )
    run = ctl.ok("apply", "-f", str(manifest))
    assert run.out.splitlines() == ["subnet/tenant-a created"]
    assert "namespaces" not in run.err
    assert daemon.client.get("/v1/subnets/tenant-a").body["namespaces"] == ["team-a", "team-a2"]
    # Applied again unchanged: nothing to do.
    assert ctl.ok("apply", "-f", str(manifest)).out.splitlines() == ["subnet/tenant-a unchanged"]
    owner = {"subnet": "tenant-a", "owner": {"namespace": "team-b", "pod": "p"}}
    refused = daemon.client.post("/v1/allocations", owner)
    assert refused.error_code == "not_admitted"
    assert "namespaces [team-a, team-a2] does not include namespace team-b" in refused.message
    assert daemon.client.post("/v1/allocations", {**owner, "owner": {"namespace": "team-a2", "pod": "p"}}).status == 201
    # The binding left out of the manifest is dropped, as every field left out returns to its default.
    manifest.write_text(manifest.read_text().replace("  namespaces: [team-a, team-a2]\n", ""))
    assert ctl.ok("apply", "-f", str(manifest)).out.splitlines() == ["subnet/tenant-a configured"]
    assert "namespaces" not in daemon.client.get("/v1/subnets/tenant-a").body
    assert daemon.client.post("/v1/allocations", owner).status == 201


IPAMD_MANIFESTS = """\
apiVersion: ipamd.io/v1
kind: Pool
metadata: {name: web}
spec: {subnet: lab, ips: ["198.51.100.20..198.51.100.29"]}
---
apiVersion: ipamd.io/v1
kind: Subnet
metadata: {name: lab}
spec:
  cidrBlock: 198.51.100.0/24
  provider: lab.default
  excludeIps: ["198.51.100.2..198.51.100.9"]
---
apiVersion: ipamd.io/v1
kind: Reservation
spec: {subnet: lab, address: 198.51.100.7, owner: default/router}
"""


def test_apply_own_kinds_is_idempotent_and_updates(
    daemon: Daemon, ctl: Ctl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(IPAMD_MANIFESTS)
    # Subnets go first whatever the order in the file.
    assert ctl.ok("apply", "-f", str(manifest)).out.splitlines() == [
        "subnet/lab created",
        "pool/web created",
        "reservation/lab/198.51.100.7 created",
    ]
    assert ctl.ok("apply", "-f", str(manifest)).out.splitlines() == [
        "subnet/lab unchanged",
        "pool/web unchanged",
        "reservation/lab/198.51.100.7 unchanged",
    ]
    changed = IPAMD_MANIFESTS.replace("198.51.100.29", "198.51.100.30").replace("default/router", "default/gw")
    changed = changed.replace('excludeIps: ["198.51.100.2..198.51.100.9"]', "priority: 5")
    monkeypatch.setattr("sys.stdin", io.StringIO(changed))
    assert ctl.ok("apply", "-f", "-").out.splitlines() == [
        "subnet/lab configured",
        "pool/web configured",
        "reservation/lab/198.51.100.7 configured",
    ]
    subnet = daemon.client.get("/v1/subnets/lab").body
    # A field left out of the manifest returns to its default: apply declares the whole spec.
    assert (subnet["priority"], subnet["excludeIps"]) == (5, [])
    assert daemon.client.get("/v1/pools/web").body["ips"] == ["198.51.100.20..198.51.100.30"]
    assert [r["owner"] for r in daemon.client.get("/v1/reservations").body["items"]] == ["default/gw"]


def test_apply_reports_bad_documents_and_applies_the_rest(daemon: Daemon, ctl: Ctl, tmp_path: Path) -> None:
    manifest = tmp_path / "mixed.yaml"
    manifest.write_text(
        IPAMD_MANIFESTS
        + "---\napiVersion: ipamd.io/v1\nkind: Subnet\nmetadata: {name: broken}\nspec: {cidrBlock: 198.51.100.0/33}\n"
    )
    run = ctl("apply", "-f", str(manifest))
    assert run.code == 1
    assert "subnet/lab created" in run.out.splitlines()
    assert run.err.splitlines() == [
        f"error: subnet/broken ({manifest} document 4): cidrBlock: '198.51.100.0/33' has an invalid prefix length",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param(
            "a: [\n",
            "ipamctl: stdin: not valid YAML at line 2, column 1: expected the node content, but found '<stream end>'",
            id="syntax",
        ),
        pytest.param(
            "apiVersion: v1\nkind: Pod\n",
            "ipamctl: stdin document 1: apiVersion 'v1' kind 'Pod' is not supported; use ipamd.io/v1 Subnet/Pool/Reservation or kubeovn.io/v1 Subnet/IPPool",
            id="kind",
        ),
        pytest.param(
            "apiVersion: ipamd.io/v1\nkind: Subnet\nmetadata: {name: x}\nspec: {cidrBlock: 192.0.2.0/24, vlan: 3}\n",
            "ipamctl: stdin document 1: spec.vlan is not a Subnet field; known fields are cidrBlock, clusters, dns, excludeIps, force, gateway, namespaceSelector, namespaces, nodeNames, nodeSelector, podSelector, priority, provider, routes",
            id="field",
        ),
        pytest.param("", "ipamctl: stdin: no Subnet, Pool, Reservation or IPPool document", id="empty"),
    ],
)
def test_apply_rejects_unusable_input_in_one_line(
    populated: Populated, monkeypatch: pytest.MonkeyPatch, text: str, message: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    run = populated.ctl("apply", "-f", "-")
    assert (run.code, run.out, run.err.splitlines()) == (1, "", [message])


# ---------------------------------------------------------------------------- delete, release


def test_delete_and_release(daemon: Daemon, ctl: Ctl) -> None:
    live = populate(daemon)
    assert ctl.ok("delete", "reservation", "192.0.2.7").out.strip().startswith("reservation/")
    assert daemon.client.get("/v1/reservations").body["items"] == []
    assert ctl.ok("delete", "pool", "db").out.strip() == "pool/db deleted"
    refused = ctl("delete", "subnet", "net1")
    assert (refused.code, refused.err.strip()) == (
        1,
        "ipamctl: subnet net1 has 1 live allocation(s); release them or delete with ?force=true",
    )
    assert ctl.ok("release", str(live["id"])).out.strip() == (
        f"allocation/{live['id']} released: 192.0.2.11,2001:db8:1::2 of lab/router-a eth1 in subnet net1"
    )
    assert daemon.client.post("/v1/allocations", {"subnet": "net1", "owner": {"pod": "late"}}).status == 201
    assert ctl.ok("delete", "subnet", "net1", "--force").out.strip() == "subnet/net1 deleted (released 1 allocation(s))"
    assert daemon.client.get("/v1/subnets").body["items"] == []


def test_delete_reservation_by_id(daemon: Daemon, ctl: Ctl) -> None:
    populate(daemon)
    reservation_id = daemon.client.get("/v1/reservations").body["items"][0]["id"]
    assert ctl.ok("delete", "reservation", str(reservation_id)).out.strip() == f"reservation/{reservation_id} deleted"


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(("get", "subnet", "nope"), "ipamctl: subnet nope not found", id="missing-subnet"),
        pytest.param(("release", "999"), "ipamctl: allocation 999 not found", id="missing-allocation"),
        pytest.param(("release", "abc"), "ipamctl: allocation ids are numbers, got 'abc'", id="bad-id"),
        pytest.param(("get", "pools", "--pod", "x"), "ipamctl: --pod filters allocations only", id="filter-on-pools"),
        pytest.param(
            ("who-has", "not-an-ip"), "ipamctl: address: 'not-an-ip' is not a valid IP address", id="bad-address"
        ),
        pytest.param(
            ("apply", "-f", "/nonexistent.yaml"),
            "ipamctl: cannot read /nonexistent.yaml: No such file or directory",
            id="no-file",
        ),
    ],
)
def test_errors_are_one_line(populated: Populated, args: tuple[str, ...], message: str) -> None:
    run = populated.ctl(*args)
    assert (run.code, run.out, run.err.splitlines()) == (1, "", [message])


# ---------------------------------------------------------------------------- transports


def run_ipamctl(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs the installed console script as an operator would."""
    script = Path(sys.executable).parent / "ipamctl"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "ipamd.ctl"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})}, timeout=60
    )


@pytest.mark.parametrize(
    "args, env, message",
    [
        pytest.param(
            ("--socket", "/nonexistent/ipamd.sock"),
            {},
            "ipamctl: cannot reach ipamd at unix:/nonexistent/ipamd.sock: No such file or directory "
            "(is the daemon running? check --socket or IPAMD_SOCKET, or use --server)",
            id="socket-flag",
        ),
        pytest.param(
            (),
            {"IPAMD_SOCKET": "/nonexistent/env.sock"},
            "ipamctl: cannot reach ipamd at unix:/nonexistent/env.sock: No such file or directory "
            "(is the daemon running? check --socket or IPAMD_SOCKET, or use --server)",
            id="socket-env",
        ),
        pytest.param(
            ("--server", "http://127.0.0.1:1"),
            {},
            "ipamctl: cannot reach ipamd at http://127.0.0.1:1: Connection refused (is the daemon running? check --server or IPAMCTL_SERVER)",
            id="tcp",
        ),
        pytest.param(
            ("--server", "ftp://x"),
            {},
            "ipamctl: --server 'ftp://x': expected http://HOST:PORT or https://HOST:PORT",
            id="bad-url",
        ),
    ],
)
def test_unreachable_daemon_is_one_line_without_traceback(
    args: tuple[str, ...], env: dict[str, str], message: str
) -> None:
    result = run_ipamctl(*args, "get", "subnets", env=env)
    assert (result.returncode, result.stdout, result.stderr.splitlines()) == (1, "", [message])


def test_tcp_listener_with_tokens(tcp_daemon: TcpDaemon, tmp_path: Path) -> None:
    manifest = str(FIXTURES / "kubeovn-macvlan-subnet.yaml")
    denied = run_ipamctl("--server", tcp_daemon.url, "apply", "-f", manifest)
    assert denied.returncode == 1
    assert denied.stderr.splitlines()[-1] == (
        f"error: subnet/macvlan ({manifest} document 1): a bearer token is required on the TCP listener (Authorization: Bearer TOKEN)"
    )
    read_only = run_ipamctl("--server", tcp_daemon.url, "--token", READONLY_TOKEN, "apply", "-f", manifest)
    assert read_only.stderr.splitlines()[-1] == (
        f"error: subnet/macvlan ({manifest} document 1): this token is read-only; state-changing requests need an admin token"
    )
    applied = run_ipamctl("--server", tcp_daemon.url, "apply", "-f", manifest, env={"IPAMCTL_TOKEN": ADMIN_TOKEN})
    assert (applied.returncode, applied.stdout) == (0, "subnet/macvlan created\n")
    # With a token file even reads need a token; a bare HOST:PORT means http.
    listed = run_ipamctl(
        "--server", tcp_daemon.url.removeprefix("http://"), "--token", READONLY_TOKEN, "get", "subnets", "-o", "json"
    )
    assert [s["name"] for s in yaml.safe_load(listed.stdout)["items"]] == ["macvlan"]


def test_history_pages_and_filters(daemon: Daemon, ctl: Ctl, monkeypatch: pytest.MonkeyPatch) -> None:
    populate(daemon)
    for n in range(4):
        body = daemon.client.post(
            "/v1/allocations",
            {
                "subnet": "net1",
                "owner": {"namespace": "lab", "pod": f"p{n}", "interface": "eth1"},
                "address": "192.0.2.12",
            },
        ).body
        assert daemon.client.delete(f"/v1/allocations/{body['id']}").status == 200
    every = ["router-b", "p0", "p1", "p2", "p3"]

    def pods(run: CtlRun) -> list[str]:
        header, *table = rows(run.out)
        return [row[header.index("POD")] for row in table]

    # Every page, two entries at a time.
    monkeypatch.setattr(ctl_cli, "HISTORY_PAGE", 2)
    assert pods(ctl.ok("history", "192.0.2.12")) == every
    assert [h["pod"] for h in ctl.ok("history", "192.0.2.12", "-o", "json").json()["history"]] == every
    # One page, and how to get the next.
    first = ctl.ok("history", "192.0.2.12", "--limit", "3")
    assert pods(first) == every[:3]
    token = first.err.strip().rpartition(" ")[2]
    assert first.err.strip() == f"more entries: run the same command with --continue {token}"
    second = ctl.ok("history", "192.0.2.12", "--limit", "3", "--continue", token)
    assert pods(second) == every[3:] and second.err == ""
    assert pods(ctl.ok("history", "192.0.2.12", "--newest-first", "--limit", "1")) == ["p3"]
    # Durations mean that long ago; nothing started before a time in the past.
    assert pods(ctl.ok("history", "192.0.2.12", "--since", "1h")) == every
    assert ctl.ok("history", "192.0.2.12", "--until", "2020-01-01T00:00:00Z").out.strip() == "no history for 192.0.2.12"
    refused = ctl("history", "192.0.2.12", "--since", "soon")
    assert refused.code == 1
    assert (
        refused.err.strip()
        == "ipamctl: --since 'soon': expected a time such as 2026-11-29T09:00:00Z, or a duration ago such as 90m, 12h or 7d"
    )
    assert ctl("history", "192.0.2.12", "--limit", "0").err.strip() == "ipamctl: --limit 0: expected 1 to 1000"
    bad_token = ctl("history", "192.0.2.12", "--continue", "nonsense")
    assert bad_token.code == 1 and "continue: not a continue token of this endpoint" in bad_token.err


def test_apply_over_the_config_files_pool_warns_that_it_becomes_the_apis(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "ipamd.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "subnets": [{"name": "lab", "cidrBlock": "198.51.100.0/24", "provider": "lab.default"}],
                "pools": [{"name": "web", "subnet": "lab", "ips": ["198.51.100.20..198.51.100.29"]}],
            }
        )
    )
    daemon = Daemon(tmp_path, database_url, extra_args=("--config", str(config))).start()
    try:
        manifest = tmp_path / "web.yaml"
        manifest.write_text(IPAMD_MANIFESTS.split("---\n")[0].replace("198.51.100.20..198.51.100.29", "198.51.100.30"))
        ctl = Ctl(capsys, ["--socket", daemon.socket])
        run = ctl.ok("apply", "-f", str(manifest))
        assert run.out.splitlines() == ["pool/web configured"]
        assert run.err.splitlines() == [
            "warning: pool/web was declared in the daemon's --config file; it is now the API's,"
            " and reloads of the file leave it as it is"
        ]
        pool = daemon.client.get("/v1/pools/web").body
        assert (pool["ips"], pool["origin"]) == (["198.51.100.30"], "api")
        assert ctl.ok("apply", "-f", str(manifest)).err == ""
        # What the warning promises: a reload keeps the API's pool.
        reload_and_wait(daemon)
        assert daemon.client.get("/v1/pools/web").body["ips"] == ["198.51.100.30"]
    finally:
        daemon.stop()
