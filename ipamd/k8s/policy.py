"""Kubernetes mode's AttachmentPolicy: pods in, results out, addresses that follow the pod.

- ``prepare`` completes an ADD with what the pod's annotations ask (static address, MAC,
  ``ip_pool`` with the StatefulSet ordinal, ``logical_switch``) and marks StatefulSet pods'
  allocations as held;
- ``committed`` writes the result annotations back (merge patch, retried);
- ``failed`` records a Warning Event ``AcquireAddressFailed`` on the pod (a refusal by
  placement rules included: the message names each excluding rule);
- ``prepare`` also hands the placement rules the pod's labels and, from watches
  (``ipamd.k8s.labels``), its node's and namespace's; ``read_labels`` reads the ones a rule
  needs that no watch holds yet;
- ``release_on_del`` keeps the address while the pod lives (a sandbox restart gets it
  back) and releases it when the pod is gone, terminal or terminating;
- ``on_pod_event`` (the node's pod watch) releases as soon as a pod is deleted or ends;
- ``ready`` (``/readyz``, CNI STATUS) also requires the API server to have answered
  recently, the node's pod watch to be synced and working, and, on SQLite, this node to
  hold the database's single-node claim (``ipamd.k8s.singlenode``), which ``prepare``
  enforces too.

The rules themselves are ``ipamd.core.release``; this module gathers their inputs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from ipamd.core import model
from ipamd.core.allocation import statefulset_ordinal
from ipamd.core.release import (
    HOLD_STATEFULSET,
    HOLD_VM,
    VM_DELETED,
    StatefulSetState,
    release_decision,
    statefulset_pod,
    vm_owner,
)
from ipamd.errors import InvalidInput, IpamError, NotFound, PreconditionFailed, StalePod, Unavailable
from ipamd.k8s import annotations as notes
from ipamd.k8s.client import KubeClient
from ipamd.k8s.events import ACQUIRE_FAILED, EventRecorder
from ipamd.k8s.labels import PlacementLabels, labels_of
from ipamd.k8s.objects import (
    allocation_state,
    live,
    meta,
    owner_statefulset,
    owner_vm,
    pod_state,
    statefulset_state,
    uid_of,
)
from ipamd.k8s.singlenode import SingleNodeClaim
from ipamd.k8s.watch import Informer
from ipamd.k8s.writeback import AnnotationWriter
from ipamd.service import AddRequest, Ipam

log = logging.getLogger("ipamd.k8s.policy")

MAC_NOT_APPLIED = "MacNotApplied"

JSON = dict[str, Any]
# Ready only while the API server answered this recently (the Lease loop asks every few s).
RECENT_API_SECONDS = 60.0
DATABASE_ELSEWHERE = "DatabaseOnAnotherNode"


class PodNotFound(NotFound):
    """The ADD names a pod the API server does not know."""


class KubernetesPolicy:
    """Reads pods for ADD, writes results back, and ties releases to the pod lifecycle."""

    def __init__(
        self,
        ipam: Ipam,
        client: KubeClient,
        *,
        pods: Informer | None,
        writer: AnnotationWriter,
        recorder: EventRecorder,
        node: str | None = None,
        claim: SingleNodeClaim | None = None,
        labels: PlacementLabels | None = None,
    ) -> None:
        self.ipam = ipam
        self.labels = labels
        self.claim = claim
        self.client = client
        self.pods = pods
        self.writer = writer
        self.recorder = recorder
        self.node = node
        # Terminal pods already handled, so repeated status updates cost no query.
        self._ended: set[str] = set()

    # ----------------------------------------------------------------- pods

    async def pod(self, namespace: str, name: str, *, uid: str | None = None, fresh: bool = False) -> JSON | None:
        """Returns the pod, from the watch cache when it holds this pod (same uid), else by GET."""
        if not fresh and self.pods is not None:
            cached = self.pods.get(namespace, name)
            if cached is not None and (uid is None or uid_of(cached) == uid):
                return cached
        return await self.client.get_pod(namespace, name)

    async def statefulsets(self, namespace: str, name: str) -> dict[tuple[str, str], StatefulSetState]:
        sts = await self.client.get_statefulset(namespace, name)
        return {} if sts is None else {(namespace, name): statefulset_state(sts)}

    # ----------------------------------------------------------------- ADD

    async def _live_pod(self, namespace: str, name: str, uid: str | None, *, fresh: bool) -> JSON:
        """Returns the pod an ADD is for; refuses a pod unknown or of another instance (UID)."""
        pod = await self.pod(namespace, name, uid=uid, fresh=fresh)
        if pod is None:
            raise PodNotFound(
                f"pod {namespace}/{name} not found in Kubernetes; "
                "the runtime passed a pod that the API server does not know"
            )
        live = uid_of(pod)
        if uid and live and live != uid:
            raise StalePod(
                f"pod {namespace}/{name} is uid {live} now, but this ADD carries uid {uid} of an earlier instance "
                "(a late sandbox of a deleted pod); it gets no address and the live pod keeps its own"
            )
        return pod

    async def confirm_takeover(self, request: AddRequest, held_uid: str) -> AddRequest:
        """An attachment held for another instance of the pod (a recreated StatefulSet pod)
        passes to this one only once a fresh GET says this one is the live pod: the watch
        cache may still show the old instance. The service's compare-and-swap on
        ``replaces_uid`` keeps a holder that changed meanwhile."""
        owner = request.owner
        pod = await self._live_pod(owner.namespace, owner.pod, request.pod_uid, fresh=True)
        uid = request.pod_uid or uid_of(pod)
        return replace(request, replaces_uid=held_uid) if uid and uid != held_uid else request

    def ready(self) -> tuple[bool, str]:
        if self.claim is not None and not self.claim.allowed:
            return False, self.claim.reason
        if self.pods is not None:
            ready, reason = self.pods.ready()
            if not ready:
                return False, reason
        last = self.client.last_ok
        if last is None or time.monotonic() - last > RECENT_API_SECONDS:
            return False, f"no successful kubernetes API request in the last {RECENT_API_SECONDS:g}s"
        return True, "ready"

    async def may_allocate(self) -> None:
        """Raises ``Unavailable`` unless this node may allocate from its SQLite database."""
        claim = self.claim
        if claim is None or claim.allowed:
            return
        if not claim.checked.is_set():
            try:
                if await claim.check_once():
                    return
            except IpamError as e:
                raise Unavailable(f"cannot check the SQLite single-node claim: {e.message}") from e
        raise Unavailable(claim.reason)

    async def _check_claim(self, request: AddRequest) -> None:
        """Refuses the ADD unless this node may allocate; when another node holds the claim
        (not when the claim could not be read), with an Event on the pod."""
        try:
            await self.may_allocate()
        except Unavailable:
            if self.claim is not None and self.claim.checked.is_set():
                owner = request.owner
                await self.recorder.warning(
                    namespace=owner.namespace,
                    pod=owner.pod,
                    uid=request.pod_uid,
                    reason=DATABASE_ELSEWHERE,
                    message=f"ipamd could not allocate an address on {owner.interface}: {self.claim.reason}",
                )
            raise

    async def prepare(self, request: AddRequest) -> AddRequest:
        owner = request.owner
        if not owner.namespace:
            return request
        await self._check_claim(request)
        pod = await self._live_pod(owner.namespace, owner.pod, request.pod_uid, fresh=False)
        uid = request.pod_uid or uid_of(pod)
        ask = notes.parse_pod_annotations(
            meta(pod).get("annotations"), provider=owner.network_key, interface=owner.interface
        )
        # The service refuses an attachment held for another UID (HeldByAnotherPod), and
        # confirm_takeover decides: no read of the holder on every ADD.
        changes: dict[str, Any] = {"check_uid": True, **self._placement_labels(owner.namespace, pod)}
        if owner_vm(pod) is not None:
            # The VM owns the addresses, not its virt-launcher pod: a restarted VM (a new
            # pod) and a migration target (a second pod, alive with the source) find the
            # same allocation. No pod UID decides who holds it.
            request = self._for_vm(request, pod)
            owner = request.owner
            changes.update(check_uid=False, hold=HOLD_VM)
        if request.pod_uid is None and uid:
            changes["pod_uid"] = uid
        if request.node is None and self.node:
            changes["node"] = self.node
        statefulset = owner_statefulset(pod)
        ordinal = statefulset_ordinal(owner.pod) if statefulset else None
        if statefulset:
            changes["hold"] = HOLD_STATEFULSET
        if ask.subnet_name:
            changes["subnet_name"] = ask.subnet_name
        if ask.family is not None:
            changes["family"], changes["family_field"] = ask.family, ask.family_key
        if ask.routes:
            changes["routes"] = ask.routes
        if request.mac is None and ask.mac and not await self._written_by_us(request, ask, "mac", ask.mac):
            changes["mac"] = ask.mac
            # An IPAM plugin cannot set a MAC: only the interface plugin can, from the
            # runtime's "mac" capability. Without it the interface keeps its own MAC.
            await self.recorder.warning(
                namespace=owner.namespace,
                pod=request.kube_pod,
                uid=uid or None,
                reason=MAC_NOT_APPLIED,
                message=(
                    f"{ask.mac_key} asks for MAC {ask.mac} on {owner.interface}; ipamd records it, but the runtime passed "
                    'no MAC, so the interface keeps the one its plugin chose: add "capabilities": {"mac": true} to the '
                    "interface plugin in the NAD so Multus passes it"
                ),
            )
        if not request.static_ips:
            static = ask.static_ips
            if static and await self._written_by_us(request, ask, "ip", ",".join(static)):
                static = ()
            if static:
                changes["static_ips"] = static
                changes["field_prefix"] = ask.static_key
            elif ask.pool_name:
                changes["pool_name"] = ask.pool_name
                changes["ordinal"] = await self._pool_index(owner.namespace, statefulset, ordinal)
            elif ask.pool_entries:
                changes["pool_entries"] = ask.pool_entries
                changes["ordinal"] = await self._pool_index(owner.namespace, statefulset, ordinal)
        return replace(request, **changes)

    @staticmethod
    def _for_vm(request: AddRequest, pod: JSON) -> AddRequest:
        """The request of a virt-launcher pod, owned by its virtual machine (unchanged for other pods)."""
        vm = owner_vm(pod)
        if vm is None:
            return request
        return replace(request, owner=replace(request.owner, pod=vm_owner(vm)), pod_name=request.kube_pod)

    async def owner_of(self, request: AddRequest) -> AddRequest:
        owner = request.owner
        if not owner.namespace:
            return request
        pod = await self.pod(owner.namespace, owner.pod, uid=request.pod_uid)
        return request if pod is None else self._for_vm(request, pod)

    def _placement_labels(self, namespace: str, pod: JSON) -> dict[str, Any]:
        """The labels placement rules match, as far as the watches hold them; the rest are
        left for ``read_labels``, which the service asks for only if a rule needs them."""
        if self.labels is None:
            return {"pod_labels": labels_of(pod)}
        node_labels = self.labels.node_labels()
        namespace_labels = self.labels.namespace_labels(namespace)
        later = {kind for kind, labels in (("node", node_labels), ("namespace", namespace_labels)) if labels is None}
        return {
            "pod_labels": labels_of(pod),
            "node_labels": node_labels,
            "namespace_labels": namespace_labels,
            "labels_on_demand": frozenset(later),
        }

    async def read_labels(self, request: AddRequest, kinds: frozenset[str]) -> AddRequest:
        """Returns the request with the labels of ``kinds`` ("node", "namespace") read from the API server."""
        assert self.labels is not None, "only a request prepared with watches leaves labels for later"
        changes: dict[str, Any] = {"labels_on_demand": request.labels_on_demand - kinds}
        if "node" in kinds:
            changes["node_labels"] = await self.labels.read_node()
        if "namespace" in kinds:
            changes["namespace_labels"] = await self.labels.read_namespace(request.owner.namespace)
        return replace(request, **changes)

    async def _pool_index(self, namespace: str, statefulset: str | None, ordinal: int | None) -> int | None:
        """The pool member of a StatefulSet pod: its ordinal counted from ``spec.ordinals.start``."""
        if statefulset is None or ordinal is None:
            return ordinal
        states = await self.statefulsets(namespace, statefulset)
        state = states.get((namespace, statefulset))
        start = state.start if state is not None else 0
        if ordinal < start:
            raise InvalidInput(
                f"pod ordinal {ordinal} is below spec.ordinals.start {start} of statefulset {namespace}/{statefulset}",
                field="ip_pool",
            )
        return ordinal - start

    async def _written_by_us(self, request: AddRequest, ask: notes.PodAsk, what: str, value: str) -> bool:
        """True when a plain ``ip_address``/``mac_address`` is ipamd's own result for another interface.

        With one network attached twice, the result of the first interface lands in the
        plain keys; the second must not take it for a static request.
        """
        owner = request.owner
        used_key = ask.static_key if what == "ip" else ask.mac_key
        plain_key = notes.key(owner.network_key, notes.IP_ADDRESS if what == "ip" else notes.MAC_ADDRESS)
        if not ask.allocated or used_key != plain_key:
            return False
        for allocation in await self.ipam.list_allocations(
            namespace=owner.namespace,
            pod=owner.pod,
            provider=owner.network_key,
            cluster=self.ipam.cluster,
        ):
            if allocation.owner.interface == owner.interface:
                continue
            ours = allocation.mac if what == "mac" else ",".join(held.address for held in notes.by_family(allocation))
            if ours and ours == value:
                return True
        return False

    async def committed(self, request: AddRequest, allocation: model.Allocation) -> None:
        owner = request.owner
        if not owner.namespace:
            return
        wanted: dict[str, str | None] = dict(notes.result_annotations(owner.network_key, allocation))
        cached = self.pods.get(owner.namespace, request.kube_pod) if self.pods is not None else None
        if cached is not None and (request.pod_uid is None or uid_of(cached) == request.pod_uid):
            current = meta(cached).get("annotations") or {}
            if all(current.get(k) == v for k, v in wanted.items()):
                return
        # The pod's UID goes with the patch as a precondition: a result never lands on
        # another instance of the pod, where it would read as a static request.
        await self.writer.write(owner.namespace, request.kube_pod, wanted, uid=request.pod_uid)

    async def failed(self, request: AddRequest, error: IpamError) -> None:
        owner = request.owner
        if not owner.namespace or isinstance(error, (PodNotFound, StalePod)):
            return
        log.warning("allocation refused for %s: %s", owner.label, error.message)
        uid = request.pod_uid
        if uid is None and self.pods is not None:
            cached = self.pods.get(owner.namespace, request.kube_pod)
            uid = uid_of(cached) if cached is not None else None
        await self.recorder.warning(
            namespace=owner.namespace,
            pod=request.kube_pod,
            uid=uid,
            reason=ACQUIRE_FAILED,
            message=f"ipamd could not allocate an address on {owner.interface} (network {owner.network_key}): {error.message}",
        )

    # ----------------------------------------------------------------- DEL and pod lifecycle

    async def release_on_del(self, request: AddRequest) -> bool:
        owner = request.owner
        if not owner.namespace:
            return True
        try:
            pod = await self.pod(owner.namespace, owner.pod, fresh=True)
            if pod is not None and request.pod_uid and uid_of(pod) and uid_of(pod) != request.pod_uid:
                # The name belongs to a newer pod now (a recreated StatefulSet pod): its address.
                return False
            allocation = await self.ipam.find_owner(owner)
            if allocation is None:
                return True
            # The kubelet tears the sandbox of a pod being deleted down for good: judge it as gone.
            terminating = pod is not None and bool(meta(pod).get("deletionTimestamp"))
            decision = release_decision(
                allocation_state(allocation),
                pod_state(pod) if pod is not None and not terminating else None,
                await self._sets_for(allocation, pod),
                now=self.client.now(),
                grace=timedelta(0),
            )
        except IpamError as e:
            # Keep the address when in doubt: the pod watch or the reconciler releases it later.
            log.warning(
                "DEL of %s: cannot tell whether the pod lives (%s); keeping its address", owner.label, e.message
            )
            return False
        if decision is None:
            return False
        log.info("DEL of %s releases its address: %s", owner.label, decision.detail)
        return True

    async def _sets_for(
        self, allocation: model.Allocation, pod: JSON | None
    ) -> dict[tuple[str, str], StatefulSetState]:
        if allocation.hold != HOLD_STATEFULSET:
            return {}
        namespace = allocation.owner.namespace
        name = owner_statefulset(pod) if pod is not None else None
        if name is None:
            parsed = statefulset_pod(allocation.owner.pod)
            if parsed is None:
                return {}
            name = parsed[0]
        return await self.statefulsets(namespace, name)

    async def on_pod_event(self, kind: str, pod: JSON, old: JSON | None) -> None:
        """Releases the addresses of a pod that was deleted or ended (the node's pod watch)."""
        uid = uid_of(pod)
        if kind == "DELETED":
            if uid:
                self._ended.discard(uid)
            await self.release_pod(pod, gone=True)
            vm = owner_vm(pod)
            if vm is not None:
                await self.release_vm_if_gone(meta(pod).get("namespace") or "", vm)
        elif pod_state(pod).terminal and uid not in self._ended:
            await self.release_pod(pod, gone=False)
            # Only once that worked: a failed release is tried again on the pod's next event.
            if uid:
                self._ended.add(uid)

    async def release_vm_if_gone(self, namespace: str, vm: str) -> int:
        """Releases a virtual machine's addresses once neither the VirtualMachine nor its
        instance exists (or both are being deleted); returns how many allocations.

        Asked when one of its launcher pods is gone: a VM that is deleted loses its last pod.
        """
        try:
            if live(await self.client.get_virtual_machine(namespace, vm)) or live(
                await self.client.get_virtual_machine_instance(namespace, vm)
            ):
                return 0
        except IpamError as e:
            log.warning(
                "cannot tell whether virtual machine %s/%s still exists (%s); the reconciler decides later",
                namespace,
                vm,
                e.message,
            )
            return 0
        count = 0
        for allocation in await self.ipam.list_allocations(
            namespace=namespace, pod=vm_owner(vm), cluster=self.ipam.cluster
        ):
            if allocation.hold != HOLD_VM:
                continue
            if not await release_as_read(self.ipam, allocation.id, allocation.etag, reason=VM_DELETED):
                continue
            log.info("released allocation %s of virtual machine %s/%s: it is deleted", allocation.id, namespace, vm)
            count += 1
        return count

    async def release_pod(self, pod: JSON, *, gone: bool) -> int:
        """Releases what the rules say of this pod's allocations; returns how many."""
        namespace, name, uid = meta(pod).get("namespace") or "", meta(pod).get("name") or "", uid_of(pod)
        count = 0
        # A pod of the same name in another cluster sharing the database is not this one.
        for allocation in await self.ipam.list_allocations(namespace=namespace, pod=name, cluster=self.ipam.cluster):
            held_for = allocation.pod_uid
            if uid and held_for and held_for != uid:
                # Taken over by a newer pod of the same name since.
                continue
            decision = release_decision(
                allocation_state(allocation),
                None if gone else pod_state(pod),
                await self._sets_for(allocation, pod),
                now=self.client.now(),
                grace=timedelta(0),
            )
            if decision is None:
                continue
            if not await release_as_read(self.ipam, allocation.id, allocation.etag, reason=decision.reason):
                continue
            log.info("released allocation %s of pod %s/%s: %s", allocation.id, namespace, name, decision.detail)
            count += 1
        return count


async def release_as_read(ipam: Ipam, allocation_id: int, etag: str | None, *, reason: str) -> bool:
    """Releases an allocation only if it is still the one a decision was taken on (its entity
    tag then); returns whether it released it.

    Between the read and the release, a new instance of the pod may have taken the row over
    (same id and address, another pod UID): that pod is alive, and its address must not go
    back to the free list. An allocation gone meanwhile is nothing to release either.
    """
    try:
        await ipam.release(allocation_id, reason=reason, if_match=None if etag is None else [etag])
    except NotFound:
        return False
    except PreconditionFailed:
        log.info("allocation %d passed to another pod instance since it was read; keeping it", allocation_id)
        return False
    return True
