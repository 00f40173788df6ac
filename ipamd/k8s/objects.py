"""Reading the few fields ipamd needs from Kubernetes objects (JSON) and its own allocations.

No I/O here: these turn pods, StatefulSets and allocations into the values of
``ipamd.core.release``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ipamd.core import model
from ipamd.core.release import AllocationState, PodState, StatefulSetState

JSON = Mapping[str, Any]


def parse_time(text: object) -> datetime | None:
    """Returns an RFC 3339 timestamp (``metav1.Time`` or ``MicroTime``) as an aware datetime."""
    if not isinstance(text, str) or not text:
        return None
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def format_time(moment: datetime, *, micro: bool = False) -> str:
    """Returns ``moment`` as Kubernetes writes times (``MicroTime`` when ``micro``)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ")


def meta(obj: JSON) -> Mapping[str, Any]:
    value = obj.get("metadata")
    return value if isinstance(value, Mapping) else {}


def object_key(obj: JSON) -> tuple[str, str]:
    """Returns (namespace, name) of an object."""
    metadata = meta(obj)
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def uid_of(obj: JSON) -> str | None:
    uid = meta(obj).get("uid")
    return str(uid) if uid else None


def owner_statefulset(pod: JSON) -> str | None:
    """Returns the name of the StatefulSet owning ``pod``, or None."""
    for reference in meta(pod).get("ownerReferences") or []:
        if (
            isinstance(reference, Mapping)
            and reference.get("kind") == "StatefulSet"
            and str(reference.get("apiVersion", "")).startswith("apps/")
        ):
            return str(reference.get("name") or "") or None
    return None


# KubeVirt's label on virt-launcher pods: the name of the VirtualMachineInstance, which is
# the VirtualMachine's name when a VM runs it.
VM_NAME_LABEL = "vm.kubevirt.io/name"


def owner_vm(pod: JSON) -> str | None:
    """Returns the virtual machine a virt-launcher pod runs, or None for any other pod.

    Both marks are required: the label, and an owner reference to a KubeVirt
    VirtualMachineInstance (a label alone anyone could set).
    """
    name = (meta(pod).get("labels") or {}).get(VM_NAME_LABEL)
    if not isinstance(name, str) or not name:
        return None
    for reference in meta(pod).get("ownerReferences") or []:
        if (
            isinstance(reference, Mapping)
            and reference.get("kind") == "VirtualMachineInstance"
            and str(reference.get("apiVersion", "")).startswith("kubevirt.io/")
        ):
            return name
    return None


def live(obj: JSON | None) -> bool:
    """True for an object that exists and is not being deleted."""
    return obj is not None and not meta(obj).get("deletionTimestamp")


def pod_state(pod: JSON) -> PodState:
    metadata = meta(pod)
    status = pod.get("status") if isinstance(pod.get("status"), Mapping) else {}
    assert isinstance(status, Mapping)
    return PodState(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=uid_of(pod),
        phase=status.get("phase"),
        reason=status.get("reason"),
        deletion_deadline=parse_time(metadata.get("deletionTimestamp")),
        statefulset=owner_statefulset(pod),
    )


def statefulset_state(sts: JSON) -> StatefulSetState:
    metadata = meta(sts)
    spec = sts.get("spec") if isinstance(sts.get("spec"), Mapping) else {}
    assert isinstance(spec, Mapping)
    replicas = spec.get("replicas")
    ordinals = spec.get("ordinals")
    start = ordinals.get("start") if isinstance(ordinals, Mapping) else None
    return StatefulSetState(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        # The API defaults an unset replicas to 1.
        replicas=int(replicas) if isinstance(replicas, int) else 1,
        deleting=bool(metadata.get("deletionTimestamp")),
        start=start if isinstance(start, int) and not isinstance(start, bool) and start >= 0 else 0,
    )


def allocation_state(allocation: model.Allocation) -> AllocationState:
    """Returns the release view of an allocation."""
    owner = allocation.owner
    created = allocation.created_at or datetime.now(UTC)
    # To the second, as the API server's clock (its Date header) that the rules compare it with.
    created = created.replace(microsecond=0)
    return AllocationState(
        id=allocation.id,
        namespace=owner.namespace,
        pod=owner.pod,
        interface=owner.interface,
        network_key=owner.network_key,
        created_at=created,
        pod_uid=allocation.pod_uid,
        hold=allocation.hold,
        etag=allocation.etag,
    )


def is_pod_allocation(allocation: model.Allocation) -> bool:
    """True for allocations made by a CNI ADD for a Kubernetes pod.

    Allocations made through the REST API for owners outside Kubernetes (no container) and
    standalone attachments without a pod (empty namespace) are not the reconciler's.
    """
    return bool(allocation.owner.namespace) and bool(allocation.container_id)
