"""KubeVirt virtual machines in Kubernetes mode, through the real CNI plugin binary: the VM
owns its addresses, not its virt-launcher pods (restart, live migration, deletion)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.k8s.conftest import NODE, PROVIDER, Cluster
from tests.support.waiting import wait_for

MAC = "02:00:00:00:0a:01"


def plugin(
    cluster: Cluster, command: str, pod: dict[str, Any], *, mac: str | None = MAC, **config: Any
) -> tuple[int, Any]:
    """The plugin as Multus runs it for a VM's secondary network (KubeVirt's pod interface name)."""
    if mac:
        # KubeVirt puts the VM interface's MAC into the network selection; Multus passes it.
        config["runtimeConfig"] = {"mac": mac}
    return cluster.plugin(command, pod, ifname="pod6c6f6e", **config)


def add(cluster: Cluster, pod: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """The plugin's ADD for ``pod``, which must succeed; returns its result."""
    code, result = plugin(cluster, "ADD", pod, **kwargs)
    assert code == 0, result
    return dict(result)


def vm_allocations(cluster: Cluster, vm: str) -> list[dict[str, Any]]:
    return [a for a in cluster.allocations() if a["owner"]["pod"] == f"vm/{vm}"]


def start(
    cluster: Cluster, vm: dict[str, Any], *, suffix: str, node: str = NODE
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The VM controller's and virt-controller's work: an instance, then its launcher pod."""
    vmi = cluster.api.create_virtual_machine_instance(vm)
    return vmi, cluster.api.launcher_pod(vmi, suffix=suffix, node_name=node)


def stop(cluster: Cluster, vmi: dict[str, Any], pod: dict[str, Any]) -> None:
    """A VM stopping: its launcher's sandbox is torn down (DEL), the pod and the instance go."""
    code, result = plugin(cluster, "DEL", pod)
    assert code == 0, result
    cluster.api.delete_pod(pod["metadata"]["name"], pod["metadata"]["namespace"], grace_period_seconds=0)
    cluster.api.delete("virtualmachineinstances", vmi["metadata"]["name"], vmi["metadata"]["namespace"])


def test_a_restarted_vm_keeps_its_address_and_mac_under_a_new_launcher_pod(cluster: Cluster):
    vm = cluster.api.create_virtual_machine("db")
    vmi, first = start(cluster, vm, suffix="abcde")
    address = add(cluster, first)["ips"][0]["address"]
    [allocation] = vm_allocations(cluster, "db")
    assert (allocation["hold"], allocation["mac"]) == ("vm", MAC)
    # Results go to the launcher pod, where KubeVirt's users read them.
    assert (
        cluster.annotations(first["metadata"]["name"])[f"{PROVIDER}.kubernetes.io/ip_address"] == address.split("/")[0]
    )

    stop(cluster, vmi, first)
    cluster.barrier()
    assert [a["id"] for a in vm_allocations(cluster, "db")] == [allocation["id"]]

    # Started again: a new instance (new uid) and a launcher pod of another name.
    _, second = start(cluster, vm, suffix="fghij")
    assert add(cluster, second, mac=None)["ips"][0]["address"] == address
    [again] = vm_allocations(cluster, "db")
    assert (again["id"], again["mac"], again["owner"]["podUid"]) == (allocation["id"], MAC, second["metadata"]["uid"])


def test_live_migration_target_shares_the_address_and_the_sources_del_keeps_it(cluster: Cluster):
    vm = cluster.api.create_virtual_machine("web")
    vmi, source = start(cluster, vm, suffix="src01")
    address = add(cluster, source)["ips"][0]["address"]

    # Migration: a second launcher pod of the same instance, on another node, both alive.
    target = cluster.api.launcher_pod(vmi, suffix="dst01", node_name="n2")
    result = add(cluster, target)
    assert result["ips"][0]["address"] == address
    assert [a["mac"] for a in vm_allocations(cluster, "web")] == [MAC]
    # CHECK from either launcher pod finds the VM's addresses.
    for pod in (source, target):
        code, checked = plugin(cluster, "CHECK", pod, prevResult=result)
        assert (code, checked) == (0, None), checked

    # The source's sandbox and pod go once the migration completes: the address stays.
    code, result = plugin(cluster, "DEL", source)
    assert code == 0, result
    cluster.api.delete_pod(source["metadata"]["name"], grace_period_seconds=0)
    cluster.barrier()
    [held] = vm_allocations(cluster, "web")
    assert held["addresses"][0]["address"] == address.split("/")[0]
    assert held["owner"]["podUid"] == target["metadata"]["uid"]


def test_deleting_the_vm_releases_its_address(cluster: Cluster):
    vm = cluster.api.create_virtual_machine("gone")
    vmi, pod = start(cluster, vm, suffix="zzzzz")
    address = add(cluster, pod)["ips"][0]["address"].split("/")[0]

    # Stopped (no instance, no pod) but the VirtualMachine still exists: kept.
    stop(cluster, vmi, pod)
    cluster.barrier()
    assert vm_allocations(cluster, "gone")

    cluster.api.delete("virtualmachines", "gone")
    # No launcher pod is left to notice: the reconciler (every second here) releases it.
    wait_for(lambda: not vm_allocations(cluster, "gone"), what="the release of the deleted VM's address")
    history = cluster.daemon.client.get(f"/v1/ips/{address}").body["history"]
    assert history[-1]["releaseReason"] == "vm deleted"


def test_a_running_vms_deletion_is_seen_when_its_launcher_pod_goes(cluster: Cluster):
    vm = cluster.api.create_virtual_machine("quick")
    vmi, pod = start(cluster, vm, suffix="qqqqq")
    add(cluster, pod)
    # Deleting a running VM: the VM and its instance go, then the launcher pod.
    cluster.api.delete("virtualmachines", "quick")
    cluster.api.delete("virtualmachineinstances", "quick")
    cluster.api.delete_pod(pod["metadata"]["name"], grace_period_seconds=0)
    wait_for(lambda: not vm_allocations(cluster, "quick"), what="the release of the deleted VM's address")


@pytest.mark.parametrize("kube", [{"kubevirt": False}], indirect=True, ids=["kubevirt-absent"])
def test_without_kubevirt_the_reconciler_keeps_vm_addresses_and_still_releases_pods(cluster: Cluster):
    """KubeVirt's CRDs gone (its paths answer 404) while a VM-held allocation remains: the
    reconciler cannot list VMs, keeps the VM's addresses and goes on releasing pods'."""
    assert cluster.kube_request("GET", "/apis/kubevirt.io/v1/virtualmachines") == 404
    assert cluster.kube_request("GET", "/apis/kubevirt.io") == 404
    # A launcher pod of an instance the API server no longer serves (its owner reference stays).
    vmi = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": {"name": "old", "namespace": "default", "uid": "4f1c0e5e-0000-4000-8000-000000000001"},
    }
    launcher = cluster.api.launcher_pod(vmi, suffix="aaaaa", node_name=NODE)
    plain = cluster.pod("plain")
    add(cluster, launcher)
    assert cluster.add(plain).status == 200
    [held] = vm_allocations(cluster, "old")
    assert held["hold"] == "vm"

    # Both pods go while the daemon is down: only the reconciler can notice.
    cluster.daemon.stop()
    for pod in (launcher, plain):
        cluster.api.delete_pod(pod["metadata"]["name"], grace_period_seconds=0)
    cluster.daemon.start()
    wait_for(
        lambda: not [a for a in cluster.allocations() if a["owner"]["pod"] == "plain"],
        what="the reconciler releasing the plain pod",
    )
    assert [a["id"] for a in vm_allocations(cluster, "old")] == [held["id"]]
    assert "cannot list KubeVirt virtual machines" in cluster.daemon.log()
