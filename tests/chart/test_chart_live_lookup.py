"""What the chart does when Helm can see the cluster (`lookup`), against a fake API server.

`helm install --dry-run=server` renders with lookups against the cluster, checks the
objects against the server's schema and stops before creating anything. A tiny HTTP
server here answers what that needs: discovery, a node list, a Secret that may exist,
an empty OpenAPI document (no schemas: client-side validation is skipped), and 404 for
every object the install would create.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml
from helmrender import CHART_DIR, NAMESPACE, RELEASE, helm


def _resource(name: str, kind: str, namespaced: bool) -> dict[str, Any]:
    verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
    return {"name": name, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind, "verbs": verbs}


DISCOVERY = {
    "/api/v1": [
        _resource("nodes", "Node", False),
        _resource("namespaces", "Namespace", False),
        _resource("secrets", "Secret", True),
        _resource("configmaps", "ConfigMap", True),
        _resource("serviceaccounts", "ServiceAccount", True),
        _resource("services", "Service", True),
    ],
    "/apis/apps/v1": [_resource("daemonsets", "DaemonSet", True)],
    "/apis/rbac.authorization.k8s.io/v1": [
        _resource("clusterroles", "ClusterRole", False),
        _resource("clusterrolebindings", "ClusterRoleBinding", False),
        _resource("roles", "Role", True),
        _resource("rolebindings", "RoleBinding", True),
    ],
}


class FakeCluster:
    """State the fake API server answers from; tests set it before installing."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.objects: dict[str, dict[str, Any]] = {}  # path -> object
        self.url = ""

    def set_nodes(self, *labels: dict[str, str]) -> None:
        self.nodes = [{"metadata": {"name": f"node-{i}", "labels": dict(lbl)}} for i, lbl in enumerate(labels)]


def _handler(cluster: FakeCluster) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            path = self.path.split("?", 1)[0]
            if path == "/version":
                return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"})
            if path == "/api":
                return self._send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
            if path == "/apis":
                groups = []
                for prefix in DISCOVERY:
                    if prefix.startswith("/apis/"):
                        group_version = prefix.removeprefix("/apis/")
                        version = {"groupVersion": group_version, "version": group_version.split("/")[1]}
                        groups.append(
                            {"name": group_version.split("/")[0], "versions": [version], "preferredVersion": version}
                        )
                return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
            if path in DISCOVERY:
                group_version = "v1" if path == "/api/v1" else path.removeprefix("/apis/")
                return self._send(
                    200, {"kind": "APIResourceList", "groupVersion": group_version, "resources": DISCOVERY[path]}
                )
            if path == "/openapi/v2":
                # An empty protobuf Document: no schemas, so kubectl's validation skips.
                return self._send(200, b"", "application/octet-stream")
            if path == "/api/v1/nodes":
                return self._send(200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": cluster.nodes})
            if path in cluster.objects:
                return self._send(200, cluster.objects[path])
            return self._send(
                404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}
            )

        def do_POST(self) -> None:  # noqa: N802
            # A dry run never creates anything.
            self._send(
                500,
                {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "unexpected write"},
            )

        do_PUT = do_PATCH = do_DELETE = do_POST  # noqa: N815

    return Handler


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    if helm is None:
        pytest.skip("helm-python-sdk (the test extra) is not installed")
    state = FakeCluster()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_port}"
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh(cluster: FakeCluster) -> FakeCluster:
    cluster.nodes = []
    cluster.objects = {}
    return cluster


def install(cluster: FakeCluster, values: dict[str, Any]) -> dict[str, Any]:
    """`helm install --dry-run=server` against the fake cluster; returns the release."""
    with helm.Config(kube_apiserver=cluster.url, namespace=NAMESPACE, storage_driver="memory") as config:
        return config.install(str(CHART_DIR), RELEASE, values, namespace=NAMESPACE, dry_run="server")


def objects_of(release: dict[str, Any]) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(release["manifest"]) if doc]


LINUX = {"kubernetes.io/os": "linux"}


def test_sqlite_refused_when_the_cluster_has_several_nodes(fresh: FakeCluster) -> None:
    fresh.set_nodes(LINUX, LINUX, LINUX)
    with pytest.raises(helm.HelmError) as caught:
        install(fresh, {})
    message = str(caught.value)
    assert "database.type=sqlite cannot serve this cluster: 3 nodes match nodeSelector" in message
    assert "database.type=postgresql" in message


def test_sqlite_accepted_on_one_node(fresh: FakeCluster) -> None:
    fresh.set_nodes(LINUX)
    release = install(fresh, {})
    assert "DaemonSet" in {o["kind"] for o in objects_of(release)}
    # The chart counted the node, so the "could not count" warning is gone.
    assert "could not count" not in release["notes"]


def test_only_nodes_matching_node_selector_count(fresh: FakeCluster) -> None:
    fresh.set_nodes(LINUX, {"kubernetes.io/os": "windows"}, {**LINUX, "example.com/ipam": "true"})
    # Default nodeSelector (linux): two nodes.
    with pytest.raises(helm.HelmError, match="2 nodes match nodeSelector"):
        install(fresh, {})
    # Narrowed to one node: fine.
    install(fresh, {"nodeSelector": {**LINUX, "example.com/ipam": "true"}})


def test_force_and_postgresql_skip_the_node_count(fresh: FakeCluster) -> None:
    fresh.set_nodes(LINUX, LINUX, LINUX, LINUX)
    install(fresh, {"database": {"sqlite": {"force": True}}})
    install(fresh, {"database": {"type": "postgresql", "existingSecret": "ipamd-db"}})


def test_generated_tokens_survive_an_upgrade(fresh: FakeCluster) -> None:
    fresh.set_nodes(LINUX)
    tokens = "admin " + "a" * 40 + "\nreadonly " + "r" * 40 + "\n"
    # The Secret a previous install generated, owned by this release.
    fresh.objects[f"/api/v1/namespaces/{NAMESPACE}/secrets/ipamd-tokens"] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "ipamd-tokens",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "Helm"},
            "annotations": {"meta.helm.sh/release-name": RELEASE, "meta.helm.sh/release-namespace": NAMESPACE},
        },
        "type": "Opaque",
        "data": {"tokens": base64.b64encode(tokens.encode()).decode()},
    }
    release = install(fresh, {})
    (secret,) = [o for o in objects_of(release) if o["kind"] == "Secret"]
    assert base64.b64decode(secret["data"]["tokens"]).decode() == tokens
