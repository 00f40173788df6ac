"""Kubernetes Events on pods: how a refused ADD reaches ``kubectl describe pod``.

Repeats are folded like client-go's recorder does: the same reason and message for the
same pod within ten minutes bump ``count`` and ``lastTimestamp`` of the first Event
instead of creating another (the kubelet retries a failed sandbox every few seconds).
Emitting is best effort: a failure is logged, never raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from ipamd.errors import IpamError
from ipamd.k8s.client import KubeClient
from ipamd.k8s.objects import format_time

log = logging.getLogger("ipamd.k8s.events")

ACQUIRE_FAILED = "AcquireAddressFailed"
COMPONENT = "ipamd"
FOLD_SECONDS = 600.0
MAX_REMEMBERED = 4096
MAX_MESSAGE = 1024
EMIT_TIMEOUT_SECONDS = 3.0


@dataclass
class _Sent:
    name: str
    count: int
    first: str
    at: float


class EventRecorder:
    """Creates Warning Events on pods."""

    def __init__(self, client: KubeClient, *, host: str) -> None:
        self.client = client
        self.host = host
        self._sent: OrderedDict[tuple[str, str, str | None, str, str], _Sent] = OrderedDict()

    async def warning(self, *, namespace: str, pod: str, uid: str | None, reason: str, message: str) -> None:
        """Records a Warning Event on the pod; returns once the API answered (or gave up)."""
        try:
            async with asyncio.timeout(EMIT_TIMEOUT_SECONDS):
                await self._emit(namespace=namespace, pod=pod, uid=uid, reason=reason, message=message[:MAX_MESSAGE])
        except (IpamError, TimeoutError) as e:
            log.warning("could not record event %s on pod %s/%s: %s", reason, namespace, pod, getattr(e, "message", e))

    async def _emit(self, *, namespace: str, pod: str, uid: str | None, reason: str, message: str) -> None:
        key = (namespace, pod, uid, reason, message)
        now = datetime.now(UTC)
        stamp = format_time(now)
        sent = self._sent.get(key)
        if sent is not None and time.monotonic() - sent.at < FOLD_SECONDS:
            try:
                await self.client.patch_event(namespace, sent.name, {"count": sent.count + 1, "lastTimestamp": stamp})
                sent.count += 1
                sent.at = time.monotonic()
                self._sent.move_to_end(key)
                return
            except IpamError as e:
                # Gone (expired), or no RBAC to patch Events: record a new one instead.
                log.debug("folding event %s into %s failed (%s); creating another", reason, sent.name, e.message)
                del self._sent[key]
        involved = {"apiVersion": "v1", "kind": "Pod", "namespace": namespace, "name": pod}
        if uid:
            involved["uid"] = uid
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{pod}.", "namespace": namespace},
            "involvedObject": involved,
            "type": "Warning",
            "reason": reason,
            "message": message,
            "source": {"component": COMPONENT, "host": self.host},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.host,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        created = await self.client.create_event(namespace, body)
        name = str((created.get("metadata") or {}).get("name") or "")
        if name:
            self._sent[key] = _Sent(name=name, count=1, first=stamp, at=time.monotonic())
            while len(self._sent) > MAX_REMEMBERED:
                self._sent.popitem(last=False)
        log.info("event %s on pod %s/%s: %s", reason, namespace, pod, message)
