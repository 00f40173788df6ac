"""A watched collection kept as a cache: list, then watch from the list's resourceVersion.

The watch resumes from the last resourceVersion it saw (bookmarks included) after the
server ends it or the connection drops, so no event is lost. When the server no longer
has that history (410 Gone) the collection is listed again and compared with the cache:
objects that disappeared meanwhile are reported as DELETED, so a deletion is never missed
either. Handlers run one at a time, in event order; a failing handler is logged and the
watch goes on.

That comparison is only sound with a list at least as new as the cache. A DELETED for
a pod makes the daemon release its address at once, so a list older than what the watch
has shown would free the address of a running pod (seen through the watch, absent from
the stale list) for another pod: a duplicate IP. ``resourceVersion=0`` gives no such
guarantee: any API server may answer it from its watch cache, and in an HA control plane
that cache can lag behind the server the watch was talking to. So the lists are chosen as
client-go's reflector chooses them:

- the first list, with an empty cache, asks for ``resourceVersion=0``: cheap (served from
  the watch cache, not etcd), so a restarted API server is not met by every node listing
  from etcd at once, and an old answer is harmless when nothing is cached;
- a list after a Gone asks for the last resourceVersion seen (kept through the Gone) with
  ``resourceVersionMatch=NotOlderThan``, so whichever server answers, it answers with
  data at least that new. The match is sent explicitly (with ``limit`` and no match the
  API server reads the version as Exact, 410 once compacted), and there is no ``limit``
  (as client-go's reflector drops it for such lists): the watch cache serves it, where a
  paginated one would go to etcd, which matters after an API server restart, when every
  node's watch is Gone at once. A server whose cache is behind waits for it or answers
  504 "Too large resource version": that is retried after a backoff with the same
  version, never with an older list;
- when that list answers 410 (the version is no longer available), the next one leaves
  resourceVersion unset: a consistent read, the newest state.

Polite to the API server: watch requests are at least ``min_gap`` apart (with jitter)
even when the server ends them cleanly at once, and the backoff after failures is reset
only by a watch that lasted; a 429's ``Retry-After`` is waited at least. Cached objects
drop ``metadata.managedFields``, most of a pod's size and never read here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ipamd.errors import IpamError
from ipamd.k8s.client import LIST_PAGE_SIZE, Gone, KubeClient, Refused, wait_asked
from ipamd.k8s.objects import meta, object_key, uid_of

log = logging.getLogger("ipamd.k8s.watch")

JSON = dict[str, Any]
# (event type, object, the cached object it replaces or None)
Handler = Callable[[str, JSON, JSON | None], Awaitable[None]]


class Backoff:
    """Exponential delays with jitter, for reconnecting."""

    def __init__(self, *, first: float = 0.2, ceiling: float = 30.0) -> None:
        self.first = first
        self.ceiling = ceiling
        self.delay = first

    def reset(self) -> None:
        self.delay = self.first

    def next(self, error: IpamError | None = None) -> float:
        """The next delay; after ``error``, at least what it asks for (a 429's Retry-After)."""
        delay = self.delay * random.uniform(0.8, 1.2)
        self.delay = min(self.delay * 2, self.ceiling)
        return max(delay, wait_asked(error)) if error is not None else delay


def slim(obj: JSON) -> JSON:
    """Drops ``metadata.managedFields``: often most of a pod's size, and nothing reads it."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        metadata.pop("managedFields", None)
    return obj


class Informer:
    """Keeps ``cache`` equal to a collection of the API (e.g. the pods of one node)."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        *,
        field_selector: str | None = None,
        handler: Handler | None = None,
        watch_timeout: int = 300,
        name: str = "pods",
        min_gap: float = 1.0,
        lasting: float = 60.0,
        wanted: Callable[[JSON], bool] | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.field_selector = field_selector
        self.handler = handler
        # Objects it returns False for are neither cached nor handled (a collection read
        # in full, of which only a few objects matter: the namespaces of this node's pods).
        self.wanted = wanted
        self.watch_timeout = watch_timeout
        self.name = name
        self.cache: dict[tuple[str, str], JSON] = {}
        # The last resourceVersion seen (a list's, an event's, a bookmark's); kept through a
        # Gone, as the version the next list must be at least as new as.
        self.resource_version: str | None = None
        # True until listed, and again after the watch answered Gone: the next round lists.
        self.must_list = True
        self.synced = asyncio.Event()
        self.min_gap = min_gap
        # A watch that ran this long resets the failure backoff.
        self.lasting = lasting
        # The last failure (message, time.monotonic(), refused by RBAC), None once a
        # list or watch succeeds again.
        self.error: tuple[str, float, bool] | None = None
        # Counters for logs and tests.
        self.lists = 0
        self.watches = 0
        self.gone = 0

    def get(self, namespace: str, name: str) -> JSON | None:
        return self.cache.get((namespace, name))

    def ready(self, *, patience: float = 30.0) -> tuple[bool, str]:
        """Synced, and not failing: refused at once (RBAC), other failures after ``patience`` s."""
        if not self.synced.is_set():
            return False, f"{self.name}: not listed yet" + (f" ({self.error[0]})" if self.error else "")
        if self.error is not None:
            message, since, refused = self.error
            if refused or time.monotonic() - since > patience:
                return False, f"{self.name}: watch failing: {message}"
        return True, "ready"

    async def run(self) -> None:
        """Lists and watches until cancelled; API failures are retried with backoff."""
        backoff = Backoff()
        loop = asyncio.get_running_loop()
        last_start: float | None = None
        while True:
            if last_start is not None:
                # Even a watch the server ends at once is not reopened in a tight loop.
                gap = last_start + self.min_gap * random.uniform(1.0, 1.5) - loop.time()
                if gap > 0:
                    await asyncio.sleep(gap)
            last_start = loop.time()
            try:
                if self.must_list:
                    await self._relist()
                await self._watch()
                if loop.time() - last_start >= self.lasting:
                    backoff.reset()
            except Gone as e:
                self.gone += 1
                if self.must_list:
                    # The list itself: the version is gone from the history too (client-go's
                    # "last sync resourceVersion unavailable"). Forgotten with a cache
                    # held, the next list is a consistent read, never "0".
                    log.info(
                        "%s: resourceVersion %s is no longer available to list (%s); "
                        "listing again, a consistent read of the current state",
                        self.name,
                        self.resource_version,
                        e.message,
                    )
                    self.resource_version = None
                else:
                    # Keep resource_version: the list must be at least as new as it.
                    self.must_list = True
                    log.info(
                        "%s watch: resourceVersion %s expired (%s); listing again, not older than it",
                        self.name,
                        self.resource_version,
                        e.message,
                    )
            except IpamError as e:
                if self.error is None or self.error[0] != e.message:
                    self.error = (e.message, time.monotonic(), isinstance(e, Refused))
                delay = backoff.next(e)
                log.warning("%s watch: %s; retrying in %.1fs", self.name, e.message, delay)
                await asyncio.sleep(delay)

    def _list_version(self) -> tuple[str | None, str | None]:
        """The resourceVersion and resourceVersionMatch of the next list (see the module doc)."""
        if self.resource_version is None:
            # Nothing seen yet: any version will do. A cache without a version (its version
            # gone from the history, or a server that sent none) is not compared with an
            # answer that may be older: the newest state.
            return ("0", None) if not self.cache else (None, None)
        return self.resource_version, "NotOlderThan"

    async def _relist(self) -> None:
        version, match = self._list_version()
        items, resource_version = await self.client.list_all(
            self.path,
            field_selector=self.field_selector,
            resource_version=version,
            resource_version_match=match,
            # No limit at a version: served from the watch cache, not etcd (module doc).
            page_size=0 if match else LIST_PAGE_SIZE,
            keep=slim,
        )
        self.lists += 1
        self.error = None
        fresh = {object_key(item): item for item in items if self.wanted is None or self.wanted(item)}
        previous = self.cache
        self.cache = fresh
        self.resource_version = resource_version or None
        self.must_list = False
        asked = "unset (consistent read)" if version is None else version + (f" {match}" if match else "")
        log.info("%s: listed %d at resourceVersion %s (asked for %s)", self.name, len(fresh), resource_version, asked)
        # What vanished while we were not watching: report it as deleted.
        for key, old in previous.items():
            new = fresh.get(key)
            if new is None or uid_of(new) != uid_of(old):
                await self._dispatch("DELETED", old, None)
        for key, item in fresh.items():
            before = previous.get(key)
            if before is not None and uid_of(item) == uid_of(before):
                if meta(before).get("resourceVersion") != meta(item).get("resourceVersion"):
                    await self._dispatch("MODIFIED", item, before)
            else:
                await self._dispatch("ADDED", item, None)
        self.synced.set()

    async def _watch(self) -> None:
        self.watches += 1
        events = self.client.watch(
            self.path,
            resource_version=self.resource_version,
            field_selector=self.field_selector,
            timeout_seconds=self.watch_timeout,
            on_open=self._opened,
        )
        async with contextlib.aclosing(events):
            async for event in events:
                kind = event.get("type")
                obj = slim(event["object"])
                version = meta(obj).get("resourceVersion")
                if kind == "BOOKMARK":
                    if version:
                        self.resource_version = str(version)
                    continue
                if kind not in ("ADDED", "MODIFIED", "DELETED"):
                    continue
                key = object_key(obj)
                old = self.cache.get(key)
                if version:
                    self.resource_version = str(version)
                if old is None and self.wanted is not None and not self.wanted(obj):
                    continue
                if kind == "DELETED":
                    self.cache.pop(key, None)
                else:
                    self.cache[key] = obj
                await self._dispatch(kind, obj, old)

    def _opened(self) -> None:
        self.error = None

    async def _dispatch(self, kind: str, obj: JSON, old: JSON | None) -> None:
        if self.handler is None:
            return
        try:
            await self.handler(kind, obj, old)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - one bad event must not stop the watch
            namespace, name = object_key(obj)
            log.exception("%s watch: handling %s of %s/%s failed", self.name, kind, namespace, name)
