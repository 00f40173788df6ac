"""Fidelity tests for the Kubernetes API double.

Two kinds of clients check the double: the real ``kubectl`` binary (which
encodes years of apiserver behaviour in what it sends and expects back), and
kubernetes_asyncio, the client library ipamd itself uses.  Where a test
asserts a specific wording or shape, it is the real apiserver's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.kube_double import KubeApiDouble, ThreadedKubeApi
from tests.kube_double.errors import ApiError
from tests.kube_double.kubectl import Kubectl
from tests.kube_double.patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from tests.kube_double.selectors import parse_field_selector, parse_label_selector
from tests.support.waiting import async_wait_for, wait_for

JSON = dict[str, Any]


# ===========================================================================
# kubectl


def test_kubectl_get_pods_json(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", labels={"app": "web"}, phase="Running", pod_ip="192.0.2.5")
    api.create_pod("db-0", node_name="n2", labels={"app": "db"})
    out = json.loads(kubectl.run("get", "pods", "-o", "json").stdout)
    assert out["kind"] == "List"
    by_name = {item["metadata"]["name"]: item for item in out["items"]}
    assert set(by_name) == {"web-0", "db-0"}
    assert by_name["web-0"]["status"]["phase"] == "Running"
    assert by_name["web-0"]["status"]["podIP"] == "192.0.2.5"
    assert by_name["db-0"]["status"]["phase"] == "Pending"
    assert by_name["web-0"]["kind"] == "Pod"  # kubectl restores kind from the typed list
    assert int(by_name["db-0"]["metadata"]["resourceVersion"]) > 0
    assert by_name["db-0"]["metadata"]["uid"]


def test_kubectl_get_single_pod_prints_table(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    kube_thread.api.create_pod("web-0", node_name="n1", phase="Running", pod_ip="192.0.2.5")
    lines = kubectl.run("get", "pod", "web-0").stdout.splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[:4] == ["web-0", "1/1", "Running", "0"]
    wide = kubectl.run("get", "pod", "web-0", "-o", "wide").stdout.splitlines()
    assert "192.0.2.5" in wide[1] and " n1 " in wide[1]


def test_kubectl_evicted_pod_shows_reason(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    kube_thread.api.create_pod("web-0", node_name="n1")
    kube_thread.api.set_pod_phase("web-0", phase="Failed", reason="Evicted", message="low on memory")
    assert kubectl.run("get", "pod", "web-0").stdout.splitlines()[1].split()[2] == "Evicted"


def test_kubectl_not_found_message(kubectl: Kubectl) -> None:
    result = kubectl.run("get", "pod", "nope", check=False)
    assert result.returncode == 1
    assert 'Error from server (NotFound): pods "nope" not found' in result.stderr


def test_kubectl_field_and_label_selectors(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("a", node_name="n1", labels={"app": "x", "tier": "fe"})
    api.create_pod("b", node_name="n2", labels={"app": "x"})
    api.create_pod("c", node_name="n1", labels={"app": "y"})

    def names(*args: str) -> list[str]:
        return kubectl.run("get", "pods", "-o", "name", *args).stdout.split()

    assert names("--field-selector", "spec.nodeName=n1") == ["pod/a", "pod/c"]
    assert names("--field-selector", "spec.nodeName!=n1") == ["pod/b"]
    assert names("--field-selector", "spec.nodeName=n1,metadata.name=c") == ["pod/c"]
    assert names("--field-selector", "status.phase=Pending") == ["pod/a", "pod/b", "pod/c"]
    assert names("-l", "app=x") == ["pod/a", "pod/b"]
    assert names("-l", "app in (x,y),tier") == ["pod/a"]
    assert names("-l", "!tier") == ["pod/b", "pod/c"]
    assert names("-l", "tier!=fe") == ["pod/b", "pod/c"]
    assert names("-l", "app notin (x)") == ["pod/c"]
    assert names("-A", "--field-selector", "spec.nodeName=n2") == ["pod/b"]
    bad = kubectl.run("get", "pods", "--field-selector", "spec.bogus=1", check=False)
    assert bad.returncode == 1 and "field label not supported: spec.bogus" in bad.stderr


def test_kubectl_nodes_and_kubevirt_objects(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    """What ipamd reads of them: a node by its name (the only field selector it sends), and
    KubeVirt's objects by the short names and the field selectors a CRD serves."""
    api = kube_thread.api
    api.create_node("n1", labels={"topology.kubernetes.io/zone": "a"})
    api.create_node("n2")
    api.create_virtual_machine_instance(api.create_virtual_machine("db"))

    def names(*args: str) -> list[str]:
        return kubectl.run("get", "-o", "name", *args).stdout.split()

    assert names("nodes", "--field-selector", "metadata.name=n1") == ["node/n1"]
    assert names("nodes", "--field-selector", "spec.unschedulable=false") == ["node/n1", "node/n2"]
    assert names("no", "-l", "topology.kubernetes.io/zone=a") == ["node/n1"]
    node = json.loads(kubectl.run("get", "node", "n2", "-o", "json").stdout)
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "n2"
    assert names("vm") == ["virtualmachine.kubevirt.io/db"]
    assert names("vmi", "--field-selector", "metadata.name=db") == ["virtualmachineinstance.kubevirt.io/db"]
    bad = kubectl.run("get", "vm", "--field-selector", "status.ready=true", check=False)
    assert bad.returncode == 1 and "field label not supported: status.ready" in bad.stderr
    # The verbs discovery gives kubectl, as a real API server's: nodes, unlike namespaces,
    # can be deleted as a collection.
    verbs = {r["name"]: r["verbs"] for r in json.loads(kubectl.run("get", "--raw", "/api/v1").stdout)["resources"]}
    assert "deletecollection" in verbs["nodes"] and "deletecollection" not in verbs["namespaces"]


def test_kubectl_annotate_touches_only_given_keys(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", annotations={"keep": "me", "drop": "x"}, labels={"app": "web"})
    before = api.get_pod("web-0")
    assert before is not None
    # (kubectl 1.27 prints "annotate", the others "annotated")
    assert kubectl.run("annotate", "pod", "web-0", "k=v").stdout.startswith("pod/web-0 annotate")
    kubectl.run("annotate", "pod", "web-0", "drop-")
    after = api.get_pod("web-0")
    assert after is not None
    assert after["metadata"]["annotations"] == {"keep": "me", "k": "v"}
    assert after["metadata"]["labels"] == {"app": "web"}
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    # Overwriting without --overwrite is refused client-side after a GET.
    refused = kubectl.run("annotate", "pod", "web-0", "k=w", check=False)
    assert refused.returncode != 0 and "already has a value" in refused.stderr
    kubectl.run("label", "pod", "web-0", "tier=fe")
    labelled = api.get_pod("web-0")
    assert labelled is not None and labelled["metadata"]["labels"] == {"app": "web", "tier": "fe"}


def test_kubectl_patch_merge_strategic_and_json(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", annotations={"a": "1", "b": "2"}, labels={"app": "web"})
    kubectl.run("patch", "pod", "web-0", "--type", "merge", "-p", '{"metadata":{"annotations":{"a":null,"c":"3"}}}')
    pod = api.get_pod("web-0")
    assert pod is not None and pod["metadata"]["annotations"] == {"b": "2", "c": "3"}

    kubectl.run("patch", "pod", "web-0", "-p", '{"metadata":{"labels":{"s":"1"}}}')  # strategic by default
    pod = api.get_pod("web-0")
    assert pod is not None and pod["metadata"]["labels"] == {"app": "web", "s": "1"}

    ops = (
        '[{"op":"test","path":"/metadata/labels/s","value":"1"},{"op":"remove","path":"/metadata/labels/s"},'
        '{"op":"add","path":"/metadata/annotations/j~1k","value":"v"}]'
    )
    kubectl.run("patch", "pod", "web-0", "--type", "json", "-p", ops)
    pod = api.get_pod("web-0")
    assert pod is not None
    assert pod["metadata"]["labels"] == {"app": "web"}
    assert pod["metadata"]["annotations"]["j/k"] == "v"

    failed = kubectl.run(
        "patch",
        "pod",
        "web-0",
        "--type",
        "json",
        "-p",
        '[{"op":"test","path":"/metadata/labels/app","value":"nope"}]',
        check=False,
    )
    assert failed.returncode == 1


def test_kubectl_patch_cannot_change_status_through_main_resource(
    kube_thread: ThreadedKubeApi, kubectl: Kubectl
) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", phase="Running")
    rv = api.get_pod("web-0")["metadata"]["resourceVersion"]  # type: ignore[index]
    out = kubectl.run("patch", "pod", "web-0", "--type", "merge", "-p", '{"status":{"phase":"Failed"}}').stdout
    # The apiserver drops status changes on the main resource: a no-op.
    assert out.strip() == "pod/web-0 patched (no change)"
    pod = api.get_pod("web-0")
    assert pod is not None and pod["status"]["phase"] == "Running" and pod["metadata"]["resourceVersion"] == rv
    if kubectl.minor_version() >= 24:  # --subresource arrived in kubectl 1.24
        kubectl.run(
            "patch",
            "pod",
            "web-0",
            "--subresource",
            "status",
            "--type",
            "merge",
            "-p",
            '{"status":{"phase":"Succeeded"}}',
        )
        assert api.get_pod("web-0")["status"]["phase"] == "Succeeded"  # type: ignore[index]


def test_kubectl_pod_spec_is_immutable(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    kube_thread.api.create_pod("web-0", node_name="n1")
    result = kubectl.run("patch", "pod", "web-0", "--type", "merge", "-p", '{"spec":{"nodeName":"n2"}}', check=False)
    assert result.returncode == 1
    assert 'The Pod "web-0" is invalid' in result.stderr
    assert "pod updates may not change fields" in result.stderr


def test_kubectl_delete_is_graceful_until_finalized(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", phase="Running")
    assert kubectl.run("delete", "pod", "web-0", "--wait=false").stdout.strip() == 'pod "web-0" deleted'
    pod = api.get_pod("web-0")
    assert pod is not None
    assert pod["metadata"]["deletionGracePeriodSeconds"] == 30
    assert pod["metadata"]["deletionTimestamp"]
    assert kubectl.run("get", "pod", "web-0").stdout.splitlines()[1].split()[2] == "Terminating"
    assert api.finalize_deletions() == 1
    assert api.get_pod("web-0") is None


def test_kubectl_delete_with_grace_period_follows_test_clock(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", phase="Running")
    kubectl.run("delete", "pod", "web-0", "--wait=false", "--grace-period=5")
    assert api.get_pod("web-0")["metadata"]["deletionGracePeriodSeconds"] == 5  # type: ignore[index]
    assert api.advance(4) == 0 and api.get_pod("web-0") is not None
    assert api.advance(2) == 1 and api.get_pod("web-0") is None


def test_kubectl_force_delete_is_immediate(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", phase="Running")
    result = kubectl.run("delete", "pod", "web-0", "--grace-period=0", "--force")
    assert 'pod "web-0" force deleted' in result.stdout
    assert api.get_pod("web-0") is None


def test_kubectl_delete_waits_for_the_pod_to_disappear(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", phase="Running")
    proc = kubectl.popen("delete", "pod", "web-0", "--timeout=30s")
    try:
        # kubectl deletes, then watches until the object is gone.
        wait_for(lambda: api.watch_count("pods") >= 1, what="kubectl's watch")
        assert api.get_pod("web-0")["metadata"]["deletionTimestamp"]  # type: ignore[index]
        api.finalize_deletions()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert 'pod "web-0" deleted' in out


def test_kubectl_wait_for_delete(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1", phase="Running")
    proc = kubectl.popen("wait", "--for=delete", "pod/web-0", "--timeout=30s")
    try:
        wait_for(lambda: api.watch_count("pods") >= 1, what="kubectl's watch")
        api.delete_pod("web-0", grace_period_seconds=0)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err


def test_kubectl_get_watch_streams_changes(kube_thread: ThreadedKubeApi, kubectl: Kubectl) -> None:
    api = kube_thread.api
    api.create_pod("web-0", node_name="n1")
    proc = kubectl.popen("get", "pods", "--watch", "--output-watch-events", "--request-timeout=30s")
    lines: list[str] = []
    assert proc.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        wait_for(lambda: api.watch_count("pods") >= 1, what="kubectl's watch")
        api.set_pod_phase("web-0", phase="Running")
        api.create_pod("web-1", node_name="n1")
        api.delete_pod("web-1", grace_period_seconds=0)
        wait_for(
            lambda: any(line.split()[:2] == ["DELETED", "web-1"] for line in lines if line.strip()), what="DELETED line"
        )
    finally:
        proc.kill()
        proc.wait()
        reader.join(timeout=10)
        proc.stdout.close()
        assert proc.stderr is not None
        proc.stderr.close()
    events = [line.split()[:2] + line.split()[3:4] for line in lines if line.strip() and not line.startswith("EVENT")]
    assert ["ADDED", "web-0", "Pending"] in events
    assert ["MODIFIED", "web-0", "Running"] in events
    assert ["ADDED", "web-1", "Pending"] in events


def test_kubectl_create_apply_scale_statefulset(kube_thread: ThreadedKubeApi, kubectl: Kubectl, tmp_path: Path) -> None:
    api = kube_thread.api
    manifest = tmp_path / "sts.yaml"
    manifest.write_text(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  replicas: 2\n  serviceName: db\n"
        "  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n"
        "    spec: {containers: [{name: c, image: busybox}]}\n"
    )
    assert kubectl.run("apply", "-f", str(manifest)).stdout.strip() == "statefulset.apps/db created"
    assert kubectl.run("scale", "statefulset", "db", "--replicas=5").stdout.strip() == "statefulset.apps/db scaled"
    sts = api.get("statefulsets", "db")
    assert sts is not None and sts["spec"]["replicas"] == 5 and sts["metadata"]["generation"] == 2
    assert kubectl.run("apply", "-f", str(manifest)).stdout.strip() == "statefulset.apps/db configured"
    assert api.get("statefulsets", "db")["spec"]["replicas"] == 2  # type: ignore[index]
    assert kubectl.run("get", "sts", "db", "-o", "jsonpath={.spec.replicas}").stdout == "2"
    assert kubectl.run("delete", "sts", "db").stdout.strip() == 'statefulset.apps "db" deleted'
    assert api.get("statefulsets", "db") is None


def test_kubectl_create_and_replace_conflict(kube_thread: ThreadedKubeApi, kubectl: Kubectl, tmp_path: Path) -> None:
    api = kube_thread.api
    manifest = tmp_path / "pod.json"
    manifest.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "made", "labels": {"app": "x"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
            }
        )
    )
    assert kubectl.run("create", "-f", str(manifest)).stdout.strip() == "pod/made created"
    again = kubectl.run("create", "-f", str(manifest), check=False)
    assert "Error from server (AlreadyExists): error when creating" in again.stderr
    assert 'pods "made" already exists' in again.stderr
    stale = api.get_pod("made")
    assert stale is not None
    api.update("pods", "made", lambda pod: pod["metadata"].setdefault("labels", {}).update(v="2"))
    stale["metadata"]["labels"]["mine"] = "1"
    manifest.write_text(json.dumps(stale))
    conflict = kubectl.run("replace", "-f", str(manifest), check=False)
    assert conflict.returncode == 1
    assert 'Operation cannot be fulfilled on pods "made": the object has been modified' in conflict.stderr


def test_kubectl_events_and_leases(kube_thread: ThreadedKubeApi, kubectl: Kubectl, tmp_path: Path) -> None:
    api = kube_thread.api
    pod = api.create_pod("web-0", node_name="n1")
    api.create(
        "events",
        {
            "metadata": {"name": "web-0.1"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web-0", "uid": pod["metadata"]["uid"]},
            "reason": "AddressAllocated",
            "message": "192.0.2.5 on net1",
            "type": "Normal",
            "source": {"component": "ipamd"},
        },
    )
    out = kubectl.run("get", "events", "--field-selector", "involvedObject.name=web-0").stdout.splitlines()
    assert out[0].split()[:4] == ["LAST", "SEEN", "TYPE", "REASON"]
    assert "AddressAllocated" in out[1] and "pod/web-0" in out[1] and "192.0.2.5 on net1" in out[1]
    api.create(
        "leases",
        {"metadata": {"name": "ipamd-leader"}, "spec": {"holderIdentity": "node-a", "leaseDurationSeconds": 15}},
        namespace="kube-system",
    )
    leases = kubectl.run("get", "leases", "-n", "kube-system").stdout.splitlines()
    assert leases[1].split()[:2] == ["ipamd-leader", "node-a"]


# ===========================================================================
# kubernetes_asyncio (the client ipamd uses)


@pytest.fixture
async def k8s(kube_api: KubeApiDouble, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    path = kube_api.write_kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=configuration)
    async with client.ApiClient(configuration=configuration) as api_client:
        yield api_client


async def _collect(stream: watch.Watch, count: int, timeout: float = 10.0) -> list[JSON]:
    """Read ``count`` raw events from a kubernetes_asyncio watch."""
    events: list[JSON] = []

    async def read() -> None:
        async for event in stream:
            events.append({"type": event["type"], "object": event["raw_object"]})
            if len(events) >= count:
                return

    await asyncio.wait_for(read(), timeout)
    return events


def _summary(events: list[JSON]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


async def test_list_then_watch_from_list_resource_version(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.create_pod("a", node_name="n1")
    listed = await core.list_namespaced_pod("default")
    assert [p.metadata.name for p in listed.items] == ["a"]
    list_rv = listed.metadata.resource_version
    assert list_rv == str(kube_api.resource_version)

    # Changes made after the list are replayed from history, in order.
    kube_api.create_pod("b", node_name="n1")
    kube_api.set_pod_phase("a", phase="Running")
    kube_api.delete_pod("b", grace_period_seconds=0)
    stream = watch.Watch()
    events = await _collect(
        stream.stream(core.list_namespaced_pod, "default", resource_version=list_rv, timeout_seconds=30), 3
    )
    assert _summary(events) == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(list_rv)
    # ... and then live changes follow on the same connection.
    kube_api.create_pod("c", node_name="n1")
    assert _summary(await _collect(stream, 1)) == [("ADDED", "c")]
    await stream.close()


async def test_resource_version_is_global_across_kinds(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    pod = kube_api.create_pod("a")
    lease = await client.CoordinationV1Api(k8s).create_namespaced_lease(
        "default", {"metadata": {"name": "l"}, "spec": {"holderIdentity": "x"}}
    )
    sts = kube_api.create_statefulset("s")
    rvs = [
        int(pod["metadata"]["resourceVersion"]),
        int(lease.metadata.resource_version),
        int(sts["metadata"]["resourceVersion"]),
    ]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3
    listed = await client.CoreV1Api(k8s).list_namespaced_pod("default")
    assert listed.metadata.resource_version == str(rvs[-1])


async def test_watch_from_compacted_resource_version_is_gone(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.create_pod("a")
    old_rv = str(kube_api.resource_version)
    kube_api.create_pod("b")
    kube_api.compact()
    stream = watch.Watch()
    with pytest.raises(ApiException) as info:
        await _collect(
            stream.stream(core.list_namespaced_pod, "default", resource_version=old_rv, timeout_seconds=5), 1
        )
    assert info.value.status == 410
    assert "Expired" in str(info.value.reason)
    await stream.close()
    # Resuming from the current resourceVersion is still fine.
    stream = watch.Watch()
    current = str(kube_api.resource_version)
    waiter = asyncio.ensure_future(
        _collect(stream.stream(core.list_namespaced_pod, "default", resource_version=current, timeout_seconds=30), 1)
    )
    await kube_api.wait_for_watches(1, "pods")
    kube_api.create_pod("c")
    assert _summary(await waiter) == [("ADDED", "c")]
    await stream.close()


async def test_gone_on_the_wire_is_200_then_error_event(kube_api: KubeApiDouble) -> None:
    kube_api.create_pod("a")
    kube_api.create_pod("b")
    kube_api.compact()
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{kube_api.url}/api/v1/namespaces/default/pods", params={"watch": "1", "resourceVersion": "1"}
        ) as resp:
            assert resp.status == 200
            line = json.loads(await resp.content.readline())
            assert await resp.content.readline() == b""  # the stream then ends
        assert line == {
            "type": "ERROR",
            "object": {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: 1 ({kube_api.resource_version})",
                "reason": "Expired",
                "code": 410,
            },
        }
        # A consistent list at a compacted resourceVersion is a plain HTTP 410.
        async with session.get(
            f"{kube_api.url}/api/v1/namespaces/default/pods",
            params={"resourceVersion": "1", "resourceVersionMatch": "Exact"},
        ) as resp:
            assert resp.status == 410
            assert (await resp.json())["reason"] == "Expired"


async def test_history_limit_expires_old_versions() -> None:
    async with KubeApiDouble(history_limit=3) as api:
        start = api.resource_version
        for i in range(5):
            api.create_pod(f"p{i}")
        assert api.store.changes_after(start) is None
        assert api.store.changes_after(api.resource_version - 3) is not None


async def test_expire_watches_sends_error_410_mid_stream(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    stream = watch.Watch()
    waiter = asyncio.ensure_future(
        _collect(
            stream.stream(
                core.list_namespaced_pod, "default", resource_version=str(kube_api.resource_version), timeout_seconds=30
            ),
            2,
        )
    )
    await kube_api.wait_for_watches(1, "pods")
    kube_api.create_pod("a")
    await async_wait_for(lambda: kube_api.watch_count("pods") == 1)
    assert kube_api.expire_watches() == 1
    with pytest.raises(ApiException) as info:
        await waiter
    assert info.value.status == 410
    await stream.close()


async def test_bookmarks(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.create_pod("a")
    stream = watch.Watch()
    start_rv = str(kube_api.resource_version)
    waiter = asyncio.ensure_future(
        _collect(
            stream.stream(
                core.list_namespaced_pod,
                "default",
                resource_version=start_rv,
                allow_watch_bookmarks=True,
                timeout_seconds=30,
            ),
            2,
        )
    )
    # A watch without bookmarks enabled must not get them.
    plain = watch.Watch()
    plain_waiter = asyncio.ensure_future(
        _collect(plain.stream(core.list_namespaced_pod, "default", resource_version=start_rv, timeout_seconds=30), 1)
    )
    await kube_api.wait_for_watches(2, "pods")
    kube_api.create("leases", {"metadata": {"name": "other-kind"}})  # bumps the global rv only
    assert kube_api.send_bookmarks() == 1
    kube_api.create_pod("b")
    events = await waiter
    assert [e["type"] for e in events] == ["BOOKMARK", "ADDED"]
    bookmark = events[0]["object"]
    assert bookmark["kind"] == "Pod" and bookmark["apiVersion"] == "v1"
    assert int(bookmark["metadata"]["resourceVersion"]) == int(start_rv) + 1
    assert _summary(await plain_waiter) == [("ADDED", "b")]
    await stream.close()
    await plain.close()


async def test_bookmark_interval_sends_bookmarks_on_its_own() -> None:
    async with KubeApiDouble(bookmark_interval=0.05) as api:
        async with aiohttp.ClientSession() as session:
            async with session.get(
                f"{api.url}/api/v1/pods",
                params={"watch": "true", "allowWatchBookmarks": "true", "resourceVersion": str(api.resource_version)},
            ) as resp:
                event = json.loads(await asyncio.wait_for(resp.content.readline(), 10))
        assert event["type"] == "BOOKMARK"


async def test_watch_without_resource_version_starts_with_current_state(kube_api: KubeApiDouble) -> None:
    kube_api.create_pod("a", node_name="n1")
    kube_api.create_pod("b", node_name="n2")
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{kube_api.url}/api/v1/pods",
            params={
                "watch": "1",
                "fieldSelector": "spec.nodeName=n1",
                "sendInitialEvents": "true",
                "allowWatchBookmarks": "true",
                "resourceVersionMatch": "NotOlderThan",
            },
        ) as resp:
            first = json.loads(await resp.content.readline())
            second = json.loads(await resp.content.readline())
    assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "a")
    assert second["type"] == "BOOKMARK"
    assert second["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


async def test_selector_changes_appear_as_added_and_deleted(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.create_pod("a", node_name="n1", labels={"ipam": "yes"})
    kube_api.create_pod("other", node_name="n2", labels={"ipam": "yes"})
    stream = watch.Watch()
    waiter = asyncio.ensure_future(
        _collect(
            stream.stream(
                core.list_pod_for_all_namespaces,
                field_selector="spec.nodeName=n1",
                label_selector="ipam=yes",
                resource_version=str(kube_api.resource_version),
                timeout_seconds=30,
            ),
            3,
        )
    )
    await kube_api.wait_for_watches(1, "pods")
    kube_api.update("pods", "other", lambda p: p["metadata"]["labels"].update(x="1"))  # other node: invisible
    kube_api.update("pods", "a", lambda p: p["metadata"]["labels"].update(ipam="no"))  # leaves the selector
    kube_api.update("pods", "a", lambda p: p["metadata"]["labels"].update(ipam="yes"))  # comes back
    kube_api.set_pod_phase("a", phase="Running")
    events = await waiter
    assert _summary(events) == [("DELETED", "a"), ("ADDED", "a"), ("MODIFIED", "a")]
    await stream.close()


async def test_drop_watches_and_client_reconnects_without_losing_events(
    kube_api: KubeApiDouble, k8s: client.ApiClient
) -> None:
    core = client.CoreV1Api(k8s)
    stream = watch.Watch()
    # No timeout_seconds: kubernetes_asyncio then reconnects from its last rv.
    waiter = asyncio.ensure_future(
        _collect(
            stream.stream(core.list_namespaced_pod, "default", resource_version=str(kube_api.resource_version)), 2, 20
        )
    )
    await kube_api.wait_for_watches(1, "pods")
    kube_api.create_pod("a")
    await async_wait_for(lambda: stream.resource_version == str(kube_api.resource_version))
    assert kube_api.drop_watches() == 1
    assert kube_api.watch_count() == 0
    kube_api.create_pod("b")  # happens while no watch is open
    events = await waiter
    assert _summary(events) == [("ADDED", "a"), ("ADDED", "b")]
    watch_requests = [r for r in kube_api.recorded("GET", "/pods") if r.query.get("watch")]
    assert len(watch_requests) == 2
    assert watch_requests[1].query["resourceVersion"] == events[0]["object"]["metadata"]["resourceVersion"]
    await stream.close()


async def test_abrupt_watch_drop_surfaces_as_a_client_error(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    stream = watch.Watch()
    waiter = asyncio.ensure_future(
        _collect(
            stream.stream(core.list_namespaced_pod, "default", resource_version=str(kube_api.resource_version)), 1, 20
        )
    )
    await kube_api.wait_for_watches(1, "pods")
    assert kube_api.drop_watches(abrupt=True) == 1
    # kubernetes_asyncio does not retry a connection cut mid-stream (as when
    # an apiserver restarts): its caller has to.
    with pytest.raises(aiohttp.ClientPayloadError):
        await waiter
    await stream.close()


async def test_watch_timeout_seconds_is_honoured(kube_api: KubeApiDouble) -> None:
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as session:
        started = loop.time()
        async with session.get(
            f"{kube_api.url}/api/v1/namespaces/default/pods",
            params={"watch": "true", "timeoutSeconds": "1", "resourceVersion": str(kube_api.resource_version)},
        ) as resp:
            assert await asyncio.wait_for(resp.content.read(), 10) == b""
        assert 0.9 <= loop.time() - started < 5
    assert kube_api.watch_count() == 0


async def test_graceful_delete_over_the_api(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.create_pod("a", node_name="n1", phase="Running")
    stream = watch.Watch()
    waiter = asyncio.ensure_future(
        _collect(
            stream.stream(
                core.list_namespaced_pod, "default", resource_version=str(kube_api.resource_version), timeout_seconds=30
            ),
            2,
        )
    )
    await kube_api.wait_for_watches(1, "pods")
    answer = await core.delete_namespaced_pod("a", "default", grace_period_seconds=20)
    assert answer.metadata.deletion_grace_period_seconds == 20
    assert kube_api.advance(19) == 0
    assert kube_api.advance(1) == 1
    events = await waiter
    assert _summary(events) == [("MODIFIED", "a"), ("DELETED", "a")]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]
    await stream.close()
    # An unscheduled pod is deleted at once whatever the grace period.
    kube_api.create_pod("pending")
    await core.delete_namespaced_pod("pending", "default", grace_period_seconds=30)
    assert kube_api.get_pod("pending") is None


async def test_auto_finalize_removes_pods_once_due() -> None:
    async with KubeApiDouble(auto_finalize_interval=0.01) as api:
        api.create_pod("a", node_name="n1")
        api.delete_pod("a", grace_period_seconds=10)
        assert api.get_pod("a") is not None
        api.clock.advance(11)  # only the clock: the background check does the rest
        await async_wait_for(lambda: api.get_pod("a") is None, what="pod removal")


async def test_finalizers_hold_deletion(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.create_pod("a", node_name="n1", finalizers=["ipamd.example/release"])
    await core.delete_namespaced_pod("a", "default", grace_period_seconds=0)
    held = kube_api.get_pod("a")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    await core.patch_namespaced_pod(
        "a", "default", {"metadata": {"finalizers": None}}, _content_type="application/merge-patch+json"
    )
    assert kube_api.get_pod("a") is None


async def test_merge_patch_touches_only_given_annotations(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.create_pod("a", annotations={"keep": "1", "drop": "2"}, labels={"app": "x"})
    patched = await core.patch_namespaced_pod(
        "a",
        "default",
        {"metadata": {"annotations": {"ipamd/ip": "192.0.2.5", "drop": None}}},
        _content_type="application/merge-patch+json",
    )
    assert patched.metadata.annotations == {"keep": "1", "ipamd/ip": "192.0.2.5"}
    assert patched.metadata.labels == {"app": "x"}
    # kubernetes_asyncio sends dict patches as strategic merge patches by default.
    patched = await core.patch_namespaced_pod("a", "default", {"metadata": {"annotations": {"s": "1"}}})
    assert patched.metadata.annotations == {"keep": "1", "ipamd/ip": "192.0.2.5", "s": "1"}
    recorded = kube_api.recorded("PATCH")
    assert [r.content_type for r in recorded] == [
        "application/merge-patch+json",
        "application/strategic-merge-patch+json",
    ]
    # ... and lists as JSON patches.
    patched = await core.patch_namespaced_pod("a", "default", [{"op": "remove", "path": "/metadata/annotations/s"}])
    assert "s" not in patched.metadata.annotations


async def test_noop_patch_keeps_resource_version(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    pod = kube_api.create_pod("a", annotations={"k": "v"})
    patched = await core.patch_namespaced_pod(
        "a", "default", {"metadata": {"annotations": {"k": "v"}}}, _content_type="application/merge-patch+json"
    )
    assert patched.metadata.resource_version == pod["metadata"]["resourceVersion"]
    assert kube_api.resource_version == int(pod["metadata"]["resourceVersion"])


async def test_patch_with_resource_version_is_a_precondition(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    pod = kube_api.create_pod("a")
    rv = pod["metadata"]["resourceVersion"]
    kube_api.update("pods", "a", lambda p: p["metadata"].setdefault("labels", {}).update(x="1"))
    with pytest.raises(ApiException) as info:
        await core.patch_namespaced_pod(
            "a",
            "default",
            {"metadata": {"resourceVersion": rv, "labels": {"y": "1"}}},
            _content_type="application/merge-patch+json",
        )
    assert info.value.status == 409
    assert json.loads(info.value.body)["reason"] == "Conflict"


async def test_lease_update_conflicts(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    coordination = client.CoordinationV1Api(k8s)
    body = {
        "metadata": {"name": "ipamd"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "renewTime": "2026-01-01T00:00:00.000000Z"},
    }
    created = await coordination.create_namespaced_lease("default", body)
    with pytest.raises(ApiException) as exists:
        await coordination.create_namespaced_lease("default", body)
    assert exists.value.status == 409 and json.loads(exists.value.body)["reason"] == "AlreadyExists"

    created.spec.holder_identity = "b"
    renewed = await coordination.replace_namespaced_lease("ipamd", "default", created)
    assert renewed.spec.holder_identity == "b"
    created.spec.holder_identity = "c"  # still carries the old resourceVersion
    with pytest.raises(ApiException) as stale:
        await coordination.replace_namespaced_lease("ipamd", "default", created)
    assert stale.value.status == 409
    assert json.loads(stale.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'Operation cannot be fulfilled on leases.coordination.k8s.io "ipamd": the object has been '
        "modified; please apply your changes to the latest version and try again",
        "reason": "Conflict",
        "details": {"name": "ipamd", "group": "coordination.k8s.io", "kind": "leases"},
        "code": 409,
    }
    # A strategic patch of the holder works and bumps the resourceVersion.
    patched = await coordination.patch_namespaced_lease("ipamd", "default", {"spec": {"holderIdentity": "d"}})
    assert int(patched.metadata.resource_version) > int(renewed.metadata.resource_version)


async def test_status_bodies(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    with pytest.raises(ApiException) as missing:
        await core.read_namespaced_pod("x", "default")
    assert json.loads(missing.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "kind": "pods"},
        "code": 404,
    }
    with pytest.raises(ApiException) as invalid:
        await core.create_namespaced_pod("default", {"metadata": {"name": "bad"}, "spec": {"containers": []}})
    body = json.loads(invalid.value.body)
    assert invalid.value.status == 422 and body["reason"] == "Invalid"
    assert body["message"] == 'Pod "bad" is invalid: spec.containers: Required value'
    assert body["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}
    ]
    with pytest.raises(ApiException) as no_ns:
        await core.create_namespaced_pod(
            "nowhere", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
        )
    assert no_ns.value.status == 404 and json.loads(no_ns.value.body)["message"] == 'namespaces "nowhere" not found'
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{kube_api.url}/api/v1/namespaces/default/pods", json={}) as resp:
            assert resp.status == 405 and (await resp.json())["reason"] == "MethodNotAllowed"
        async with session.get(f"{kube_api.url}/api/v1/widgets") as resp:
            assert resp.status == 404 and (await resp.json())["reason"] == "NotFound"
        async with session.get(f"{kube_api.url}/api/v1/pods", params={"labelSelector": "a in (b"}) as resp:
            assert resp.status == 400 and (await resp.json())["reason"] == "BadRequest"


async def test_events_core_and_events_k8s_io(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    pod = kube_api.create_pod("web-0", node_name="n1")
    involved = {
        "kind": "Pod",
        "namespace": "default",
        "name": "web-0",
        "uid": pod["metadata"]["uid"],
        "apiVersion": "v1",
    }
    await client.CoreV1Api(k8s).create_namespaced_event(
        "default",
        {
            "metadata": {"generateName": "web-0."},
            "involvedObject": involved,
            "reason": "AddressAllocated",
            "message": "192.0.2.5",
            "type": "Normal",
            "source": {"component": "ipamd"},
            "count": 1,
        },
    )
    await client.EventsV1Api(k8s).create_namespaced_event(
        "default",
        {
            "metadata": {"name": "web-0.v1"},
            "regarding": involved,
            "reason": "AddressReleased",
            "note": "gone",
            "type": "Normal",
            "eventTime": "2026-01-01T00:00:00.000000Z",
            "reportingController": "ipamd",
            "reportingInstance": "ipamd-n1",
            "action": "Release",
        },
    )
    events = kube_api.events("default", involved_name="web-0")
    assert sorted(e["reason"] for e in events) == ["AddressAllocated", "AddressReleased"]
    released = kube_api.events("default", reason="AddressReleased")[0]
    assert released["message"] == "gone" and released["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert released["kind"] == "Event" and released["apiVersion"] == "v1"
    listed = await client.CoreV1Api(k8s).list_namespaced_event("default", field_selector="reason=AddressAllocated")
    assert [e.message for e in listed.items] == ["192.0.2.5"]
    assert listed.items[0].metadata.name.startswith("web-0.")
    # Read raw: as from a real apiserver, a core/v1 Event without eventTime
    # has none in the events.k8s.io/v1 view either, which the typed model
    # rejects (eventTime is "required" there).
    response = await client.EventsV1Api(k8s).list_namespaced_event("default", _preload_content=False)
    v1 = json.loads(await response.read())
    assert {e["note"] for e in v1["items"]} == {"192.0.2.5", "gone"}
    assert all("regarding" in e and "involvedObject" not in e for e in v1["items"])


async def test_statefulsets(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    apps = client.AppsV1Api(k8s)
    sts = kube_api.create_statefulset("db", replicas=3)
    pod = kube_api.statefulset_pod(sts, 2, node_name="n1")
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "StatefulSet"
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "2"
    scaled = kube_api.scale_statefulset("db", 1)
    assert scaled["spec"]["replicas"] == 1 and scaled["metadata"]["generation"] == 2
    read = await apps.read_namespaced_stateful_set("db", "default")
    assert read.spec.replicas == 1
    patched = await apps.patch_namespaced_stateful_set(
        "db", "default", {"spec": {"replicas": 4}}, _content_type="application/merge-patch+json"
    )
    assert patched.spec.replicas == 4
    scale = await apps.read_namespaced_stateful_set_scale("db", "default")
    assert scale.spec.replicas == 4 and scale.status.selector == "app=db"
    listed = await apps.list_stateful_set_for_all_namespaces()
    assert [s.metadata.name for s in listed.items] == ["db"]
    status = await apps.delete_namespaced_stateful_set("db", "default")
    assert status.status == "Success"
    assert kube_api.get("statefulsets", "db") is None


async def test_pagination_is_consistent(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    for name in "abcde":
        kube_api.create_pod(name)
    first = await core.list_namespaced_pod("default", limit=2)
    assert [p.metadata.name for p in first.items] == ["a", "b"]
    assert first.metadata.remaining_item_count == 3
    kube_api.delete_pod("c")  # after the first page: still listed, as of the snapshot
    kube_api.create_pod("bb")
    rest = await core.list_namespaced_pod("default", limit=10, _continue=first.metadata._continue)
    assert [p.metadata.name for p in rest.items] == ["c", "d", "e"]
    assert rest.metadata.resource_version == first.metadata.resource_version
    kube_api.compact()
    with pytest.raises(ApiException) as info:
        await core.list_namespaced_pod("default", limit=1, _continue=first.metadata._continue)
    assert info.value.status == 410


async def test_status_subresource(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.create_pod("a", node_name="n1")
    created = await core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "b"},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running"},
        },
    )
    assert created.status.phase == "Pending"  # client-sent status is dropped on create
    patched = await core.patch_namespaced_pod_status(
        "a", "default", {"status": {"phase": "Running", "podIP": "192.0.2.9"}}
    )
    assert patched.status.phase == "Running" and patched.status.pod_ip == "192.0.2.9"
    patched = await core.patch_namespaced_pod_status("a", "default", {"metadata": {"labels": {"x": "1"}}})
    assert not patched.metadata.labels  # status writes change only status


async def test_injected_errors_and_request_log(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    kube_api.inject_error("GET", r"/api/v1/pods$", code=503, reason="ServiceUnavailable", message="etcd down")
    with pytest.raises(ApiException) as info:
        await core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert info.value.status == 503
    listed = await core.list_pod_for_all_namespaces(field_selector="spec.nodeName=n1")
    assert listed.items == []
    recorded = kube_api.recorded("GET", "/api/v1/pods")
    assert [r.query.get("fieldSelector") for r in recorded] == ["spec.nodeName=n1"] * 2
    assert recorded[0].headers.get("Authorization") == "Bearer kube-double-token"


async def test_namespace_deletion_removes_contents(kube_api: KubeApiDouble, k8s: client.ApiClient) -> None:
    kube_api.create_pod("a", namespace="team")
    kube_api.create("leases", {"metadata": {"name": "l"}}, namespace="team")
    await client.CoreV1Api(k8s).delete_namespace("team")
    assert kube_api.pods("team") == [] and kube_api.list_objects("leases", "team") == []
    assert kube_api.get("namespaces", "team") is None


def test_threaded_helpers_from_other_threads(kube_thread: ThreadedKubeApi) -> None:
    api = kube_thread.api
    results: list[str] = []

    def worker(i: int) -> None:
        results.append(api.create_pod(f"p{i}", node_name="n1")["metadata"]["resourceVersion"])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 8
    assert len(api.pods("default")) == 8


# ===========================================================================
# Pure pieces


def test_label_selector_semantics() -> None:
    labels = {"app": "web", "tier": "fe", "n": "5"}
    cases = {
        "app=web": True,
        "app==web": True,
        "app!=web": False,
        "missing!=x": True,
        "app in (web,db)": True,
        "app notin (web)": False,
        "missing notin (x)": True,
        "tier": True,
        "!tier": False,
        "!missing": True,
        "n>4": True,
        "n<5": False,
        "app=web,tier=be": False,
        "": True,
    }
    for text, expected in cases.items():
        assert parse_label_selector(text).matches(labels) is expected, text
    for bad in ("a in (b", "=x", "a,,b", "a b"):
        with pytest.raises(ApiError):
            parse_label_selector(bad)


def test_field_selector_semantics() -> None:
    getters = {
        "spec.nodeName": lambda o: o["spec"].get("nodeName", ""),
        "metadata.name": lambda o: o["metadata"]["name"],
    }
    pod = {"metadata": {"name": "a,b"}, "spec": {}}
    assert parse_field_selector("spec.nodeName=", getters).matches(pod)
    assert parse_field_selector(r"metadata.name=a\,b", getters).matches(pod)
    assert not parse_field_selector("spec.nodeName!=", getters).matches(pod)
    with pytest.raises(ApiError):
        parse_field_selector("status.podIP=1", getters)


def test_patch_flavours() -> None:
    doc = {
        "metadata": {"annotations": {"a": "1"}, "finalizers": ["x"]},
        "spec": {"containers": [{"name": "c", "image": "old"}, {"name": "d", "image": "d"}]},
    }
    assert merge_patch(doc, {"spec": {"containers": [{"name": "c", "image": "new"}]}})["spec"]["containers"] == [
        {"name": "c", "image": "new"}
    ]
    smp = strategic_merge_patch(
        doc, {"metadata": {"finalizers": ["y"]}, "spec": {"containers": [{"name": "c", "image": "new"}]}}
    )
    assert smp["spec"]["containers"] == [{"name": "c", "image": "new"}, {"name": "d", "image": "d"}]
    assert smp["metadata"]["finalizers"] == ["x", "y"]
    smp = strategic_merge_patch(
        doc,
        {
            "spec": {"containers": [{"name": "d", "$patch": "delete"}]},
            "metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]},
        },
    )
    assert smp["spec"]["containers"] == [{"name": "c", "image": "old"}] and smp["metadata"]["finalizers"] == []
    patched = json_patch(
        doc,
        [
            {"op": "replace", "path": "/spec/containers/1/image", "value": "e"},
            {"op": "add", "path": "/metadata/finalizers/-", "value": "z"},
            {"op": "move", "from": "/metadata/annotations/a", "path": "/metadata/annotations/b"},
            {"op": "copy", "from": "/metadata/annotations/b", "path": "/metadata/annotations/c"},
        ],
    )
    assert patched["spec"]["containers"][1]["image"] == "e"
    assert patched["metadata"] == {"annotations": {"b": "1", "c": "1"}, "finalizers": ["x", "z"]}
    assert doc["metadata"]["annotations"] == {"a": "1"}  # inputs are never modified
    for bad in (
        [{"op": "remove", "path": "/nope"}],
        [{"op": "test", "path": "/metadata/finalizers/0", "value": "y"}],
        [{"op": "replace", "path": "/spec/containers/5", "value": 1}],
    ):
        with pytest.raises(PatchError):
            json_patch(doc, bad)


# ---------------------------------------------------------------------------
# Fidelity for Kubernetes mode on real clusters (issue 11)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_lists_at_resource_version_0_come_from_the_cache_and_ignore_limit(kube_thread: ThreadedKubeApi) -> None:
    api = kube_thread.api
    for i in range(5):
        api.create_pod(f"p{i}", node_name="n1")
    status, _, cached = _get(f"{api.url}/api/v1/pods?limit=2&resourceVersion=0")
    assert status == 200 and len(cached["items"]) == 5 and "continue" not in cached["metadata"]
    status, _, paged = _get(f"{api.url}/api/v1/pods?limit=2")
    assert status == 200 and len(paged["items"]) == 2 and paged["metadata"]["continue"]
    status, _, rest = _get(f"{api.url}/api/v1/pods?limit=2&resourceVersion=0&continue={paged['metadata']['continue']}")
    assert status == 200 and [p["metadata"]["name"] for p in rest["items"]] == ["p2", "p3"]
    assert [r.served_from for r in api.recorded("GET", "/api/v1/pods")] == ["cache", "etcd", "etcd"]


def test_lists_from_a_paginating_cache_honour_limit() -> None:
    handle = KubeApiDouble.start_in_thread(paginate_cache=True)
    try:
        for i in range(3):
            handle.api.create_pod(f"p{i}", node_name="n1")
        _, _, page = _get(f"{handle.api.url}/api/v1/pods?limit=2&resourceVersion=0")
        assert len(page["items"]) == 2 and page["metadata"]["continue"]
    finally:
        handle.stop()


def test_metadata_only_lists(kube_thread: ThreadedKubeApi) -> None:
    api = kube_thread.api
    api.create_pod("slim", node_name="n1", realistic=True)
    accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
    status, _, listed = _get(f"{api.url}/api/v1/pods", {"Accept": accept})
    assert status == 200 and listed["kind"] == "PartialObjectMetadataList"
    [item] = listed["items"]
    assert set(item) == {"kind", "apiVersion", "metadata"} and item["metadata"]["managedFields"]


def test_realistic_pods_are_about_7_kb(kube_thread: ThreadedKubeApi) -> None:
    pod = kube_thread.api.create_pod(
        "web-5d4f8c7b9d-abcde", node_name="n1", realistic=True, phase="Running", pod_ip="192.0.2.5"
    )
    assert 6_000 < len(json.dumps(pod)) < 9_000
    assert {m["manager"] for m in pod["metadata"]["managedFields"]} >= {"kube-controller-manager", "kubelet"}


def test_429_carries_retry_after(kube_thread: ThreadedKubeApi) -> None:
    api = kube_thread.api
    api.inject_error(
        "GET",
        r"^/api/v1/pods$",
        code=429,
        reason="TooManyRequests",
        message="too many requests, please try again later",
        retry_after=3,
    )
    status, headers, body = _get(f"{api.url}/api/v1/pods")
    assert status == 429 and headers["Retry-After"] == "3"
    assert body["reason"] == "TooManyRequests" and body["details"] == {"retryAfterSeconds": 3}


def test_date_header_follows_the_double_clock(kube_thread: ThreadedKubeApi) -> None:
    from email.utils import parsedate_to_datetime

    api = kube_thread.api
    api.clock.advance(7200)
    _, headers, _ = _get(f"{api.url}/api/v1/namespaces")
    ahead = parsedate_to_datetime(headers["Date"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(seconds=7190) < ahead < dt.timedelta(seconds=7210)


def test_kubectl_patch_with_another_uid_is_a_precondition_failure(
    kube_thread: ThreadedKubeApi, kubectl: Kubectl
) -> None:
    api = kube_thread.api
    pod = api.create_pod("web-0", node_name="n1")
    patch = json.dumps({"metadata": {"uid": "00000000-0000-0000-0000-000000000000", "annotations": {"k": "v"}}})
    refused = kubectl.run("patch", "pod", "web-0", "--type", "merge", "-p", patch, check=False)
    assert refused.returncode != 0
    assert (
        f"Precondition failed: UID in precondition: 00000000-0000-0000-0000-000000000000, UID in object meta: {pod['metadata']['uid']}"
        in refused.stderr
    )
    assert "k" not in (api.get_pod("web-0")["metadata"].get("annotations") or {})
    matching = json.dumps({"metadata": {"uid": pod["metadata"]["uid"], "annotations": {"k": "v"}}})
    kubectl.run("patch", "pod", "web-0", "--type", "merge", "-p", matching)
    assert api.get_pod("web-0")["metadata"]["annotations"] == {"k": "v"}
