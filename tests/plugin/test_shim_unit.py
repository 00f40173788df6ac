"""Unit tests of the CNI shim (plugin/ipamd), run as a process against a fake daemon.

What is checked: how the shim reads its inputs (stdin config, CNI_* environment,
CNI_ARGS), the one request it sends per verb (docs/api.md "CNI endpoints"), how it shapes
results for each cniVersion, and which CNI error code every failure turns into.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import re
import socket
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shim_harness import SHIM, SHIM_PYTHON, FakeDaemon, run_shim

VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]

ADD_ANSWER = {
    "allocationId": 17,
    "subnet": "net1",
    "ips": [
        {"address": "192.0.2.11/24", "gateway": "192.0.2.1", "family": 4},
        {"address": "2001:db8:1::11/64", "gateway": "2001:db8:1::1", "family": 6},
    ],
    "routes": [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}],
    "dns": {"nameservers": ["192.0.2.53"]},
    "mac": None,
}


def netconf(socket_path: str, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    """A macvlan network config whose ipam section points at socket_path."""
    ipam = {"type": "ipamd", "server_socket": socket_path, "provider": "macvlan.default"}
    ipam.update(extra.pop("ipam_extra", {}))
    config: dict[str, Any] = {
        "cniVersion": version,
        "name": "macvlan-net",
        "type": "macvlan",
        "master": "eth0",
        "ipam": ipam,
    }
    config.update(extra)
    return config


def assert_cni_error(run: Any, code: int, version: str = "1.0.0") -> dict[str, Any]:
    """The run failed the CNI way: non-zero exit, exactly one error object on stdout."""
    assert run.returncode != 0, run
    error = run.output
    assert set(error) == {"cniVersion", "code", "msg", "details"}, error
    assert error["code"] == code, (error, run.stderr)
    assert error["cniVersion"] == version
    assert isinstance(error["msg"], str) and error["msg"]
    assert "Traceback" not in run.stdout
    return dict(error)


# --------------------------------------------------------------------------- VERSION


@pytest.mark.parametrize("version", VERSIONS + ["0.2.0"])
def test_version_echoes_requested_version_and_lists_supported(version: str) -> None:
    run = run_shim("VERSION", {"cniVersion": version}, container_id=None, ifname=None)
    assert run.returncode == 0
    assert run.output == {"cniVersion": version, "supportedVersions": VERSIONS}


def test_version_with_empty_stdin_answers_latest() -> None:
    run = run_shim("VERSION", None, container_id=None, ifname=None, netns=None)
    assert run.returncode == 0
    assert run.output == {"cniVersion": "1.1.0", "supportedVersions": VERSIONS}


def test_shebang_runs_the_file_directly() -> None:
    assert os.access(SHIM, os.X_OK)
    assert SHIM.read_text().splitlines()[0] == "#!/usr/bin/env -S python3 -I -S"
    run = run_shim("VERSION", {"cniVersion": "1.1.0"}, argv=[str(SHIM)])
    assert run.returncode == 0, run.stderr
    assert run.output["supportedVersions"] == VERSIONS


# --------------------------------------------------------------------------- ADD


def test_add_sends_identity_static_ips_and_mac(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    config = netconf(
        fake_ipamd.socket_path,
        runtimeConfig={"ips": ["192.0.2.20/24", "2001:db8:1::20/64"], "mac": "02:00:00:00:00:aa"},
        args={"cni": {"ips": ["192.0.2.21", "192.0.2.20"]}},
    )
    run = run_shim(
        "ADD",
        config,
        container_id="3f6940ab5ab4",
        ifname="net1",
        netns="/var/run/netns/cni-1",
        cni_args=(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;"
            "K8S_POD_INFRA_CONTAINER_ID=3f6940ab5ab4;K8S_POD_UID=7d6e-11;"
            "IP=192.0.2.22, 192.0.2.21/24,2001:DB8:1::20;MAC=02:00:00:00:00:bb"
        ),
    )
    assert run.returncode == 0, run
    request = fake_ipamd.only_request
    assert (request.method, request.path) == ("POST", "/v1/cni/add")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["connection"] == "close"
    assert int(request.headers["content-length"]) == len(request.raw_body)
    assert request.body == {
        "containerId": "3f6940ab5ab4",
        "ifName": "net1",
        "netns": "/var/run/netns/cni-1",
        "network": "macvlan-net",
        "podNamespace": "default",
        "podName": "web-0",
        "podUid": "7d6e-11",
        "ipam": config["ipam"],
        # runtimeConfig.ips, then args.cni.ips, then CNI_ARGS IP=; an address already
        # asked for (with or without prefix length) is not repeated
        "ips": ["192.0.2.20/24", "2001:db8:1::20/64", "192.0.2.21", "192.0.2.22"],
        "mac": "02:00:00:00:00:aa",  # runtimeConfig wins over CNI_ARGS
    }


def test_add_without_pod_args_sends_nulls_and_no_statics(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    run = run_shim("ADD", netconf(fake_ipamd.socket_path), netns=None)
    assert run.returncode == 0, run
    body = fake_ipamd.only_request.body
    assert "netns" not in body
    assert body["podNamespace"] is None and body["podName"] is None and body["podUid"] is None
    assert body["ips"] == []
    assert body["mac"] is None


def test_add_takes_mac_from_cni_args_without_runtime_config(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    run = run_shim(
        "ADD", netconf(fake_ipamd.socket_path), cni_args="IgnoreUnknown=1;MAC=02:00:00:00:00:cc;"
    )
    assert run.returncode == 0, run
    assert fake_ipamd.only_request.body["mac"] == "02:00:00:00:00:cc"
    assert fake_ipamd.only_request.body["ips"] == []


def test_add_passes_inline_ipam_sections_through_unchanged(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    whereabouts = {
        "type": "ipamd",
        "server_socket": fake_ipamd.socket_path,
        "range": "192.0.2.0/24",
        "range_start": "192.0.2.10",
        "exclude": ["192.0.2.64/28"],
        "network_name": "tenant-a",
        "routes": [{"dst": "198.51.100.0/24"}],
        "timeout": 12.5,
    }
    config = netconf(fake_ipamd.socket_path)
    config["ipam"] = whereabouts
    run = run_shim("ADD", config)
    assert run.returncode == 0, run
    assert fake_ipamd.only_request.body["ipam"] == whereabouts


def test_add_ignores_prev_result_of_a_chain(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    config = netconf(
        fake_ipamd.socket_path,
        prevResult={"cniVersion": "1.0.0", "interfaces": [{"name": "net1"}], "ips": []},
    )
    run = run_shim("ADD", config)
    assert run.returncode == 0, run
    assert "prevResult" not in fake_ipamd.only_request.body
    assert "interfaces" not in run.output


@pytest.mark.parametrize("version", VERSIONS)
def test_add_result_has_the_shape_of_the_requested_version(
    fake_ipamd: FakeDaemon, version: str
) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    run = run_shim("ADD", netconf(fake_ipamd.socket_path, version))
    assert run.returncode == 0, run
    result = run.output
    assert set(result) == {"cniVersion", "ips", "routes", "dns"}  # IPAM: no interfaces
    assert result["cniVersion"] == version
    if version.startswith("0."):
        assert result["ips"] == [
            {"version": "4", "address": "192.0.2.11/24", "gateway": "192.0.2.1"},
            {"version": "6", "address": "2001:db8:1::11/64", "gateway": "2001:db8:1::1"},
        ]
    else:
        assert result["ips"] == [
            {"address": "192.0.2.11/24", "gateway": "192.0.2.1"},
            {"address": "2001:db8:1::11/64", "gateway": "2001:db8:1::1"},
        ]
    assert result["routes"] == [{"dst": "0.0.0.0/0", "gw": "192.0.2.1"}]
    assert result["dns"] == {"nameservers": ["192.0.2.53"]}


def test_add_result_drops_empty_gateway_and_keeps_1_1_route_attributes(
    fake_ipamd: FakeDaemon,
) -> None:
    answer = {
        "ips": [{"address": "198.51.100.7/24", "gateway": None}],  # no family: derived
        "routes": [{"dst": "203.0.113.0/24", "gw": None, "mtu": 1400}],
        "dns": {},
    }
    fake_ipamd.answer("POST", "/v1/cni/add", 200, answer)
    newest = run_shim("ADD", netconf(fake_ipamd.socket_path, "1.1.0"))
    assert newest.output["ips"] == [{"address": "198.51.100.7/24"}]
    assert newest.output["routes"] == [{"dst": "203.0.113.0/24", "mtu": 1400}]
    assert newest.output["dns"] == {}
    oldest = run_shim("ADD", netconf(fake_ipamd.socket_path, "0.3.0"))
    assert oldest.output["ips"] == [{"version": "4", "address": "198.51.100.7/24"}]
    assert oldest.output["routes"] == [{"dst": "203.0.113.0/24"}]


@pytest.mark.parametrize(
    "framing, interim", [("chunked", False), ("eof", False), ("length", True)]
)
def test_add_reads_chunked_close_delimited_and_interim_answers(
    fake_ipamd: FakeDaemon, framing: str, interim: bool
) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER, framing=framing, interim=interim)
    run = run_shim("ADD", netconf(fake_ipamd.socket_path))
    assert run.returncode == 0, run
    assert [ip["address"] for ip in run.output["ips"]] == ["192.0.2.11/24", "2001:db8:1::11/64"]


# --------------------------------------------------------------------------- DEL


def test_del_sends_identity_only_and_prints_nothing(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/del", 200, {"released": 0})  # unknown attachment: fine
    config = netconf(
        fake_ipamd.socket_path,
        runtimeConfig={"ips": ["192.0.2.20/24"]},
        prevResult={"cniVersion": "1.0.0", "ips": [{"address": "192.0.2.20/24"}]},
    )
    run = run_shim(
        "DEL", config, netns=None, cni_args="K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=p;IP=192.0.2.9"
    )
    assert run.returncode == 0, run
    assert run.stdout == ""
    request = fake_ipamd.only_request
    assert (request.method, request.path) == ("POST", "/v1/cni/del")
    assert request.body == {
        "containerId": "ctr1",
        "ifName": "net1",
        "network": "macvlan-net",
        "podNamespace": "ns1",
        "podName": "p",
        "podUid": None,
        "ipam": config["ipam"],
    }


def test_del_fails_with_try_again_later_when_daemon_is_down(sock_dir: Path) -> None:
    run = run_shim("DEL", netconf(str(sock_dir / "absent.sock")))
    error = assert_cni_error(run, 11)
    assert "absent.sock" in error["details"]


# --------------------------------------------------------------------------- CHECK


def test_check_sends_identity_and_prev_result(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/check", 200, {"ips": ADD_ANSWER["ips"]})
    prev = {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "net1", "sandbox": "/var/run/netns/test"}],
        "ips": [{"address": "192.0.2.11/24", "gateway": "192.0.2.1", "interface": 0}],
    }
    run = run_shim(
        "CHECK", netconf(fake_ipamd.socket_path, prevResult=prev), cni_args="K8S_POD_NAME=web-0"
    )
    assert run.returncode == 0, run
    assert run.stdout == ""
    request = fake_ipamd.only_request
    assert (request.method, request.path) == ("POST", "/v1/cni/check")
    assert request.body["prevResult"] == prev
    assert request.body["containerId"] == "ctr1" and request.body["ifName"] == "net1"
    assert request.body["podName"] == "web-0" and request.body["podNamespace"] is None
    assert "ips" not in request.body and "mac" not in request.body


def test_check_reports_the_daemons_verdict(fake_ipamd: FakeDaemon) -> None:
    message = "192.0.2.11 is not held by this attachment"
    fake_ipamd.answer(
        "POST",
        "/v1/cni/check",
        404,
        {"error": {"code": "not_found", "message": message, "cniCode": 100}},
    )
    run = run_shim("CHECK", netconf(fake_ipamd.socket_path, prevResult={"ips": []}))
    error = assert_cni_error(run, 100)
    assert error["msg"] == message
    assert "404" in error["details"] and "not_found" in error["details"]


def test_check_needs_prev_result(fake_ipamd: FakeDaemon) -> None:
    assert_cni_error(run_shim("CHECK", netconf(fake_ipamd.socket_path)), 7)
    assert fake_ipamd.requests == []


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1"])
def test_check_is_refused_before_0_4_0(fake_ipamd: FakeDaemon, version: str) -> None:
    run = run_shim("CHECK", netconf(fake_ipamd.socket_path, version, prevResult={"ips": []}))
    assert_cni_error(run, 1, version)
    assert fake_ipamd.requests == []


# --------------------------------------------------------------------------- GC


def test_gc_sends_valid_attachments(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/gc", 200, {"released": 2})
    config = netconf(
        fake_ipamd.socket_path,
        "1.1.0",
        **{
            "cni.dev/valid-attachments": [
                {"containerID": "3f6940ab", "ifname": "eth0"},
                {"containerID": "3f6940ab", "ifname": "net1"},
            ]
        },
    )
    # GC concerns the whole network: no container or interface in the environment.
    run = run_shim("GC", config, container_id=None, ifname=None, netns=None)
    assert run.returncode == 0, run
    assert run.stdout == ""
    request = fake_ipamd.only_request
    assert (request.method, request.path) == ("POST", "/v1/cni/gc")
    assert request.body == {
        "network": "macvlan-net",
        "ipam": config["ipam"],
        "validAttachments": [
            {"containerId": "3f6940ab", "ifName": "eth0"},
            {"containerId": "3f6940ab", "ifName": "net1"},
        ],
    }


def test_gc_with_empty_list_is_sent(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/gc", 200, {"released": 0})
    config = netconf(fake_ipamd.socket_path, "1.1.0", **{"cni.dev/valid-attachments": []})
    assert run_shim("GC", config, container_id=None, ifname=None).returncode == 0
    assert fake_ipamd.only_request.body["validAttachments"] == []


@pytest.mark.parametrize(
    "attachments",
    [None, "ctr1", [{"containerID": "a"}], [{"containerID": 1, "ifname": "eth0"}]],
    ids=["absent", "not-a-list", "no-ifname", "bad-type"],
)
def test_gc_refuses_missing_or_malformed_attachments(
    fake_ipamd: FakeDaemon, attachments: Any
) -> None:
    config = netconf(fake_ipamd.socket_path, "1.1.0")
    if attachments is not None:
        config["cni.dev/valid-attachments"] = attachments
    assert_cni_error(run_shim("GC", config, container_id=None, ifname=None), 7, "1.1.0")
    assert fake_ipamd.requests == []  # never "release everything" on a guess


def test_gc_is_refused_before_1_1_0(fake_ipamd: FakeDaemon) -> None:
    config = netconf(fake_ipamd.socket_path, "1.0.0", **{"cni.dev/valid-attachments": []})
    assert_cni_error(run_shim("GC", config), 1)
    assert fake_ipamd.requests == []


# --------------------------------------------------------------------------- STATUS


def test_status_ready_exits_zero(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("GET", "/v1/cni/status", 200, {"ready": True})
    config = netconf(fake_ipamd.socket_path, "1.1.0")
    run = run_shim("STATUS", config, container_id=None, ifname=None)
    assert run.returncode == 0, run
    assert run.stdout == ""
    request = fake_ipamd.only_request
    assert (request.method, request.path, request.raw_body) == ("GET", "/v1/cni/status", b"")
    assert "content-length" not in request.headers


def test_status_unavailable_is_code_50(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer(
        "GET",
        "/v1/cni/status",
        503,
        {"error": {"code": "unavailable", "message": "database down", "cniCode": 11}},
    )
    run = run_shim("STATUS", netconf(fake_ipamd.socket_path, "1.1.0"), container_id=None)
    error = assert_cni_error(run, 50, "1.1.0")
    assert "database down" in error["details"]


def test_status_with_daemon_down_is_code_50(sock_dir: Path) -> None:
    run = run_shim("STATUS", netconf(str(sock_dir / "absent.sock"), "1.1.0"))
    assert_cni_error(run, 50, "1.1.0")


def test_status_not_ready_body_is_code_50(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("GET", "/v1/cni/status", 200, {"ready": False})
    assert_cni_error(run_shim("STATUS", netconf(fake_ipamd.socket_path, "1.1.0")), 50, "1.1.0")


# --------------------------------------------------------------------------- local errors


@pytest.mark.parametrize(
    "stdin",
    [b'{"cniVersion": "1.0.0",', b"", b"[1, 2]", b"NaN", b'{"a": 1} trailing', b"\xff\xfe"],
    ids=["truncated", "empty", "array", "nan", "trailing", "not-utf8"],
)
def test_undecodable_stdin_is_code_6(stdin: bytes) -> None:
    run = run_shim("ADD", stdin)
    assert_cni_error(run, 6, "1.1.0")


def test_missing_command_is_code_4(fake_ipamd: FakeDaemon) -> None:
    assert_cni_error(run_shim(None, netconf(fake_ipamd.socket_path)), 4)


def test_unknown_command_is_code_4(fake_ipamd: FakeDaemon) -> None:
    assert_cni_error(run_shim("UPDATE", netconf(fake_ipamd.socket_path)), 4)


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_missing_container_id_is_code_4(fake_ipamd: FakeDaemon, command: str) -> None:
    config = netconf(fake_ipamd.socket_path, prevResult={"ips": []})
    assert_cni_error(run_shim(command, config, container_id=None), 4)
    assert_cni_error(run_shim(command, config, container_id=""), 4)
    assert fake_ipamd.requests == []


@pytest.mark.parametrize("command", ["ADD", "DEL", "CHECK"])
def test_missing_ifname_is_code_4(fake_ipamd: FakeDaemon, command: str) -> None:
    config = netconf(fake_ipamd.socket_path, prevResult={"ips": []})
    assert_cni_error(run_shim(command, config, ifname=None), 4)
    assert fake_ipamd.requests == []


@pytest.mark.parametrize(
    "variable, value",
    [
        ("container_id", "-starts-with-dash"),
        ("container_id", "has/slash"),
        ("ifname", "a-name-longer-than-15"),
        ("ifname", "bad/name"),
        ("ifname", "with space"),
        ("cni_args", "IgnoreUnknown=1;K8S_POD_NAME"),
    ],
)
def test_invalid_environment_is_code_4(fake_ipamd: FakeDaemon, variable: str, value: str) -> None:
    overrides: dict[str, Any] = {variable: value}
    run = run_shim("ADD", netconf(fake_ipamd.socket_path), **overrides)
    assert_cni_error(run, 4)
    assert fake_ipamd.requests == []


@pytest.mark.parametrize("version", ["0.2.0", "0.1.0", "1.2.0", "2.0.0", "1.0"])
def test_unsupported_version_is_code_1(fake_ipamd: FakeDaemon, version: str) -> None:
    run = run_shim("ADD", netconf(fake_ipamd.socket_path, version))
    assert_cni_error(run, 1, version)
    assert fake_ipamd.requests == []


def test_missing_version_is_code_1(fake_ipamd: FakeDaemon) -> None:
    config = netconf(fake_ipamd.socket_path)
    del config["cniVersion"]
    assert_cni_error(run_shim("ADD", config), 1, "1.1.0")


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c.pop("ipam"),
        lambda c: c.__setitem__("ipam", "ipamd"),
        lambda c: c.__setitem__("ipam", None),
        lambda c: c["ipam"].__setitem__("timeout", 0),
        lambda c: c["ipam"].__setitem__("timeout", -1),
        lambda c: c["ipam"].__setitem__("timeout", "5"),
        lambda c: c["ipam"].__setitem__("timeout", True),
        lambda c: c["ipam"].__setitem__("timeout", 1e300),
        lambda c: c["ipam"].__setitem__("server_socket", ""),
        lambda c: c["ipam"].__setitem__("server_socket", "/tmp/" + "x" * 120),
        lambda c: c.pop("name"),
        lambda c: c.__setitem__("runtimeConfig", {"ips": "192.0.2.1"}),
        lambda c: c.__setitem__("args", {"cni": {"ips": [1]}}),
        lambda c: c.__setitem__("runtimeConfig", {"mac": 5}),
    ],
    ids=[
        "no-ipam",
        "ipam-string",
        "ipam-null",
        "timeout-zero",
        "timeout-negative",
        "timeout-string",
        "timeout-bool",
        "timeout-huge",
        "socket-empty",
        "socket-too-long",
        "no-name",
        "runtime-ips-not-list",
        "args-ips-not-strings",
        "mac-not-string",
    ],
)
def test_invalid_config_is_code_7(fake_ipamd: FakeDaemon, mutate: Any) -> None:
    config = netconf(fake_ipamd.socket_path)
    mutate(config)
    assert_cni_error(run_shim("ADD", config), 7)
    assert fake_ipamd.requests == []


# --------------------------------------------------------------------------- daemon errors


def test_missing_socket_is_code_11(sock_dir: Path) -> None:
    run = run_shim("ADD", netconf(str(sock_dir / "absent.sock")))
    error = assert_cni_error(run, 11)
    assert "No such file" in error["details"]


def test_refused_connection_is_code_11(sock_dir: Path) -> None:
    # A socket file left behind by a daemon that is gone: connect() is refused.
    path = str(sock_dir / "stale.sock")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    error = assert_cni_error(run_shim("ADD", netconf(path)), 11)
    assert "refused" in error["details"]


def test_daemon_that_never_answers_is_code_11_within_the_timeout(silent_socket: str) -> None:
    config = netconf(silent_socket, ipam_extra={"timeout": 0.5})
    started = time.monotonic()
    run = run_shim("ADD", config)
    elapsed = time.monotonic() - started
    error = assert_cni_error(run, 11)
    assert "0.5" in error["details"]
    assert 0.5 <= elapsed < 10


def test_daemon_hanging_up_is_code_11(fake_ipamd: FakeDaemon) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, hang_up=True)
    assert_cni_error(run_shim("ADD", netconf(fake_ipamd.socket_path)), 11)


@pytest.mark.parametrize(
    "status, code_name, cni_code",
    [
        (409, "address_conflict", 101),
        (409, "exhausted", 102),
        (400, "invalid_input", 7),
        (404, "not_found", 100),
        (503, "unavailable", 11),
        (500, "internal", 999),
    ],
)
def test_daemon_error_uses_its_cni_code_and_message(
    fake_ipamd: FakeDaemon, status: int, code_name: str, cni_code: int
) -> None:
    message = "192.0.2.20 in subnet net1 is held by default/web-0 (net1)"
    body = {"error": {"code": code_name, "message": message, "cniCode": cni_code}}
    fake_ipamd.answer("POST", "/v1/cni/add", status, body)
    error = assert_cni_error(run_shim("ADD", netconf(fake_ipamd.socket_path)), cni_code)
    assert error["msg"] == message
    assert str(status) in error["details"] and code_name in error["details"]


def test_daemon_error_in_a_chunked_answer(fake_ipamd: FakeDaemon) -> None:
    body = {"error": {"code": "exhausted", "message": "no free address in net1", "cniCode": 102}}
    fake_ipamd.answer("POST", "/v1/cni/add", 409, body, framing="chunked")
    error = assert_cni_error(run_shim("ADD", netconf(fake_ipamd.socket_path)), 102)
    assert error["msg"] == "no free address in net1"


@pytest.mark.parametrize(
    "status, body, code",
    [
        (500, None, 11),
        (502, b"<html>bad gateway</html>", 11),
        (503, {"error": {"code": "unavailable", "message": "db"}}, 11),
        (400, {"error": {"code": "invalid_input", "message": "ips[0] is not an address"}}, 7),
        (404, b"404: Not Found", 100),
    ],
    ids=["500-empty", "502-html", "503-no-cnicode", "400-no-cnicode", "404-text"],
)
def test_daemon_error_without_cni_code_falls_back_on_http_status(
    fake_ipamd: FakeDaemon, status: int, body: Any, code: int
) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", status, body)
    assert_cni_error(run_shim("ADD", netconf(fake_ipamd.socket_path)), code)


@pytest.mark.parametrize("body", [b"not json", {"allocationId": 3}, {"ips": [{"gw": "x"}]}])
def test_unusable_success_answer_is_an_internal_error(fake_ipamd: FakeDaemon, body: Any) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, body)
    assert_cni_error(run_shim("ADD", netconf(fake_ipamd.socket_path)), 999)


# --------------------------------------------------------------------------- diagnostics


def test_log_file_gets_successes_and_failures(fake_ipamd: FakeDaemon, sock_dir: Path) -> None:
    log_file = sock_dir / "shim.log"
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    ok = run_shim("ADD", netconf(fake_ipamd.socket_path, ipam_extra={"log_file": str(log_file)}))
    assert ok.returncode == 0 and ok.stderr == ""  # quiet on success
    down = netconf(str(sock_dir / "absent.sock"), ipam_extra={"log_file": str(log_file)})
    bad = run_shim("ADD", down)
    assert_cni_error(bad, 11)
    assert "ADD failed with code 11" in bad.stderr
    # Failures found before any request is made are logged too.
    old = netconf(fake_ipamd.socket_path, "0.2.0", ipam_extra={"log_file": str(log_file)})
    assert_cni_error(run_shim("ADD", old), 1, "0.2.0")
    added, failed, refused = log_file.read_text().splitlines()
    assert "ADD macvlan-net ctr1/net1 -> " in added and "2001:db8:1::11/64" in added
    assert "ADD failed with code 11: ipamd is not reachable" in failed
    assert "ADD failed with code 1: unsupported cniVersion '0.2.0'" in refused


def test_unwritable_log_file_does_not_fail_the_add(fake_ipamd: FakeDaemon, sock_dir: Path) -> None:
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    unwritable = str(sock_dir / "no" / "such" / "dir.log")
    config = netconf(fake_ipamd.socket_path, ipam_extra={"log_file": unwritable})
    run = run_shim("ADD", config)
    assert run.returncode == 0, run
    assert "cannot append" in run.stderr


def test_hot_path_imports_no_heavy_modules(fake_ipamd: FakeDaemon) -> None:
    """The start-up budget (docs/shim.md): no json, socket, re, os or http.client."""
    fake_ipamd.answer("POST", "/v1/cni/add", 200, ADD_ANSWER)
    run = run_shim(
        "ADD",
        netconf(fake_ipamd.socket_path),
        cni_args="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0",
        argv=[SHIM_PYTHON, "-I", "-S", "-X", "importtime", str(SHIM)],
    )
    assert run.returncode == 0, run.stderr
    imported = set(re.findall(r"^import time:.*\|\s*(\S+)$", run.stderr, re.MULTILINE))
    assert {"_socket", "_json"} <= imported
    heavy = {"json", "json.decoder", "socket", "re", "os", "http.client", "selectors", "enum"}
    assert not imported & heavy, imported & heavy


# --------------------------------------------------------------------------- JSON codec


def _load_shim() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("ipamd_cni_shim", str(SHIM))
    spec = importlib.util.spec_from_loader("ipamd_cni_shim", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


SHIM_MODULE = _load_shim()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_hand_written_json_codec_agrees_with_the_json_module(value: Any) -> None:
    encoded = SHIM_MODULE.encode_json(value)
    assert json.loads(encoded) == value
    assert SHIM_MODULE.decode_json(json.dumps(value, indent=1)) == value
