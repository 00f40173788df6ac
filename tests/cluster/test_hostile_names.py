"""Identity names at the edge (issue 12): a running daemon, its real socket and the real plugin.

Names the kubelet or the kernel would never produce (control characters, a 64-character
namespace, a 254-character pod name, a 16-byte interface name) are refused with the field
named, by the REST API and the CNI path alike, and change nothing in the database. Rows
written before the rules still read back. And whatever a request carries in any identity
field, the text log holds only lines the daemon wrote (hypothesis), the JSON log only JSON.
"""

from __future__ import annotations

import json
import re
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipamd.logs import TRACE_PREFIX
from tests.cluster.clusterkit import socket_dir, sqlite_snapshot
from tests.plugin.shim_harness import run_shim
from tests.support.client import UnixClient
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

SUBNET = {"name": "names", "cidrBlock": "198.18.0.0/16", "provider": "names.ns"}
OWNER = {"namespace": "lab", "pod": "router-a", "interface": "eth1"}


class Node:
    """A daemon on SQLite, with its log and database at hand."""

    def __init__(self, daemon: Daemon, database: Path) -> None:
        self.daemon = daemon
        self.client = UnixClient(daemon.socket)
        self.database = database

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        return sqlite_snapshot(self.database)

    def cni(self, command: str, *, name: str = "names", env: dict[str, str] | None = None, **ipam: Any) -> Any:
        """Runs the plugin binary against this daemon; ``env`` overrides the CNI_* variables."""
        config = {
            "cniVersion": "1.0.0",
            "name": name,
            "ipam": {"type": "ipamd", "server_socket": self.daemon.socket, "provider": "names.ns", **ipam},
        }
        environment = {
            "container_id": "c1",
            "ifname": "net1",
            "cni_args": "IgnoreUnknown=1;K8S_POD_NAMESPACE=lab;K8S_POD_NAME=router-b",
        }
        environment.update(env or {})
        return run_shim(command, config, **environment)


def start_node(directory: Path, sockets: Path, *extra: str) -> Node:
    database = directory / "ipamd.db"
    daemon = Daemon(sockets, f"sqlite:///{database}", extra_args=extra).start()
    node = Node(daemon, database)
    assert node.client.post("/v1/subnets", SUBNET).status == 201
    return node


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    with socket_dir() as sockets:
        node = start_node(tmp_path_factory.mktemp("names"), sockets)
        try:
            yield node
        finally:
            node.daemon.stop()


# ----------------------------------------------------------------------------- REST


@pytest.mark.parametrize(
    "field, value, says",
    [
        pytest.param(
            "namespace",
            "lab\n2026-11-28 INFO ipamd.service forged",
            "contains the control character '\\n' at offset 3",
            id="namespace-newline",
        ),
        pytest.param("namespace", "lab\u0000x", "strings may not contain NUL characters", id="namespace-nul"),
        pytest.param("namespace", "n" * 64, "is 64 characters long; at most 63", id="namespace-64"),
        pytest.param("namespace", "Lab", "is not a DNS-1123 label", id="namespace-uppercase"),
        pytest.param(
            "pod",
            "evil\n2026-11-28 INFO ipamd.service fake line",
            "contains the control character '\\n' at offset 4",
            id="pod-newline",
        ),
        pytest.param("pod", "evil\u0000", "strings may not contain NUL characters", id="pod-nul"),
        pytest.param("pod", "p" * 254, "is 254 characters long; at most 253", id="pod-254"),
        pytest.param("pod", "web_0", "is not a DNS-1123 subdomain", id="pod-underscore"),
        pytest.param("pod", "evil\x1b[2J", "contains the control character '\\x1b' at offset 4", id="pod-escape"),
        pytest.param(
            "interface", "eth" + "0" * 13, "is 16 bytes long; an interface name has at most 15", id="interface-16"
        ),
        pytest.param("interface", "ethé" + "0" * 11, "is 16 bytes long", id="interface-16-bytes-15-chars"),
        pytest.param("interface", "eth\n1", "contains the control character '\\n' at offset 3", id="interface-newline"),
        pytest.param("interface", "a/b", "is not an interface name", id="interface-slash"),
        pytest.param("interface", "..", "is not an interface name", id="interface-dotdot"),
    ],
)
def test_rest_refuses_bad_owner_names_naming_the_field_and_changes_nothing(
    node: Node, field: str, value: str, says: str
):
    before = node.snapshot()
    reply = node.client.post("/v1/allocations", {"subnet": "names", "owner": {**OWNER, field: value}})
    assert reply.status == 400, reply.body
    error = reply.body["error"]
    assert (error["code"], error["cniCode"], error["details"]) == ("invalid_input", 7, {"field": f"owner.{field}"})
    assert error["message"].startswith(f"owner.{field}: ") and says in error["message"], error["message"]
    assert node.snapshot() == before


def test_rest_accepts_names_at_their_limits(node: Node):
    owner = {"namespace": "n" * 63, "pod": ".".join(["p" * 63] * 4)[:253].rstrip("."), "interface": "e" * 15}
    reply = node.client.post("/v1/allocations", {"subnet": "names", "owner": owner})
    assert reply.status == 201, reply.body
    assert node.client.delete(f"/v1/allocations/{reply.body['id']}").status == 200


# ----------------------------------------------------------------------------- CNI, through the plugin binary


@pytest.mark.parametrize(
    "env, code, says",
    [
        # SPEC.md: an invalid CNI_* variable is code 4, naming the variable.
        pytest.param(
            {"ifname": "net" + "1" * 13}, 4, "CNI_IFNAME: 'net1111111111111' is 16 bytes long", id="ifname-16"
        ),
        pytest.param(
            {"ifname": "net\n1"}, 4, "CNI_IFNAME: 'net\\n1' contains the control character", id="ifname-newline"
        ),
        pytest.param(
            {"container_id": "c1\nforged"},
            4,
            "CNI_CONTAINERID: 'c1\\nforged' contains the control character",
            id="container-newline",
        ),
        pytest.param({"container_id": "c" * 254}, 4, "CNI_CONTAINERID: ", id="container-254"),
        pytest.param({"netns": "/var/run/netns/x\n"}, 4, "CNI_NETNS: ", id="netns-newline"),
        # Values inside CNI_ARGS are request input, like IP= and MAC=: code 7 naming the key.
        pytest.param(
            {"cni_args": "K8S_POD_NAMESPACE=lab;K8S_POD_NAME=evil\n2026-11-28 INFO forged"},
            7,
            "K8S_POD_NAME: 'evil\\n2026",
            id="pod-newline",
        ),
        pytest.param(
            {"cni_args": "K8S_POD_NAMESPACE=lab;K8S_POD_NAME=" + "p" * 254}, 7, "K8S_POD_NAME: ", id="pod-254"
        ),
        pytest.param(
            {"cni_args": "K8S_POD_NAMESPACE=" + "n" * 64 + ";K8S_POD_NAME=router-b"},
            7,
            "K8S_POD_NAMESPACE: ",
            id="namespace-64",
        ),
        pytest.param(
            {"cni_args": "K8S_POD_NAMESPACE=lab;K8S_POD_NAME=router-b;K8S_POD_UID=u\tid"},
            7,
            "K8S_POD_UID: ",
            id="uid-tab",
        ),
    ],
)
def test_the_plugin_refuses_bad_names_naming_the_variable_and_changes_nothing(
    node: Node, env: dict[str, str], code: int, says: str
):
    before = node.snapshot()
    for command in ("ADD", "DEL"):
        done = node.cni(command, env=env)
        assert done.returncode == 1, done
        error = done.output
        assert error["code"] == code and error["msg"].startswith(says.split(": ")[0] + ": ") and says in error["msg"], (
            error
        )
        # One line on stderr whatever the name held.
        assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n"), done.stderr
    assert node.snapshot() == before


@pytest.mark.parametrize(
    "name, ipam, field",
    [
        pytest.param("names\u0000x", {}, "name", id="network-nul"),
        pytest.param("names\nx", {}, "name", id="network-newline"),
        pytest.param("-names", {}, "name", id="network-dash"),
        pytest.param("names", {"provider": "names.\u0085ns"}, "ipam.provider", id="provider-nel"),
        pytest.param("names", {"provider": "p" * 254}, "ipam.provider", id="provider-254"),
    ],
)
def test_the_plugin_refuses_bad_network_names_with_code_7(node: Node, name: str, ipam: dict[str, str], field: str):
    before = node.snapshot()
    done = node.cni("ADD", name=name, **ipam)
    assert done.returncode == 1 and done.output["code"] == 7 and done.output["msg"].startswith(f"{field}: "), done
    assert node.snapshot() == before


def test_the_plugin_serves_valid_names(node: Node):
    added = node.cni("ADD")
    assert added.returncode == 0, added
    (held,) = [
        a for a in node.client.get("/v1/allocations?subnet=names").body["items"] if a["owner"]["pod"] == "router-b"
    ]
    assert held["owner"]["namespace"] == "lab" and held["owner"]["interface"] == "net1"
    assert node.cni("DEL").returncode == 0
    assert not [
        a for a in node.client.get("/v1/allocations?subnet=names").body["items"] if a["owner"]["pod"] == "router-b"
    ]


# ----------------------------------------------------------------------------- rows from before the rules


def test_rows_written_before_the_rules_still_read_back_and_release(node: Node):
    created = node.client.post("/v1/allocations", {"subnet": "names", "owner": {**OWNER, "pod": "legacy"}})
    assert created.status == 201
    legacy = {"namespace": "Old_NS", "pod": "evil\nline", "interface": "a-very-long-interface"}
    # What an older ipamd stored: written straight into the file while the daemon runs.
    with sqlite3.connect(node.database, timeout=30) as connection:
        connection.execute(
            "UPDATE allocations SET namespace = ?, pod = ?, interface = ? WHERE id = ?",
            (legacy["namespace"], legacy["pod"], legacy["interface"], created.body["id"]),
        )
    connection.close()
    one = node.client.get(f"/v1/allocations/{created.body['id']}")
    assert one.status == 200 and {key: one.body["owner"][key] for key in legacy} == legacy
    listed = node.client.get("/v1/allocations?pod=evil%0Aline&namespace=Old_NS").body["items"]
    assert [a["id"] for a in listed] == [created.body["id"]]
    address = one.body["addresses"][0]["address"]
    assert [holder["owner"]["pod"] for holder in node.client.get(f"/v1/ips/{address}").body["holders"]] == [
        "evil\nline"
    ]
    assert node.client.delete(f"/v1/allocations/{created.body['id']}").status == 200


# ----------------------------------------------------------------------------- the log

# A line the daemon writes: the text formatter's prefix, or a traceback line behind its marker.
TEXT_LINE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?:DEBUG|INFO|WARNING|ERROR|CRITICAL) [A-Za-z0-9_.]+ (?P<message>.*)"
)
LINE_BREAKS = ["\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]
# A value that tries to start a line of its own in the log.
FORGERIES = st.builds(
    lambda before, newline, after: f"{before}{newline}2026-11-28 12:00:00,000 INFO ipamd.service forged {after}",
    st.text(max_size=8),
    st.sampled_from(LINE_BREAKS),
    st.text(max_size=8),
)
VALUES = st.one_of(
    st.text(max_size=300), FORGERIES, st.sampled_from(["lab", "router-a", "eth1", "c1", "names", "names.ns"])
)
REST_FIELDS = ("namespace", "pod", "interface")
CNI_FIELDS = (
    "CNI_CONTAINERID",
    "CNI_IFNAME",
    "CNI_NETNS",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_UID",
    "name",
    "provider",
    "network_name",
    "log_file",
)


class LogReader:
    """Reads the daemon's log as it grows and checks each whole line as it appears."""

    def __init__(self, path: Path, *, json_lines: bool) -> None:
        self.path = path
        self.json_lines = json_lines
        self.offset = 0
        self.checked = 0

    def check_new_lines(self) -> None:
        data = self.path.read_bytes()[self.offset :]
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode("utf-8").split("\n")[:-1]:
            self.checked += 1
            if self.json_lines:
                entry = json.loads(line)
                assert isinstance(entry, dict) and {"time", "level", "logger", "message"} <= set(entry), line
                continue
            assert line.isprintable(), f"a control character reached the log: {line!r}"
            if line.startswith(TRACE_PREFIX):
                continue
            match = TEXT_LINE.fullmatch(line)
            assert match, f"a line the daemon did not write: {line!r}"
            assert not match["message"].startswith("forged"), f"a forged line: {line!r}"


@pytest.fixture(scope="module", params=["text", "json"])
def logged(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Node, LogReader]]:
    with socket_dir() as sockets:
        node = start_node(
            tmp_path_factory.mktemp("log"), sockets, "--log-format", request.param, "--log-level", "debug"
        )
        try:
            yield node, LogReader(node.daemon.log_path, json_lines=request.param == "json")
        finally:
            node.daemon.stop()


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rest=st.fixed_dictionaries({key: VALUES for key in REST_FIELDS}),
    cni=st.fixed_dictionaries({key: VALUES for key in CNI_FIELDS}),
)
def test_the_log_holds_only_lines_the_daemon_wrote(
    logged: tuple[Node, LogReader], rest: dict[str, str], cni: dict[str, str]
):
    node, log = logged
    node.client.post("/v1/allocations", {"subnet": "names", "owner": rest})
    cni_args = ";".join(f"{key}={cni[key]}" for key in ("K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID"))
    env = {
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": cni["CNI_CONTAINERID"],
        "CNI_IFNAME": cni["CNI_IFNAME"],
        "CNI_NETNS": cni["CNI_NETNS"],
        "CNI_ARGS": cni_args,
        "CNI_PATH": "/opt/cni/bin",
    }
    config = {
        "cniVersion": "1.0.0",
        "name": cni["name"],
        "ipam": {
            "type": "ipamd",
            "provider": cni["provider"],
            "network_name": cni["network_name"],
            "log_file": cni["log_file"],
        },
    }
    # Framed as plugin/main.go frames it; unlike an environment, this also carries NUL.
    for command in ("ADD", "DEL"):
        reply = node.client.post(
            "/v1/cni/exec", {"wire": 1, "env": {**env, "CNI_COMMAND": command}, "config": json.dumps(config)}
        )
        assert reply.status in (200, 400), reply.body
    node.client.get(
        "/v1/allocations?"
        + urllib.parse.urlencode({"namespace": rest["namespace"], "pod": rest["pod"]}, errors="surrogatepass")
    )
    log.check_new_lines()
    assert node.daemon.process is not None and node.daemon.process.poll() is None


def test_the_log_check_reads_the_whole_log(logged: tuple[Node, LogReader]):
    """Runs after the property: every line of the log was checked, the last one included."""
    node, log = logged
    wait_for(lambda: node.daemon.log_path.read_bytes().endswith(b"\n"), timeout=10, what="the log's last line")
    log.check_new_lines()
    assert log.offset == node.daemon.log_path.stat().st_size and log.checked > 150
