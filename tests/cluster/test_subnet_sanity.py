"""Subnet sanity (issue 12) on a running daemon: REST, the --config file, ipamctl apply and
inline NAD ranges through the plugin binary all refuse /0 and special-purpose space, naming
the rule, and change nothing; ``force: true`` lets a meant one through (data only: no
traffic is ever sent to these ranges)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from ipamd.ctl import main as ipamctl_main
from tests.cluster.clusterkit import socket_dir, sqlite_snapshot
from tests.plugin.shim_harness import run_shim
from tests.support.daemon import Daemon, serve_refused
from tests.support.waiting import wait_for

REFUSED = [
    pytest.param("0.0.0.0/0", "minimum-prefix", id="v4-0"),
    pytest.param("::/0", "minimum-prefix", id="v6-0"),
    pytest.param("198.0.0.0/7", "minimum-prefix", id="v4-7"),
    pytest.param("2000::/15", "minimum-prefix", id="v6-15"),
    pytest.param("127.0.0.0/24", "loopback", id="loopback"),
    pytest.param("224.0.0.0/24", "multicast", id="multicast"),
    pytest.param("ff05::/64", "multicast", id="v6-multicast"),
    pytest.param("0.0.0.0/24", "unspecified", id="unspecified"),
    pytest.param("::/64", "unspecified", id="v6-unspecified"),
    pytest.param("255.255.255.0/24", "limited-broadcast", id="limited-broadcast"),
]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with socket_dir() as sockets:
        directory = tmp_path_factory.mktemp("sanity")
        daemon = Daemon(sockets, f"sqlite:///{directory / 'ipamd.db'}").start()
        try:
            yield daemon
        finally:
            daemon.stop()


def database_of(daemon: Daemon) -> str:
    return daemon.database_url.removeprefix("sqlite:///")


@pytest.mark.parametrize("cidr, rule", REFUSED)
def test_rest_refuses_naming_the_rule_unless_forced(daemon: Daemon, cidr: str, rule: str):
    before = sqlite_snapshot(database_of(daemon))
    body = {"name": "odd", "cidrBlock": cidr, "gateway": "none", "provider": "odd.ns"}
    refused = daemon.client.post("/v1/subnets", body)
    assert refused.status == 400, refused.body
    error = refused.body["error"]
    assert (error["code"], error["cniCode"], error["details"]) == (
        "invalid_input",
        7,
        {"field": "cidrBlock", "rule": rule},
    )
    assert (
        error["message"].startswith(f"cidrBlock: {cidr} ")
        and f"(rule {rule})" in error["message"]
        and '"force": true' in error["message"]
    )
    assert sqlite_snapshot(database_of(daemon)) == before
    forced = daemon.client.post("/v1/subnets", {**body, "force": True})
    assert forced.status == 201 and forced.body["cidrBlock"] == cidr and "force" not in forced.body
    assert daemon.client.delete("/v1/subnets/odd").status == 200


def test_a_patch_is_checked_for_the_cidrs_it_brings_only(daemon: Daemon):
    assert (
        daemon.client.post(
            "/v1/subnets",
            {"name": "wide", "cidrBlock": "0.0.0.0/0", "gateway": "none", "provider": "wide.ns", "force": True},
        ).status
        == 201
    )
    # Its other fields change without force; a new family is checked.
    assert daemon.client.patch("/v1/subnets/wide", {"excludeIps": ["192.0.2.9"]}).status == 200
    grown = daemon.client.patch("/v1/subnets/wide", {"cidrBlock": "0.0.0.0/0,::/0"})
    assert grown.status == 400 and grown.body["error"]["details"]["rule"] == "minimum-prefix"
    assert daemon.client.patch("/v1/subnets/wide", {"cidrBlock": "0.0.0.0/0,::/0", "force": True}).status == 200
    assert (
        daemon.client.post(
            "/v1/subnets", {"name": "narrow", "cidrBlock": "192.0.2.0/24", "provider": "narrow.ns"}
        ).status
        == 201
    )
    moved = daemon.client.patch("/v1/subnets/narrow", {"cidrBlock": "127.0.0.0/24", "gateway": "none"})
    assert moved.status == 400 and moved.body["error"]["details"]["rule"] == "loopback"
    assert daemon.client.get("/v1/subnets/narrow").body["cidrBlock"] == "192.0.2.0/24"
    for name in ("wide", "narrow"):
        assert daemon.client.delete(f"/v1/subnets/{name}").status == 200


@pytest.mark.parametrize(
    "ipam, field",
    [
        pytest.param({"range": "0.0.0.0/0"}, "ipam.range", id="whereabouts"),
        pytest.param({"ranges": [[{"subnet": "::/0"}]]}, "ipam.ranges[0][0].subnet", id="host-local"),
        pytest.param({"range": "224.0.0.0/28"}, "ipam.range", id="whereabouts-multicast"),
    ],
)
def test_inline_nad_ranges_are_refused_through_the_plugin(daemon: Daemon, ipam: dict[str, object], field: str):
    before = sqlite_snapshot(database_of(daemon))
    config = {
        "cniVersion": "1.0.0",
        "name": "inline",
        "ipam": {"type": "ipamd", "server_socket": daemon.socket, **ipam},
    }
    done = run_shim("ADD", config, container_id="c1", ifname="net1")
    assert done.returncode == 1, done
    assert (
        done.output["code"] == 7 and done.output["msg"].startswith(f"{field}: ") and "(rule " in done.output["msg"]
    ), done.output
    assert "cannot be forced" in done.output["msg"]
    assert sqlite_snapshot(database_of(daemon)) == before


def test_ipamctl_apply_refuses_unless_the_manifest_forces(
    daemon: Daemon, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    manifest = {
        "apiVersion": "ipamd.io/v1",
        "kind": "Subnet",
        "metadata": {"name": "everything"},
        "spec": {"cidrBlock": "::/0", "gateway": "none", "provider": "everything.ns"},
    }
    path = tmp_path / "subnet.yaml"

    def apply(document: dict[str, object]) -> tuple[int, str, str]:
        path.write_text(yaml.safe_dump(document))
        capsys.readouterr()
        code = ipamctl_main(["--socket", daemon.socket, "apply", "-f", str(path)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    code, out, err = apply(manifest)
    assert code != 0 and out == "" and "subnet/everything" in err and "(rule minimum-prefix)" in err, (code, out, err)
    assert daemon.client.get("/v1/subnets/everything").status == 404
    forced = {**manifest, "spec": {**manifest["spec"], "force": True}}  # type: ignore[dict-item]
    assert apply(forced)[:2] == (0, "subnet/everything created\n")
    assert apply(forced)[:2] == (0, "subnet/everything unchanged\n")
    assert daemon.client.delete("/v1/subnets/everything").status == 200


def test_the_config_file_is_refused_unless_it_forces(tmp_path: Path):
    config = tmp_path / "ipamd.yaml"
    entry = {"name": "loop", "cidrBlock": "127.0.0.0/24", "provider": "loop.ns"}
    config.write_text(yaml.safe_dump({"subnets": [entry]}))
    with socket_dir() as sockets:
        database = f"sqlite:///{tmp_path / 'ipamd.db'}"
        refused = serve_refused(str(sockets / "a.sock"), database, "--config", str(config))
        assert refused.returncode != 0
        assert (
            "subnets[0]: cidrBlock: 127.0.0.0/24 overlaps loopback space 127.0.0.0/8 (rule loopback)" in refused.stderr
        ), refused.stderr

        config.write_text(yaml.safe_dump({"subnets": [{**entry, "force": True}]}))
        daemon = Daemon(sockets, database, extra_args=("--config", str(config))).start()
        try:
            subnet = daemon.client.get("/v1/subnets/loop").body
            assert (subnet["cidrBlock"], subnet["origin"]) == ("127.0.0.0/24", "config")
            # Re-applied unchanged: force is a permission, not part of the spec.
            assert daemon.process is not None
            daemon.process.send_signal(signal.SIGHUP)
            wait_for(
                lambda: "0 change(s), 0 kept, 0 error(s)" in daemon.log().split("SIGHUP", 1)[-1],
                timeout=30,
                what="the reload",
            )
        finally:
            daemon.stop()
