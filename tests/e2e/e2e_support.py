"""Helpers for the end-to-end CNI tests: run a real CNI plugin the way a runtime does,
create and always remove network namespaces and root-namespace links, read addresses
and routes back from a namespace.

Nothing here mocks anything: the plugins are Debian's containernetworking-plugins, the
IPAM binary they execute is ipamd's plugin installed by ``ipamd install-cni``, and the daemon
behind it is a real ``ipamd serve`` process (tests/support/daemon.py).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYSTEM_CNI_DIR = Path("/usr/lib/cni")
NETNS_DIR = Path("/var/run/netns")
NETNS_PREFIX = "ipamd-e2e-"
# A container runtime runs plugins with a system PATH (the plugins need none of it).
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Test addresses only from the documentation and benchmarking ranges.
SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


def skip_reason() -> str | None:
    """Why the end-to-end tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "needs root: the tests create network namespaces and links"
    if not (SYSTEM_CNI_DIR / "macvlan").exists():
        return f"{SYSTEM_CNI_DIR}/macvlan missing: install Debian's containernetworking-plugins"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    return None


def unique(prefix: str = "", length: int = 8) -> str:
    return prefix + secrets.token_hex(length // 2)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs ``ip ARGS``; raises with ip's message when check is set and it fails."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def kernel_supports(kind: str, master: str) -> str | None:
    """None when ``ip link add ... type KIND`` works on master, else ip's error message."""
    probe = unique("e2eprb")
    if kind == "vlan":
        done = ip("link", "add", "link", master, "name", probe, "type", "vlan", "id", "42", check=False)
    else:
        done = ip("link", "add", probe, "link", master, "type", kind, check=False)
    if done.returncode == 0:
        ip("link", "del", probe, check=False)
        return None
    return done.stderr.strip() or f"ip link add type {kind} exited with {done.returncode}"


@dataclass
class PluginRun:
    """One plugin invocation: exit status and what it printed."""

    command: str
    plugin: str
    returncode: int
    stdout: str
    stderr: str
    output: Any  # stdout parsed as JSON, None when empty or not JSON

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def code(self) -> int | None:
        """The CNI error code printed on stdout, None when there is no error object."""
        if isinstance(self.output, dict) and "code" in self.output:
            return int(self.output["code"])
        return None

    def describe(self) -> str:
        return f"{self.plugin} {self.command} exited {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"

    def expect_ok(self) -> Any:
        assert self.returncode == 0, self.describe()
        return self.output


@dataclass
class Cni:
    """Runs plugins from one CNI bin dir with the runtime's environment."""

    bin_dir: Path

    def run(
        self,
        plugin: str,
        command: str,
        config: dict[str, Any] | None,
        *,
        container_id: str = "",
        netns: str | None = None,
        ifname: str = "net1",
        pod: str | None = None,
        pod_namespace: str = "default",
        pod_uid: str | None = None,
        cni_args: str | None = None,
        timeout: float = 60.0,
    ) -> PluginRun:
        env = {
            "PATH": NODE_PATH,
            "CNI_COMMAND": command,
            "CNI_PATH": str(self.bin_dir),
        }
        if container_id:
            env["CNI_CONTAINERID"] = container_id
        if netns is not None:
            env["CNI_NETNS"] = str(NETNS_DIR / netns)
        if ifname:
            env["CNI_IFNAME"] = ifname
        if cni_args is None:
            # What kubelet (through the runtime) and Multus send: IgnoreUnknown=1 first,
            # without which Debian's plugins reject the K8S_* keys they do not know.
            parts = ["IgnoreUnknown=1"]
            if pod:
                parts += [
                    f"K8S_POD_NAMESPACE={pod_namespace}",
                    f"K8S_POD_NAME={pod}",
                    f"K8S_POD_INFRA_CONTAINER_ID={container_id}",
                    f"K8S_POD_UID={pod_uid or unique('uid-', 16)}",
                ]
            cni_args = ";".join(parts)
        env["CNI_ARGS"] = cni_args
        stdin = json.dumps(config) if config is not None else ""
        done = subprocess.run(
            [str(self.bin_dir / plugin)], input=stdin, env=env, capture_output=True, text=True, timeout=timeout
        )
        try:
            output = json.loads(done.stdout) if done.stdout.strip() else None
        except ValueError:
            output = None
        return PluginRun(command, plugin, done.returncode, done.stdout, done.stderr, output)


@dataclass
class Attachment:
    """One pod's attachment to one network: what ADD, CHECK and DEL are called with."""

    cni: Cni
    plugin: str
    config: dict[str, Any]
    netns: str
    container_id: str = field(default_factory=lambda: unique("c", 16))
    ifname: str = "net1"
    pod: str = field(default_factory=lambda: unique("pod-"))
    pod_uid: str = field(default_factory=lambda: unique("uid-", 16))

    def call(self, command: str, config: dict[str, Any] | None = None) -> PluginRun:
        return self.cni.run(
            self.plugin,
            command,
            config if config is not None else self.config,
            container_id=self.container_id,
            netns=self.netns,
            ifname=self.ifname,
            pod=self.pod,
            pod_uid=self.pod_uid,
        )

    def add(self) -> PluginRun:
        return self.call("ADD")

    def delete(self) -> PluginRun:
        return self.call("DEL")

    def check(self, prev_result: dict[str, Any]) -> PluginRun:
        return self.call("CHECK", {**self.config, "prevResult": prev_result})


class Topology:
    """Namespaces and root-namespace links made by one test, all removed by cleanup()
    whatever the test did (also after a failure in the middle of creating them)."""

    def __init__(self) -> None:
        self.namespaces: list[str] = []
        self.links: list[str] = []

    def netns(self) -> str:
        name = unique(NETNS_PREFIX, 10)
        self.namespaces.append(name)  # recorded first: a half-made namespace is removed too
        ip("netns", "add", name)
        return name

    def discard_netns(self, name: str) -> None:
        """What a runtime does with a failed sandbox: the namespace goes, and what is in it."""
        ip("netns", "del", name)
        self.namespaces.remove(name)

    def veth(self, up: bool = True) -> tuple[str, str]:
        """A veth pair in the root namespace (names of at most 15 bytes)."""
        stem = unique("e2e", 8)
        a, b = stem + "a", stem + "b"
        self.links += [a, b]
        ip("link", "add", a, "type", "veth", "peer", "name", b)
        if up:
            ip("link", "set", a, "up")
            ip("link", "set", b, "up")
        return a, b

    def adopt_link(self, name: str) -> str:
        """A link some plugin creates in the root namespace (a bridge): removed at cleanup."""
        self.links.append(name)
        return name

    def cleanup(self) -> list[str]:
        problems = []
        for name in reversed(self.namespaces):
            done = ip("netns", "del", name, check=False)
            if done.returncode != 0 and (NETNS_DIR / name).exists():
                problems.append(f"netns {name}: {done.stderr.strip()}")
        self.namespaces.clear()
        for name in reversed(self.links):
            # Links moved into a namespace died with it (veth) or came back (host-device).
            if ip("link", "show", "dev", name, check=False).returncode == 0:
                done = ip("link", "del", name, check=False)
                if done.returncode != 0 and ip("link", "show", "dev", name, check=False).returncode == 0:
                    problems.append(f"link {name}: {done.stderr.strip()}")
        self.links.clear()
        return problems


def ns_json(netns: str, *args: str) -> Any:
    return json.loads(ip("-j", "-n", netns, *args).stdout or "[]")


def root_json(*args: str) -> Any:
    return json.loads(ip("-j", *args).stdout or "[]")


def root_has_link(name: str) -> bool:
    return ip("link", "show", "dev", name, check=False).returncode == 0


def ns_addresses(netns: str, ifname: str = "net1", family: int = 4) -> list[str]:
    """The global addresses on ifname in netns, as CIDR strings (tentative ones included)."""
    links = ns_json(netns, f"-{family}", "addr", "show", "dev", ifname)
    return [
        f"{info['local']}/{info['prefixlen']}"
        for link in links
        for info in link.get("addr_info", [])
        if info.get("scope") == "global"
    ]


def has_link(netns: str, ifname: str = "net1") -> bool:
    return ip("-n", netns, "link", "show", "dev", ifname, check=False).returncode == 0


def ns_routes(netns: str, family: int = 4) -> list[dict[str, Any]]:
    return list(ns_json(netns, f"-{family}", "route", "show"))


def ping(netns: str, address: str) -> subprocess.CompletedProcess[str]:
    family = ["-6"] if ":" in address else ["-4"]
    command = ["ip", "netns", "exec", netns, "ping", *family, "-c", "1", "-W", "2", address]
    return subprocess.run(command, capture_output=True, text=True)


def macvlan_config(
    name: str, master: str, ipam: dict[str, Any], *, mode: str = "bridge", version: str = "1.0.0", **extra: Any
) -> dict[str, Any]:
    return {
        "cniVersion": version,
        "name": name,
        "type": "macvlan",
        "master": master,
        "mode": mode,
        "ipam": ipam,
        **extra,
    }


def ipamd_ipam(socket: str, provider: str, **extra: Any) -> dict[str, Any]:
    return {"type": "ipamd", "server_socket": socket, "provider": provider, **extra}


def make_subnet(daemon: Any, cidr: str, **fields: Any) -> dict[str, Any]:
    """Creates a subnet through the daemon's REST API under a unique name and provider."""
    name = fields.pop("name", None) or unique("e2e-")
    body = {"name": name, "cidrBlock": cidr, "provider": fields.pop("provider", None) or f"{name}.default", **fields}
    reply = daemon.client.post("/v1/subnets", body)
    assert reply.status == 201, (reply.status, reply.body)
    return dict(reply.body)


def allocations(daemon: Any, subnet_name: str) -> list[dict[str, Any]]:
    """The daemon's live allocations in one subnet."""
    reply = daemon.client.get(f"/v1/allocations?subnet={subnet_name}")
    assert reply.status == 200, (reply.status, reply.body)
    return list(reply.body["items"])


def held_addresses(daemon: Any, subnet_name: str) -> set[str]:
    return {a["address"] for item in allocations(daemon, subnet_name) for a in item["addresses"]}
