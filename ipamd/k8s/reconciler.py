"""The release reconciler: what catches pods deleted while no daemon was watching.

While this daemon holds the Lease, at start-up, on becoming the leader and every
``interval`` seconds, it reads every pod allocation of its own cluster (``--cluster-name``)
from the database, then every pod and StatefulSet of the cluster, and releases what
``ipamd.core.release.plan_releases`` says: allocations whose pod is gone, terminal or
stuck terminating, older than the grace period, except valid StatefulSet holds. A pod
missing from the list is looked up once more right before its allocation is released.
Every release is logged with its reason and counted.

Memory stays bounded by a page, not by the cluster: pods are read in pages of 500 and each
is turned into a ``PodState`` (namespace, name, uid, phase, deletionTimestamp, owner) as
its page arrives, and only pods that hold an allocation are kept. This list asks etcd (no
``resourceVersion=0``) on purpose: the watch cache ignores ``limit`` on many API server
versions and would send the whole cluster's pods in one answer; one leader's paged list
per interval is the cheaper load. "Now" is the API server's clock (its ``Date``), since
the rules compare it with times the API server wrote. Losing the Lease cancels a pass in
progress: the next leader runs its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from ipamd.core.release import HOLD_VM, PodState, Release, plan_releases
from ipamd.errors import IpamError
from ipamd.k8s.client import KubeClient
from ipamd.k8s.leader import LeaseElector
from ipamd.k8s.objects import allocation_state, is_pod_allocation, live, meta, object_key, pod_state, statefulset_state
from ipamd.k8s.policy import release_as_read
from ipamd.service import Ipam

log = logging.getLogger("ipamd.k8s.reconciler")


class Reconciler:
    """Runs release passes while ``elector`` holds the Lease."""

    def __init__(
        self,
        ipam: Ipam,
        client: KubeClient,
        elector: LeaseElector | None,
        *,
        interval: float,
        grace: float,
        on_released: Callable[[int], None] | None = None,
    ) -> None:
        """``on_released`` is told of the allocations a pass releases as it releases them (the
        metrics count them)."""
        self.ipam = ipam
        self.client = client
        self.elector = elector
        self.interval = interval
        self.grace = timedelta(seconds=grace)
        self.passes = 0
        self.cancelled = 0
        self.released_total = 0
        self.released_by_reason: Counter[str] = Counter()
        self.on_released = on_released

    async def run(self) -> None:
        """Reconciles at start-up, on becoming leader and every interval, until cancelled."""
        if self.elector is not None:
            await self.elector.decided.wait()
        while True:
            if self.elector is not None:
                # Cleared before looking, so a leadership won during the pass wakes the next one.
                self.elector.became_leader.clear()
            if self.elector is None or self.elector.leading:
                try:
                    await self._pass_while_leading()
                except IpamError as e:
                    log.warning("reconcile pass failed: %s; next pass in %.0fs", e.message, self.interval)
            await self._wait()

    async def _pass_while_leading(self) -> None:
        """Runs one pass, cancelled if the Lease is lost meanwhile."""
        if self.elector is None:
            await self.reconcile_once()
            return
        work = asyncio.create_task(self.reconcile_once(), name="reconcile pass")
        lost = asyncio.create_task(self.elector.not_leading.wait(), name="lease lost")
        try:
            await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not work.done():
                work.cancel()
                log.warning("reconcile pass cancelled: the Lease was lost")
                self.cancelled += 1
            with contextlib.suppress(asyncio.CancelledError):
                await work

    async def _wait(self) -> None:
        if self.elector is None:
            await asyncio.sleep(self.interval)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval):
                await self.elector.became_leader.wait()

    async def _live_vms(self) -> set[tuple[str, str]] | None:
        """(namespace, name) of every VirtualMachine and VirtualMachineInstance not being
        deleted; None when KubeVirt cannot be asked (then no VM's addresses are released).
        Listed only when some allocation is held for a VM."""

        def keep(obj: dict[str, Any]) -> tuple[str, str] | None:
            return object_key(obj) if live(obj) else None

        try:
            found: set[tuple[str, str]] = set()
            for path in ("/apis/kubevirt.io/v1/virtualmachines", "/apis/kubevirt.io/v1/virtualmachineinstances"):
                items, _ = await self.client.list_all(path, resource_version="0", keep=keep)
                found.update(items)
            return found
        except IpamError as e:
            log.warning(
                "reconcile: cannot list KubeVirt virtual machines (%s); keeping every VM's addresses", e.message
            )
            return None

    async def reconcile_once(self) -> list[Release]:
        """Runs one pass; returns the releases it made."""
        # Allocations first: a pod created after the pod list cannot have an allocation
        # older than the grace period in this snapshot.
        # This cluster's only: another cluster sharing the database has pods this API server
        # has never heard of, and they are not gone.
        allocations = [
            allocation_state(allocation)
            for allocation in await self.ipam.list_allocations(cluster=self.ipam.cluster)
            if is_pod_allocation(allocation)
        ]
        if not allocations:
            self.passes += 1
            log.debug("reconcile: no pod allocations")
            return []
        wanted = {(a.namespace, a.pod) for a in allocations}
        listed = 0

        def keep(pod: dict[str, Any]) -> PodState | None:
            nonlocal listed
            listed += 1
            metadata = meta(pod)
            return pod_state(pod) if (metadata.get("namespace") or "", metadata.get("name") or "") in wanted else None

        pods, _ = await self.client.list_pods(keep=keep)
        statefulsets = await self.client.list_statefulsets(keep=statefulset_state)
        vms = await self._live_vms() if any(a.hold == HOLD_VM for a in allocations) else None
        plan = plan_releases(pods, allocations, statefulsets, self.client.now(), self.grace, vms=vms)
        done: list[Release] = []
        for release in plan:
            if release.pod_absent and await self.client.get_pod(release.namespace, release.pod) is not None:
                log.info(
                    "reconcile: pod %s/%s appeared since the list; keeping allocation %d",
                    release.namespace,
                    release.pod,
                    release.allocation_id,
                )
                continue
            if not await release_as_read(self.ipam, release.allocation_id, release.etag, reason=release.reason):
                continue
            log.info("reconcile: released allocation %d: %s", release.allocation_id, release.detail)
            done.append(release)
            # Counted one by one: a pass cancelled halfway (the Lease lost) has still released these.
            self.released_by_reason[release.reason] += 1
            self.released_total += 1
            if self.on_released is not None:
                self.on_released(1)
        self.passes += 1
        log.info(
            "reconcile pass %d: %d pod allocation(s), %d pod(s), %d statefulset(s): released %d (total %d)",
            self.passes,
            len(allocations),
            listed,
            len(statefulsets),
            len(done),
            self.released_total,
        )
        return done
