"""The labels placement rules read (ipamd.core.placement), kept by watches in the daemon.

- The node's own labels: one watch on this node's object (``fieldSelector=metadata.name``),
  started with the daemon. One object in memory.
- Namespace labels, only for namespaces this node's pods live in, and only once a rule
  needs them: the first ADD that needs a namespace's labels reads the namespace (one GET)
  and starts, once per daemon, a watch on namespaces that keeps only the namespaces read
  so far. The watch's list and events carry every namespace (namespaces are few and change
  rarely); what the daemon keeps is the namespaces its pods use.
- Pod labels come with the pod ADD already reads (the node's pod watch cache).

No rule needing labels: no namespace is ever read and the namespace watch never starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from ipamd.k8s.client import KubeClient
from ipamd.k8s.objects import meta
from ipamd.k8s.watch import Informer, slim

log = logging.getLogger("ipamd.k8s.labels")

JSON = dict[str, Any]


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    labels = meta(obj).get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, Mapping) else {}


class PlacementLabels:
    """The node's labels and those of the namespaces this node's pods use, cached by watches."""

    def __init__(self, client: KubeClient, *, node: str, spawn: Callable[[str, Callable[[], Any]], None]) -> None:
        self.client = client
        self.node = node
        self.spawn = spawn
        self.node_watch = Informer(client, "/api/v1/nodes", field_selector=f"metadata.name={node}", name=f"node {node}")
        self._namespaces_wanted: set[str] = set()
        self.namespace_watch = Informer(
            client,
            "/api/v1/namespaces",
            name="namespaces of this node's pods",
            wanted=lambda obj: meta(obj).get("name") in self._namespaces_wanted,
        )
        self._namespace_watch_started = False
        # Counters for tests and logs: reads that went to the API server.
        self.namespace_reads = 0
        self.node_reads = 0

    def node_labels(self) -> dict[str, str] | None:
        """The node's labels from the watch; None until it has listed."""
        node = self.node_watch.get("", self.node)
        return labels_of(node) if node is not None else None

    def namespace_labels(self, namespace: str) -> dict[str, str] | None:
        """The namespace's labels when a rule needed them before (kept current by the watch), else None."""
        cached = self.namespace_watch.get("", namespace)
        return labels_of(cached) if cached is not None else None

    async def read_node(self) -> dict[str, str]:
        """The node's labels by GET (the watch has not listed yet); {} when the node is unknown."""
        self.node_reads += 1
        node = await self.client.get(f"/api/v1/nodes/{quote(self.node, safe='')}")
        return labels_of(node) if node is not None else {}

    async def read_namespace(self, namespace: str) -> dict[str, str]:
        """Reads the namespace, keeps it current from now on; returns its labels ({} when it does not exist)."""
        # Wanted before the GET: a change arriving meanwhile is kept, not dropped.
        self._namespaces_wanted.add(namespace)
        if not self._namespace_watch_started:
            self._namespace_watch_started = True
            self.spawn("namespace watch", self.namespace_watch.run)
        self.namespace_reads += 1
        obj = await self.client.get(f"/api/v1/namespaces/{quote(namespace, safe='')}")
        if obj is None:
            return {}
        key = ("", namespace)
        if key not in self.namespace_watch.cache:
            self.namespace_watch.cache[key] = slim(obj)
        return labels_of(obj)
