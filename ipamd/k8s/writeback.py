"""Writing allocation results onto pods, retried in the background, never undoing anything.

The first attempt runs inline (so the annotations are usually on the pod when the ADD
answers); if it fails, a background task retries with backoff. Writes for one pod are
merged, the newest value of a key winning. Each patch carries the pod's UID, which the API
server treats as a precondition: a pod deleted and recreated under the same name answers
409 and never gets an earlier instance's results. A pod that is gone (404, or 409 for
another UID) ends its retries. The allocation itself is committed before any of this and
stays, whatever happens here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ipamd.errors import IpamError, NotFound
from ipamd.k8s.client import Conflict, KubeClient
from ipamd.k8s.watch import Backoff

log = logging.getLogger("ipamd.k8s.writeback")

INLINE_TIMEOUT_SECONDS = 3.0
ATTEMPTS = 10


class AnnotationWriter:
    """Applies annotation merge patches to pods with retries."""

    def __init__(
        self, client: KubeClient, *, attempts: int = ATTEMPTS, first_delay: float = 0.5, ceiling: float = 30.0
    ) -> None:
        self.client = client
        self.attempts = attempts
        self.first_delay = first_delay
        self.ceiling = ceiling
        self._pending: dict[tuple[str, str, str | None], dict[str, str | None]] = {}
        self._retries: dict[tuple[str, str, str | None], asyncio.Task[None]] = {}
        self.failures = 0

    async def write(
        self, namespace: str, name: str, annotations: dict[str, str | None], *, uid: str | None = None
    ) -> bool:
        """Returns True when the pod (instance ``uid``) carries ``annotations`` now; False otherwise."""
        key = (namespace, name, uid)
        if key in self._retries:
            # A retry is pending: fold this write into it, newest value winning.
            self._pending[key].update(annotations)
            return False
        try:
            async with asyncio.timeout(INLINE_TIMEOUT_SECONDS):
                await self.client.patch_pod_annotations(namespace, name, annotations, uid=uid)
            return True
        except (NotFound, Conflict) as e:
            log.info("pod %s/%s is gone (%s); result annotations not written", namespace, name, e.message)
            return False
        except (IpamError, TimeoutError) as e:
            self.failures += 1
            log.warning(
                "writing annotations on pod %s/%s failed (%s); retrying in the background",
                namespace,
                name,
                getattr(e, "message", e),
            )
        self._pending[key] = dict(annotations)
        self._retries[key] = asyncio.create_task(self._retry(key), name=f"annotate {namespace}/{name}")
        return False

    async def _retry(self, key: tuple[str, str, str | None]) -> None:
        namespace, name, uid = key
        backoff = Backoff(first=self.first_delay, ceiling=self.ceiling)
        error: IpamError | None = None
        try:
            for attempt in range(2, self.attempts + 1):
                await asyncio.sleep(backoff.next(error))
                annotations = dict(self._pending[key])
                try:
                    await self.client.patch_pod_annotations(namespace, name, annotations, uid=uid)
                except (NotFound, Conflict) as e:
                    log.info("pod %s/%s is gone (%s); result annotations dropped", namespace, name, e.message)
                    return
                except IpamError as e:
                    self.failures += 1
                    log.warning(
                        "writing annotations on pod %s/%s failed (attempt %d of %d): %s",
                        namespace,
                        name,
                        attempt,
                        self.attempts,
                        e.message,
                    )
                    error = e
                    continue
                error = None
                if self._pending[key] == annotations:
                    log.info("annotations written on pod %s/%s after %d attempts", namespace, name, attempt)
                    return
                # Newer values arrived during the request: write them too.
            log.error(
                "giving up writing annotations on pod %s/%s after %d attempts; the allocation stands",
                namespace,
                name,
                self.attempts,
            )
        finally:
            self._pending.pop(key, None)
            self._retries.pop(key, None)

    async def stop(self) -> None:
        tasks = list(self._retries.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
