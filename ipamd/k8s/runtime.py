"""Kubernetes mode, assembled: client, the node's pod watch, policy, Lease and reconciler.

``start`` builds everything for ``ipamd serve --kubernetes`` and starts the long-lived
tasks under a guard that logs an unexpected exit and restarts the task with backoff; the
daemon's ``Lifetime`` ends them, gives the Lease up and closes the client. The API
server being unreachable at start-up is not fatal: the tasks retry, and ADDs answer
"try again later" (CNI code 11) until it answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from ipamd.config import Settings
from ipamd.k8s.adopt import adopt_node_annotations
from ipamd.k8s.client import KubeClient
from ipamd.k8s.events import EventRecorder
from ipamd.k8s.labels import PlacementLabels
from ipamd.k8s.leader import LeaseElector
from ipamd.k8s.policy import KubernetesPolicy
from ipamd.k8s.reconciler import Reconciler
from ipamd.k8s.singlenode import SingleNodeClaim
from ipamd.k8s.watch import Backoff, Informer
from ipamd.k8s.writeback import AnnotationWriter
from ipamd.lifecycle import Lifetime, cancel
from ipamd.service import Ipam

log = logging.getLogger("ipamd.k8s")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_LEASE_NAMESPACE = "kube-system"


def lease_namespace() -> str:
    """Returns the namespace of the reconciler's Lease: the daemon's own namespace.

    ``POD_NAMESPACE`` (downward API) when set, else the service account's namespace, else
    ``kube-system``.
    """
    configured = os.environ.get("POD_NAMESPACE", "").strip()
    if configured:
        return configured
    with contextlib.suppress(OSError):
        text = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        if text:
            return text
    return DEFAULT_LEASE_NAMESPACE


async def guarded(name: str, body: Callable[[], Awaitable[None]], *, first_delay: float = 1.0) -> None:
    """Runs ``body`` forever: an exit or a crash is logged and followed by a restart."""
    loop = asyncio.get_running_loop()
    backoff = Backoff(first=first_delay, ceiling=60.0)
    while True:
        started = loop.time()
        try:
            await body()
            log.error("%s stopped unexpectedly; restarting it", name)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a guard exists to survive what nobody foresaw
            log.exception("%s crashed; restarting it", name)
        if loop.time() - started > 60:
            backoff.reset()
        await asyncio.sleep(backoff.next())


@dataclass
class KubernetesMode:
    client: KubeClient
    policy: KubernetesPolicy
    pods: Informer
    elector: LeaseElector
    reconciler: Reconciler
    writer: AnnotationWriter
    node: str = ""
    started_later: list[asyncio.Task[None]] = field(default_factory=list)
    """Tasks started on demand while the daemon serves (the namespace watch)."""

    async def adopt_annotations(self) -> tuple[int, int]:
        """Adopts the node's running pods' Kube-OVN results (``--adopt-annotations``)."""
        return await adopt_node_annotations(self.policy.ipam, self.client, self.policy.recorder, node=self.node)

    def spawn(self, name: str, body: Callable[[], Awaitable[None]]) -> None:
        """Starts a guarded task while the daemon serves; it stops with the tasks started with the mode."""
        self.started_later.append(asyncio.create_task(guarded(name, body), name=name))

    async def stop_started_later(self) -> None:
        while self.started_later:
            await cancel(self.started_later.pop())


async def start(
    ipam: Ipam,
    settings: Settings,
    lifetime: Lifetime,
    *,
    on_reconciler_released: Callable[[int], None] | None = None,
) -> KubernetesMode:
    """Connects to the API server and starts the pod watch, the Lease and the reconciler
    (which tells ``on_reconciler_released`` how many allocations each pass released).

    Everything started here stops when ``lifetime`` ends, in the reverse order: the tasks,
    then the Lease is given up, pending write-backs end and the client closes.
    """
    lifetime.on_stop("kubernetes mode", lambda: log.info("kubernetes mode stopped"))
    client = await KubeClient.connect(settings.kubeconfig)
    lifetime.on_stop("the Kubernetes client", client.close)
    node = settings.node_name
    pods = Informer(client, "/api/v1/pods", field_selector=f"spec.nodeName={node}", name=f"pods of node {node}")
    writer = AnnotationWriter(client)
    lifetime.on_stop("the annotation write-back", writer.stop)
    # A SQLite file serves one node: only the node holding the cluster-wide claim allocates.
    claim = (
        SingleNodeClaim(client, namespace=lease_namespace(), node=node) if ipam.database.dialect == "sqlite" else None
    )
    # The namespace watch starts with the first rule that needs a namespace's labels.
    labels = PlacementLabels(client, node=node, spawn=lambda name, body: mode.spawn(name, body))
    policy = KubernetesPolicy(
        ipam,
        client,
        pods=pods,
        writer=writer,
        recorder=EventRecorder(client, host=node),
        node=node,
        claim=claim,
        labels=labels,
    )
    pods.handler = policy.on_pod_event
    elector = LeaseElector(client, namespace=lease_namespace(), identity=node)
    lifetime.on_stop("the Lease", elector.release)
    reconciler = Reconciler(
        ipam,
        client,
        elector,
        interval=settings.reconcile_interval,
        grace=settings.release_grace,
        on_released=on_reconciler_released,
    )
    mode = KubernetesMode(
        client=client, policy=policy, pods=pods, elector=elector, reconciler=reconciler, writer=writer, node=node
    )
    lifetime.on_stop("the tasks started while serving", mode.stop_started_later)
    tasks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("pod watch", pods.run),
        ("node watch", labels.node_watch.run),
        ("lease", elector.run),
        ("reconciler", reconciler.run),
    ]
    if claim is not None:
        tasks.append(("sqlite claim", claim.run))
    for name, body in tasks:
        lifetime.task(asyncio.create_task(guarded(name, body), name=name))
    log.info(
        "kubernetes mode: api %s, node %s, lease %s/%s, reconcile every %gs, release grace %gs",
        client.host,
        node,
        elector.namespace,
        elector.name,
        settings.reconcile_interval,
        settings.release_grace,
    )
    return mode
