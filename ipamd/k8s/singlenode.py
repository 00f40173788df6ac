"""SQLite serves one node: a cluster-wide claim, held in a Lease, on the database's node.

A SQLite file lives on one node's disk. Two nodes with a file each would hand out the same
addresses without any error, so in Kubernetes mode a daemon on SQLite allocates only while
its node holds the Lease ``ipamd-sqlite`` in the daemon's namespace. The first daemon to
find the Lease missing (or with no holder) claims it for its node; every other node's
daemon refuses ADDs with "try again later" (CNI code 11), an Event on the pod, and a
``/readyz`` that says why, whatever the chart's rendering knew about the cluster.

Unlike leader election the claim never expires and is never given up on its own: the
holder's database holds the addresses, and a restart or a rollout of the holder must not
let another node start a second, empty database. Moving SQLite to another node is an
operator's decision: delete the Lease (docs/deploy.md). The claim is checked at start and
then every ``check_every`` seconds (with jitter), so a deleted or re-assigned Lease is
noticed by every daemon.
"""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime
from typing import Any

from ipamd.errors import IpamError
from ipamd.k8s.client import Conflict, KubeClient
from ipamd.k8s.objects import format_time
from ipamd.k8s.watch import Backoff

log = logging.getLogger("ipamd.k8s.singlenode")

LEASE_NAME = "ipamd-sqlite"
CHECK_EVERY_SECONDS = 60.0


def _holder(lease: dict[str, Any] | None) -> str | None:
    return ((lease or {}).get("spec") or {}).get("holderIdentity") or None


class SingleNodeClaim:
    """Whether this node may allocate from its SQLite database (``allowed``) and why not."""

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        node: str,
        name: str = LEASE_NAME,
        check_every: float = CHECK_EVERY_SECONDS,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.node = node
        self.name = name
        self.check_every = check_every
        self.allowed = False
        self.holder: str | None = None
        self.reason = f"SQLite single-node claim (Lease {namespace}/{name}) not checked yet"
        self.checked = asyncio.Event()

    @property
    def lease(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def run(self) -> None:
        """Checks the claim until cancelled; an unreachable API keeps the last decision."""
        backoff = Backoff(first=1.0, ceiling=self.check_every)
        while True:
            try:
                await self.check_once()
            except IpamError as e:
                log.warning(
                    "SQLite claim %s: %s; keeping the last decision (%s)",
                    self.lease,
                    e.message,
                    "allowed" if self.allowed else "refused",
                )
                if not self.checked.is_set():
                    # No decision yet: ask again soon rather than a whole period later.
                    await asyncio.sleep(backoff.next(e))
                    continue
            await asyncio.sleep(self.check_every * random.uniform(0.9, 1.1))

    async def check_once(self) -> bool:
        """Reads (and if free, takes) the claim; returns whether this node holds it."""
        lease = await self.client.get_lease(self.namespace, self.name)
        holder = _holder(lease)
        if holder is None:
            holder = await self._claim(lease)
        self._decide(holder)
        return self.allowed

    async def _claim(self, lease: dict[str, Any] | None) -> str | None:
        now = format_time(datetime.now(UTC), micro=True)
        spec = {"holderIdentity": self.node, "acquireTime": now, "renewTime": now}
        try:
            if lease is None:
                await self.client.create_lease(
                    self.namespace,
                    self.name,
                    spec,
                    annotations={
                        "ipamd.io/purpose": "the node whose SQLite database serves ipamd; delete to move it (docs/deploy.md)",
                    },
                )
            else:
                lease["spec"] = {**(lease.get("spec") or {}), **spec}
                # The read resourceVersion makes this a compare-and-swap: one claimant wins.
                await self.client.replace_lease(self.namespace, self.name, lease)
        except Conflict:
            # Another node claimed it between our read and write: read who.
            return _holder(await self.client.get_lease(self.namespace, self.name))
        log.info("SQLite claim %s taken by node %s: this node's database serves the cluster", self.lease, self.node)
        return self.node

    def _decide(self, holder: str | None) -> None:
        allowed = holder == self.node
        if allowed:
            self.reason = "ready"
        else:
            self.reason = (
                f"this node ({self.node}) cannot allocate: ipamd runs on SQLite, which serves one node only, and "
                f"node {holder or 'unknown'} holds it (Lease {self.lease}); use PostgreSQL for more than one node, "
                "or delete the Lease to move SQLite here (docs/deploy.md)"
            )
        if allowed != self.allowed or holder != self.holder or not self.checked.is_set():
            (log.info if allowed else log.error)(
                "SQLite claim %s: %s", self.lease, self.reason if not allowed else f"held by this node ({self.node})"
            )
        self.allowed, self.holder = allowed, holder
        self.checked.set()
