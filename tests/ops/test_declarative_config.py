"""``ipamd serve --config FILE``: applied at start, re-applied on SIGHUP, only config-owned objects touched."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.support import log_has, reload, reload_and_wait
from tests.support.daemon import Daemon, serve_refused
from tests.support.waiting import wait_for

CONFIG: dict[str, Any] = {
    "subnets": [
        {
            "name": "macvlan-net",
            "cidrBlock": "192.0.2.0/24",
            "gateway": "192.0.2.1",
            "excludeIps": ["192.0.2.2..192.0.2.10"],
            "provider": "macvlan.default",
            "priority": 0,
            "routes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}],
            "dns": {"nameservers": ["192.0.2.53"]},
        },
        {"name": "spare", "cidrBlock": "203.0.113.0/24", "provider": "spare.default"},
    ],
    "pools": [{"name": "db", "subnet": "macvlan-net", "ips": ["192.0.2.50..192.0.2.59"]}],
    "reservations": [
        {
            "subnet": "macvlan-net",
            "address": "192.0.2.7",
            "mac": "02:00:00:00:00:07",
            "owner": "default/router-a",
            "note": "lab router",
        },
    ],
}


def write(path: Path, config: dict[str, Any]) -> None:
    # Write then rename: the daemon never reads half a file.
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump(config))
    os.replace(temporary, path)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "ipamd.yaml"
    write(path, CONFIG)
    return path


@pytest.fixture
def configured(tmp_path: Path, database_url: str, config_file: Path) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path, database_url, extra_args=("--config", str(config_file))).start()
    try:
        yield daemon
    finally:
        daemon.stop()


def names(daemon: Daemon, resource: str) -> list[str]:
    return [item["name"] for item in daemon.client.get(f"/v1/{resource}").body["items"]]


def test_applied_at_start_with_origin_config(configured: Daemon) -> None:
    subnet = configured.client.get("/v1/subnets/macvlan-net").body
    assert subnet["origin"] == "config"
    assert {key: subnet[key] for key in CONFIG["subnets"][0]} == CONFIG["subnets"][0]
    pool = configured.client.get("/v1/pools/db").body
    assert (pool["origin"], pool["ips"]) == ("config", ["192.0.2.50..192.0.2.59"])
    [reservation] = configured.client.get("/v1/reservations").body["items"]
    assert (reservation["origin"], reservation["address"], reservation["owner"]) == (
        "config",
        "192.0.2.7",
        "default/router-a",
    )


def test_sighup_applies_edits(configured: Daemon, config_file: Path) -> None:
    edited = yaml.safe_load(yaml.safe_dump(CONFIG))
    edited["subnets"][0]["excludeIps"] = ["192.0.2.2..192.0.2.20"]
    edited["subnets"] = [
        edited["subnets"][0],
        {"name": "extra", "cidrBlock": "198.18.0.0/24", "provider": "extra.default"},
    ]
    edited["pools"][0]["ips"] = ["192.0.2.50..192.0.2.60"]
    edited["reservations"][0]["note"] = "lab router, rack 2"
    write(config_file, edited)
    reload(configured)

    def live() -> bool:
        # The pool is replaced in one transaction, so it never goes missing mid-reload.
        subnet = configured.client.get("/v1/subnets/macvlan-net").body
        return bool(
            subnet["excludeIps"] == ["192.0.2.2..192.0.2.20"]
            and names(configured, "subnets") == ["extra", "macvlan-net"]
            and configured.client.get("/v1/pools/db").body["ips"] == ["192.0.2.50..192.0.2.60"]
            and [r["note"] for r in configured.client.get("/v1/reservations").body["items"]] == ["lab router, rack 2"]
        )

    wait_for(live, what="edited configuration live")
    assert configured.process is not None and configured.process.poll() is None
    wait_for(lambda: log_has(configured, "applied: 5 change(s), 0 kept, 0 error(s)"), what="reload summary")
    log = configured.log()
    assert "config: subnet macvlan-net updated" in log
    assert "config: subnet spare deleted (no longer in" in log
    assert "config: pool db replaced" in log


def test_removed_subnet_with_live_allocations_is_kept_and_reported(configured: Daemon, config_file: Path) -> None:
    allocation = configured.client.post(
        "/v1/allocations", {"subnet": "spare", "owner": {"namespace": "lab", "pod": "probe"}}
    )
    assert allocation.status == 201
    without_spare = {**CONFIG, "subnets": CONFIG["subnets"][:1]}
    write(config_file, without_spare)
    log = reload_and_wait(configured)
    assert (
        f"config: subnet spare is no longer in {config_file} but has 1 live allocation(s); kept until they are released"
        in log
    )
    assert "spare" in names(configured, "subnets")

    # Once the allocation is gone, the next reload removes the subnet.
    assert configured.client.delete(f"/v1/allocations/{allocation.body['id']}").status == 200
    reload_and_wait(configured)
    assert names(configured, "subnets") == ["macvlan-net"]


def test_objects_from_the_api_are_never_touched(tmp_path: Path, database_url: str, config_file: Path) -> None:
    daemon = Daemon(tmp_path, database_url).start()
    try:
        # The operator made "spare" by hand before the file declared it.
        assert daemon.client.post("/v1/subnets", {"name": "spare", "cidrBlock": "203.0.113.0/25"}).status == 201
        assert daemon.client.post("/v1/subnets", {"name": "manual", "cidrBlock": "198.18.1.0/24"}).status == 201
    finally:
        daemon.stop()
    daemon = Daemon(tmp_path, database_url, extra_args=("--config", str(config_file))).start()
    try:
        spare = daemon.client.get("/v1/subnets/spare").body
        assert (spare["origin"], spare["cidrBlock"], spare["provider"]) == ("api", "203.0.113.0/25", None)
        assert "config: subnet spare exists with origin api; the declaration in" in daemon.log()
        write(config_file, {"subnets": []})
        reload_and_wait(daemon)
        assert names(daemon, "subnets") == ["manual", "spare"]
    finally:
        daemon.stop()


def test_a_bad_file_on_sighup_changes_nothing(configured: Daemon, config_file: Path) -> None:
    config_file.write_text("subnets:\n  - name: macvlan-net\n    cidrBlock: 192.0.2.0/33\n")
    log = reload_and_wait(configured)
    assert (
        f"config {config_file} not applied: config: {config_file}: subnets[0]: cidrBlock: '192.0.2.0/33' has an invalid prefix length"
        in log
    )
    assert names(configured, "subnets") == ["macvlan-net", "spare"]
    assert configured.process is not None and configured.process.poll() is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bad_file_at_start_stops_the_daemon_with_one_line(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("subnets: [\n")
    result = serve_refused(str(tmp_path / "s.sock"), database_url, "--config", str(path))
    assert result.returncode == 2
    assert (
        result.stderr.splitlines()[-1]
        == f"ipamd: config: {path}: not valid YAML at line 2, column 1: expected the node content, but found '<stream end>'"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sighup_without_config_keeps_serving(daemon: Daemon) -> None:
    start = len(daemon.log())
    reload(daemon)
    wait_for(lambda: log_has(daemon, "SIGHUP: no --config file; nothing to reload", after=start), what="SIGHUP logged")
    assert daemon.client.get("/healthz").status == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_files_cluster_name_is_the_daemons_unless_the_flag_disagrees(
    tmp_path: Path, database_url: str, config_file: Path
) -> None:
    write(config_file, {**CONFIG, "clusterName": "prod-east"})
    daemon = Daemon(tmp_path, database_url, extra_args=("--config", str(config_file))).start()
    try:
        made = daemon.client.post(
            "/v1/allocations", {"subnet": "macvlan-net", "owner": {"namespace": "lab", "pod": "probe"}}
        )
        assert (made.status, made.body["cluster"]) == (201, "prod-east")
        # The name is every attachment's: a file that changes it is not applied while running.
        write(config_file, {**CONFIG, "clusterName": "prod-west", "subnets": CONFIG["subnets"][:1]})
        log = reload_and_wait(daemon)
        assert (
            "clusterName prod-west, but this daemon serves cluster prod-east; a cluster name changes only with a restart"
            in log
        )
        assert names(daemon, "subnets") == ["macvlan-net", "spare"]
    finally:
        daemon.stop()

    write(config_file, {**CONFIG, "clusterName": "prod-east"})
    result = serve_refused(
        str(tmp_path / "s.sock"), database_url, "--config", str(config_file), "--cluster-name", "prod-west"
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"ipamd: cluster-name: the flag says prod-west but {config_file} says clusterName prod-east: give the name in one place"
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_placement_rules_are_compared_and_a_rule_left_out_is_dropped(
    tmp_path: Path, database_url: str, config_file: Path
) -> None:
    bound = {**CONFIG, "subnets": [{**CONFIG["subnets"][0], "namespaces": ["team-a"], "clusters": ["default"]}]}
    write(config_file, bound)
    daemon = Daemon(tmp_path, database_url, extra_args=("--config", str(config_file))).start()
    try:
        subnet = daemon.client.get("/v1/subnets/macvlan-net").body
        assert (subnet["namespaces"], subnet["clusters"]) == (["team-a"], ["default"])
        # The file as the daemon holds it: nothing to do.
        assert "applied: 0 change(s), 0 kept, 0 error(s)" in reload_and_wait(daemon)
        write(config_file, {**CONFIG, "subnets": CONFIG["subnets"][:1]})
        log = reload_and_wait(daemon)
        assert "config: subnet macvlan-net updated" in log
        assert "applied: 1 change(s), 0 kept, 0 error(s)" in log
        assert not {"namespaces", "clusters"} & set(daemon.client.get("/v1/subnets/macvlan-net").body)
    finally:
        daemon.stop()
