"""Kubernetes mode through the real daemon process, against the in-process API double.

The double serves in a thread of the test process; the daemon is a separate process
started with ``--kubernetes --kubeconfig <the double's kubeconfig> --node-name n1``. CNI
calls go through the daemon's Unix socket exactly as the shim sends them.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.kube_double import KubeApiDouble, ThreadedKubeApi
from tests.support.client import Reply
from tests.support.daemon import Daemon
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "plugin" / "bin" / "ipamd"
NODE = "n1"
PROVIDER = "macvlan.default"
NET1 = {
    "name": "net1",
    "cidrBlock": "192.0.2.0/24",
    "gateway": "192.0.2.1",
    "excludeIps": ["192.0.2.2..192.0.2.10"],
    "provider": PROVIDER,
}


def note(name: str, interface: str | None = None) -> str:
    return f"{PROVIDER}.kubernetes.io/{name}" + (f".{interface}" if interface else "")


@dataclass
class Cluster:
    """The API double and one ipamd daemon in Kubernetes mode, with CNI helpers."""

    api: KubeApiDouble
    daemon: Daemon
    containers: dict[str, int] = field(default_factory=dict)

    def pod(
        self,
        name: str,
        *,
        annotations: dict[str, str] | None = None,
        owner: dict[str, Any] | None = None,
        namespace: str = "default",
        node: str = NODE,
        labels: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return self.api.create_pod(
            name, namespace, node_name=node, annotations=annotations, owner=owner, labels=labels, phase="Running"
        )

    def statefulset_pod(
        self, sts: dict[str, Any], ordinal: int, *, annotations: dict[str, str] | None = None
    ) -> dict[str, Any]:
        name = f"{sts['metadata']['name']}-{ordinal}"
        labels = {**sts["spec"]["template"]["metadata"]["labels"], "statefulset.kubernetes.io/pod-name": name}
        return self.pod(name, annotations=annotations, owner=self.api.owner_reference(sts), labels=labels)

    def _identity(self, pod: dict[str, Any], ifname: str, *, new_sandbox: bool) -> dict[str, Any]:
        name = pod["metadata"]["name"]
        key = f"{pod['metadata']['uid']}/{ifname}"
        if new_sandbox or key not in self.containers:
            self.containers[key] = self.containers.get(key, 0) + 1
        return {
            "containerId": f"{name}-sandbox-{self.containers[key]}",
            "ifName": ifname,
            "netns": f"/var/run/netns/{name}",
            "network": "macvlan",
            "ipam": {"type": "ipamd", "provider": PROVIDER},
            "podNamespace": pod["metadata"]["namespace"],
            "podName": name,
            "podUid": pod["metadata"]["uid"],
        }

    def add(self, pod: dict[str, Any], *, ifname: str = "net1", new_sandbox: bool = False, **extra: Any) -> Reply:
        return self.daemon.client.post("/v1/cni/add", {**self._identity(pod, ifname, new_sandbox=new_sandbox), **extra})

    def plugin(self, command: str, pod: dict[str, Any], *, ifname: str = "net1", **config: Any) -> tuple[int, Any]:
        """Runs plugin/bin/ipamd for ``pod`` as the runtime does (``config``: more network
        config keys, e.g. runtimeConfig); returns its exit code and what it printed."""
        metadata = pod["metadata"]
        network = {
            "cniVersion": "1.0.0",
            "name": "macvlan",
            "ipam": {"type": "ipamd", "server_socket": self.daemon.socket, "provider": PROVIDER},
            **config,
        }
        env = {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": f"sandbox-{metadata['uid']}",
            "CNI_IFNAME": ifname,
            "CNI_NETNS": f"/var/run/netns/{metadata['name']}",
            "CNI_PATH": "/opt/cni/bin",
            "CNI_ARGS": (
                f"IgnoreUnknown=1;K8S_POD_NAMESPACE={metadata['namespace']};K8S_POD_NAME={metadata['name']};"
                f"K8S_POD_UID={metadata['uid']}"
            ),
        }
        done = subprocess.run(
            [str(PLUGIN)], input=json.dumps(network).encode(), env=env, capture_output=True, timeout=60
        )
        return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None

    def delete(self, pod: dict[str, Any], *, ifname: str = "net1") -> Reply:
        return self.daemon.client.post("/v1/cni/del", self._identity(pod, ifname, new_sandbox=False))

    def allocations(self, pod: str | None = None) -> list[dict[str, Any]]:
        url = "/v1/allocations" + (f"?pod={pod}" if pod else "")
        reply = self.daemon.client.get(url)
        assert reply.status == 200, reply.body
        return list(reply.body["items"])

    def addresses(self, pod: str) -> list[str]:
        return [a["address"] for alloc in self.allocations(pod) for a in alloc["addresses"]]

    def wait_released(self, pod: str, *, timeout: float = 15.0) -> None:
        wait_for(lambda: not self.allocations(pod), timeout=timeout, what=f"the release of {pod}'s addresses")

    def annotations(self, pod: str, namespace: str = "default") -> dict[str, str]:
        obj = self.api.get_pod(pod, namespace)
        assert obj is not None, f"pod {namespace}/{pod} is gone"
        return dict(obj["metadata"].get("annotations") or {})

    def events(self, pod: str, reason: str = "AcquireAddressFailed") -> list[dict[str, Any]]:
        return self.api.events("default", involved_name=pod, reason=reason)

    def kube_request(self, method: str, path: str) -> int:
        """Sends one request to the API double as any client would; returns the status."""
        request = urllib.request.Request(self.api.url + path, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def kube_patch(self, path: str, body: dict[str, Any]) -> int:
        """Sends one JSON merge patch to the API double; returns the status."""
        request = urllib.request.Request(
            self.api.url + path,
            method="PATCH",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/merge-patch+json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return int(response.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    def barrier(self) -> None:
        """Returns once the daemon's pod watch has handled every event before this call.

        A throwaway pod gets an address, is deleted, and its release is awaited: the watch
        handles events in order, so everything earlier has been handled too.
        """
        self.containers["barrier"] = self.containers.get("barrier", 0) + 1
        name = f"barrier-{self.containers['barrier']}"
        pod = self.pod(name)
        reply = self.add(pod)
        assert reply.status == 200, reply.body
        self.api.delete_pod(name, grace_period_seconds=0)
        self.wait_released(name)


@pytest.fixture
def kube(request: pytest.FixtureRequest) -> Iterator[ThreadedKubeApi]:
    """The API double; a test may pass its options by indirect parametrization."""
    handle = KubeApiDouble.start_in_thread(**getattr(request, "param", {}))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def make_cluster(kube: ThreadedKubeApi, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Returns a factory starting the daemon (``reconcile_interval``, ``release_grace`` in s)."""
    daemons: list[Daemon] = []
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

    def start(
        *,
        reconcile_interval: float = 1.0,
        release_grace: float = 1.0,
        subnet: dict[str, Any] | None = NET1,
        database_url: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> Cluster:
        daemon = Daemon(
            tmp_path,
            database_url or f"sqlite:///{tmp_path / 'ipamd.db'}",
            extra_args=(
                "--kubernetes",
                "--kubeconfig",
                str(kubeconfig),
                "--node-name",
                NODE,
                "--reconcile-interval",
                str(reconcile_interval),
                "--release-grace",
                str(release_grace),
                "--log-level",
                "debug",
                *extra_args,
            ),
        ).start()
        daemons.append(daemon)
        if subnet is not None:
            reply = daemon.client.post("/v1/subnets", subnet)
            assert reply.status == 201, reply.body
        return Cluster(kube.api, daemon)

    try:
        yield start
    finally:
        for daemon in daemons:
            daemon.stop()


@pytest.fixture
def cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    return make_cluster()
