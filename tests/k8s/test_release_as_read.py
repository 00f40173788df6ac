"""Releases decided on a read hold only while the allocation is still the one read.

The reconciler and the pod watch decide from a snapshot (the pod list, the allocation list)
and release afterwards. In between, a new instance of the pod (same name, another UID) may
take the allocation over: same row, same address, and that pod is alive. Releasing the row
by its id then would free a live pod's address for the next ADD. On both databases, with the
API double and the service in process: the takeover is made to land right between the
decision and the release.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ipamd.core.allocation import Owner
from ipamd.core.nad import NetworkRequest
from ipamd.k8s.client import KubeClient
from ipamd.k8s.events import EventRecorder
from ipamd.k8s.policy import KubernetesPolicy
from ipamd.k8s.reconciler import Reconciler
from ipamd.k8s.writeback import AnnotationWriter
from ipamd.service import AddRequest, Ipam
from tests.kube_double import KubeApiDouble
from tests.support.inprocess import opened_ipam

NETWORK = "default/macvlan-net"


def add(uid: str, container: str, *, replaces: str | None = None) -> AddRequest:
    return AddRequest(
        owner=Owner(NETWORK, "default", "worker", "net1"),
        network=NetworkRequest(NETWORK, None),
        subnet_name="net1",
        container_id=container,
        pod_uid=uid,
        origin="cni",
        check_uid=True,
        replaces_uid=replaces,
    )


@pytest.fixture
async def cluster(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[KubeApiDouble, KubeClient, Ipam]]:
    async with (
        KubeApiDouble() as api,
        opened_ipam(database_url, node="n1") as ipam,
    ):
        client = await KubeClient.connect(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            await ipam.create_subnet({"name": "net1", "cidrBlock": "192.0.2.0/28", "provider": NETWORK})
            yield api, client, ipam
        finally:
            await client.close()


def take_over_before_the_release(monkeypatch: pytest.MonkeyPatch, ipam: Ipam, new_uid: str, old_uid: str) -> list[int]:
    """The pod's new instance ADDs (a takeover of the row) right before the first release
    commits; returns the ids released."""
    release = ipam.release
    released: list[int] = []

    async def takeover_then_release(allocation_id: int, **options: object) -> object:
        if not released:
            taken = await ipam.allocate(add(new_uid, "sandbox-2", replaces=old_uid))
            assert taken.id == allocation_id and taken.pod_uid == new_uid
        released.append(allocation_id)
        return await release(allocation_id, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(ipam, "release", takeover_then_release)
    return released


async def test_the_reconciler_keeps_an_allocation_a_new_pod_instance_took_over_since_its_list(
    cluster: tuple[KubeApiDouble, KubeClient, Ipam], monkeypatch: pytest.MonkeyPatch
) -> None:
    api, client, ipam = cluster
    old = api.create_pod("worker", node_name="n1", phase="Failed")
    old_uid = old["metadata"]["uid"]
    first = await ipam.allocate(add(old_uid, "sandbox-1"))
    released = take_over_before_the_release(monkeypatch, ipam, "uid-of-the-new-instance", old_uid)

    done = await Reconciler(ipam, client, None, interval=600, grace=0).reconcile_once()

    assert released == [first.id]  # it did decide to release the failed instance's allocation
    assert done == []
    [kept] = await ipam.list_allocations()
    assert (kept.id, kept.pod_uid, kept.addresses) == (first.id, "uid-of-the-new-instance", first.addresses)


async def test_the_pod_watch_keeps_an_allocation_a_new_pod_instance_took_over_since_its_read(
    cluster: tuple[KubeApiDouble, KubeClient, Ipam], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watch's DELETED event for the old instance, handled while the new one ADDs."""
    api, client, ipam = cluster
    old = api.create_pod("worker", node_name="n1")
    old_uid = old["metadata"]["uid"]
    first = await ipam.allocate(add(old_uid, "sandbox-1"))
    released = take_over_before_the_release(monkeypatch, ipam, "uid-of-the-new-instance", old_uid)
    policy = KubernetesPolicy(
        ipam, client, pods=None, writer=AnnotationWriter(client), recorder=EventRecorder(client, host="n1"), node="n1"
    )

    assert await policy.release_pod(old, gone=True) == 0

    assert released == [first.id]
    [kept] = await ipam.list_allocations()
    assert (kept.id, kept.pod_uid, kept.addresses) == (first.id, "uid-of-the-new-instance", first.addresses)
