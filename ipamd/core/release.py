"""The release plan: which pod allocations to give back, and why. No I/O here.

Kubernetes mode ties an address to its pod, not to the sandbox. The reconciler
(``ipamd.k8s.reconciler``) feeds this module snapshots of the pods, StatefulSets and
allocations it read; the pod watch asks it about one pod at a time. Both act on the answer.

The rules (docs/kubernetes.md):

- a pod that exists and is neither terminal (``Succeeded``/``Failed``, which includes
  evicted pods) nor stuck terminating keeps its addresses;
- an allocation held for a StatefulSet pod is kept while the StatefulSet exists, is not
  being deleted and has more replicas than the pod's ordinal, whatever the pod's state
  (the controller recreates the pod under the same name);
- an allocation held for a KubeVirt virtual machine (its owner is ``vm/<name>``, not a
  pod) is kept while the VirtualMachine (or, for a VM-less VirtualMachineInstance, the
  instance) exists and is not being deleted, whatever its launcher pods do: a stopped,
  restarted or migrating VM keeps its addresses;
- otherwise a gone, terminal or stuck-terminating pod's allocation is released, but never
  one younger than the grace period: a pod list taken an instant before an ADD must not
  release the address that ADD just got.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})
# The value of an allocation's ``hold`` column for StatefulSet pods.
HOLD_STATEFULSET = "statefulset"
# ... and for KubeVirt virtual machines, whose allocations are owned by ``vm/<name>``:
# '/' never occurs in a pod name, so a VM's key never meets a pod's.
HOLD_VM = "vm"
VM_OWNER_PREFIX = "vm/"
STATEFULSET_POD_NAME = re.compile(r"^(?P<set>.+)-(?P<ordinal>\d+)$")


@dataclass(frozen=True)
class PodState:
    """What the release rules need to know about one pod."""

    namespace: str
    name: str
    uid: str | None = None
    phase: str | None = None
    # status.reason, e.g. "Evicted"
    reason: str | None = None
    # metadata.deletionTimestamp: when the kubelet must have stopped the pod.
    deletion_deadline: datetime | None = None
    # Name of the owning StatefulSet (ownerReference kind StatefulSet), if any.
    statefulset: str | None = None

    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL_PHASES

    def stuck_terminating(self, *, now: datetime, grace: timedelta) -> bool:
        """True when the pod outlived its deletion deadline by more than ``grace``.

        That is a pod on a lost node, or held by a finalizer after its containers stopped.
        """
        return self.deletion_deadline is not None and now >= self.deletion_deadline + grace


@dataclass(frozen=True)
class StatefulSetState:
    namespace: str
    name: str
    replicas: int
    deleting: bool = False
    # spec.ordinals.start: the pods are start .. start+replicas-1.
    start: int = 0


@dataclass(frozen=True)
class AllocationState:
    """An allocation as the release rules see it."""

    id: int
    namespace: str
    pod: str
    interface: str
    network_key: str
    created_at: datetime
    pod_uid: str | None = None
    hold: str | None = None
    # The allocation's entity tag when it was read (``model.Allocation.etag``): a release
    # decided on this view holds only while the row still names the same pod instance.
    etag: str | None = None


# Release reasons: fixed strings (they label metrics); the detail goes to the log.
POD_GONE = "pod gone"
POD_TERMINAL = "pod terminal"
POD_STUCK = "pod stuck terminating"
STATEFULSET_DELETED = "statefulset deleted"
STATEFULSET_SCALED_DOWN = "statefulset scaled down"
VM_DELETED = "vm deleted"


def vm_owner(name: str) -> str:
    """Returns the owner (the ``pod`` of the attachment identity) of virtual machine ``name``'s addresses."""
    return VM_OWNER_PREFIX + name


def vm_of(owner: str) -> str | None:
    """Returns the virtual machine an allocation owner names, or None for a pod."""
    return owner[len(VM_OWNER_PREFIX) :] if owner.startswith(VM_OWNER_PREFIX) else None


@dataclass(frozen=True)
class Decision:
    """Why to release one allocation: a fixed ``reason`` and a ``detail`` for people."""

    reason: str
    detail: str


@dataclass(frozen=True)
class Release:
    """One allocation to release and why."""

    allocation_id: int
    namespace: str
    pod: str
    reason: str
    detail: str
    # True when the decision rests on the pod's absence from a snapshot: the caller checks
    # again right before acting, since a pod with that name may have been created since.
    pod_absent: bool = False
    # The allocation's entity tag in the snapshot: the release must be conditional on it, or
    # a new pod instance that took the row over since (same id and address) loses it.
    etag: str | None = None


def statefulset_pod(name: str) -> tuple[str, int] | None:
    """Returns (StatefulSet name, ordinal) a StatefulSet pod's name encodes, or None."""
    match = STATEFULSET_POD_NAME.match(name)
    if match is None:
        return None
    return match.group("set"), int(match.group("ordinal"))


def hold_decision(
    allocation: AllocationState, pod: PodState | None, statefulsets: Mapping[tuple[str, str], StatefulSetState]
) -> Decision | None:
    """Returns None while a StatefulSet hold is valid, else why it no longer is.

    Only meaningful for allocations whose ``hold`` is ``statefulset``.
    """
    parsed = statefulset_pod(allocation.pod)
    if parsed is None:
        return Decision(STATEFULSET_DELETED, f"pod name {allocation.pod} carries no StatefulSet ordinal")
    set_name, ordinal = parsed
    if pod is not None and pod.statefulset:
        set_name = pod.statefulset
    sts = statefulsets.get((allocation.namespace, set_name))
    if sts is None:
        return Decision(STATEFULSET_DELETED, f"statefulset {allocation.namespace}/{set_name} deleted")
    if sts.deleting:
        return Decision(STATEFULSET_DELETED, f"statefulset {allocation.namespace}/{set_name} being deleted")
    if not sts.start <= ordinal < sts.start + sts.replicas:
        first = f", ordinals from {sts.start}" if sts.start else ""
        return Decision(
            STATEFULSET_SCALED_DOWN,
            f"statefulset {allocation.namespace}/{set_name} scaled to {sts.replicas}{first} (ordinal {ordinal})",
        )
    return None


def release_decision(
    allocation: AllocationState,
    pod: PodState | None,
    statefulsets: Mapping[tuple[str, str], StatefulSetState],
    *,
    now: datetime,
    grace: timedelta,
    vms: Collection[tuple[str, str]] | None = None,
) -> Decision | None:
    """Returns why ``allocation`` should be released now, or None to keep it.

    ``pod`` is the pod that currently has the allocation's name (None: no such pod).
    The identity of an attachment is the pod's name, so a pod recreated under the same
    name is the allocation's pod, whatever its uid. ``vms`` are the (namespace, name) of
    the virtual machines that exist and are not being deleted; None: not known, and every
    VM's addresses are kept.
    """
    if allocation.hold == HOLD_VM:
        vm = vm_of(allocation.pod) or allocation.pod
        if vms is None or (allocation.namespace, vm) in vms:
            return None
        if grace > timedelta(0) and now - allocation.created_at < grace:
            return None
        return Decision(VM_DELETED, f"virtual machine {allocation.namespace}/{vm} deleted")
    if pod is not None and not pod.terminal and not pod.stuck_terminating(now=now, grace=grace):
        return None
    hold: Decision | None = None
    if allocation.hold == HOLD_STATEFULSET:
        hold = hold_decision(allocation, pod, statefulsets)
        if hold is None:
            return None
    if grace > timedelta(0) and now - allocation.created_at < grace:
        return None
    if pod is None:
        decision = Decision(POD_GONE, f"pod {allocation.namespace}/{allocation.pod} gone")
    elif pod.terminal:
        phase = f"{pod.phase}" + (f" ({pod.reason})" if pod.reason else "")
        decision = Decision(POD_TERMINAL, f"pod {allocation.namespace}/{allocation.pod} {phase}")
    else:
        decision = Decision(
            POD_STUCK,
            f"pod {allocation.namespace}/{allocation.pod} still terminating {grace.total_seconds():g}s after its deadline",
        )
    if hold is not None:
        return Decision(hold.reason, f"{decision.detail}; {hold.detail}")
    return decision


def plan_releases(
    pods: Iterable[PodState],
    allocations: Iterable[AllocationState],
    statefulsets: Iterable[StatefulSetState],
    now: datetime,
    grace: timedelta | float,
    vms: Collection[tuple[str, str]] | None = None,
) -> list[Release]:
    """Returns the allocations to release given complete snapshots, in allocation order.

    ``pods`` and ``statefulsets`` must cover every namespace the allocations are in;
    ``vms`` too, or be None (VM holds are then kept).
    """
    if not isinstance(grace, timedelta):
        grace = timedelta(seconds=grace)
    pod_index = {(pod.namespace, pod.name): pod for pod in pods}
    set_index = {(sts.namespace, sts.name): sts for sts in statefulsets}
    releases = []
    for allocation in sorted(allocations, key=lambda a: a.id):
        pod = pod_index.get((allocation.namespace, allocation.pod))
        decision = release_decision(allocation, pod, set_index, now=now, grace=grace, vms=vms)
        if decision is not None:
            # A VM's owner is no pod name: nothing to look up again.
            pod_absent = pod is None and allocation.hold != HOLD_VM
            releases.append(
                Release(
                    allocation.id,
                    allocation.namespace,
                    allocation.pod,
                    decision.reason,
                    decision.detail,
                    pod_absent=pod_absent,
                    etag=allocation.etag,
                )
            )
    return releases
