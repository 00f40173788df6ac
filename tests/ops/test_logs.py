"""Allocation and release log lines carry the attachment identity and addresses, in both formats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

ADD = {
    "containerId": "0123456789abcdef",
    "ifName": "net1",
    "network": "macvlan",
    "podNamespace": "lab",
    "podName": "router-a",
    "ipam": {"provider": "macvlan.default"},
}


def run_daemon(tmp_path: Path, log_format: str) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path, f"sqlite:///{tmp_path / 'ipamd.db'}", extra_args=("--log-format", log_format)).start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def text_daemon(tmp_path: Path) -> Iterator[Daemon]:
    yield from run_daemon(tmp_path, "text")


@pytest.fixture
def json_daemon(tmp_path: Path) -> Iterator[Daemon]:
    yield from run_daemon(tmp_path, "json")


def allocate_and_release(daemon: Daemon) -> list[str]:
    """Returns the log lines once the release is logged."""
    client = daemon.client
    assert (
        client.post(
            "/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.0/24,2001:db8:1::/64", "provider": "macvlan.default"}
        ).status
        == 201
    )
    assert client.post("/v1/cni/add", ADD).status == 200
    assert client.post("/v1/cni/del", ADD).body == {"released": 1}
    wait_for(lambda: "released id=" in daemon.log(), what="release line")
    return daemon.log().splitlines()


def test_json_lines_carry_identity_and_addresses_as_fields(json_daemon: Daemon) -> None:
    lines = allocate_and_release(json_daemon)
    events = {entry.get("event"): entry for entry in map(json.loads, lines) if entry.get("event")}
    expected = {
        "allocationId": 1,
        "subnet": "net1",
        "network": "macvlan.default",
        "namespace": "lab",
        "pod": "router-a",
        "interface": "net1",
        "containerId": "0123456789abcdef",
        "addresses": ["192.0.2.2", "2001:db8:1::2"],
    }
    assert {key: events["allocated"][key] for key in expected} == expected
    assert {key: events["released"][key] for key in expected} == expected
    assert events["released"]["reason"] == "cni del"
    assert (events["allocated"]["level"], events["allocated"]["logger"]) == ("info", "ipamd.service")


def test_text_lines_carry_identity_and_addresses(text_daemon: Daemon) -> None:
    lines = allocate_and_release(text_daemon)
    [allocated] = [line for line in lines if " allocated id=" in line]
    assert (
        "owner=lab/router-a net1 (macvlan.default) addresses=192.0.2.2,2001:db8:1::2 subnet=net1 container=0123456789abcdef"
        in allocated
    )
    [released] = [line for line in lines if " released id=" in line]
    assert (
        "owner=lab/router-a net1 (macvlan.default) addresses=192.0.2.2,2001:db8:1::2 subnet=net1 reason=cni del"
        in released
    )
