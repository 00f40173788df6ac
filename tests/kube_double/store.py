"""Object storage with etcd-like resource versions and a bounded watch history.

Every change to any object bumps one global counter, the resource version,
exactly as etcd's revision does for a real apiserver: ``resourceVersion``
values are decimal strings that only grow, shared across kinds.  Each change
is also appended to a bounded history so that a watch can resume from an
older resource version by replaying what happened after it; once the history
no longer reaches back that far (it overflowed, or a test called
:meth:`Store.compact`) such a watch is told ``410 Gone``.

Everything here runs on the double's event loop thread; nothing awaits while
holding state, so a list snapshot and the watch registration that follows it
cannot miss a change in between.
"""

from __future__ import annotations

import asyncio
import copy
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .selectors import FieldSelector, LabelSelector

JSON = dict[str, Any]
ObjectKey = tuple[str, str]  # (namespace or "", name)


@dataclass(frozen=True)
class Change:
    """One committed write, as the watch history remembers it."""

    rv: int
    resource_key: str
    type: str  # ADDED, MODIFIED or DELETED
    obj: JSON  # state after the change (the final state for DELETED)
    prev: JSON | None  # state before the change (None for ADDED)


class _Close:
    """Queue sentinel: end the watch response cleanly."""


class _Abort:
    """Queue sentinel: drop the TCP connection without ending the stream."""


CLOSE = _Close()
ABORT = _Abort()
WatchItem = JSON | _Close | _Abort


@dataclass(eq=False)
class Watcher:
    """One open watch connection and the filter it was opened with."""

    resource_key: str
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    bookmarks: bool
    kind: str
    api_version: str
    # Converts stored objects to the API version the client asked for.
    view: Callable[[JSON], JSON] = lambda obj: obj
    queue: asyncio.Queue[WatchItem] = field(default_factory=asyncio.Queue)
    # Highest resource version already queued, so bookmarks never go backwards.
    sent_rv: int = 0

    def matches(self, obj: JSON | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.labels.matches(obj["metadata"].get("labels")) and self.fields.matches(obj)

    def event_for(self, change: Change) -> JSON | None:
        """Translate a change into what this watcher sees, if anything.

        Like the apiserver's watch cache, an object that starts or stops
        matching the selectors shows up as ADDED or DELETED.
        """
        new_obj = self.view(change.obj)
        old_obj = self.view(change.prev) if change.prev is not None else None
        if change.type == "DELETED":
            return {"type": "DELETED", "object": new_obj} if self.matches(new_obj) else None
        now, before = self.matches(new_obj), self.matches(old_obj)
        if now and before:
            return {"type": "MODIFIED", "object": new_obj}
        if now:
            return {"type": "ADDED", "object": new_obj}
        if before:
            return {"type": "DELETED", "object": new_obj}
        return None

    def offer(self, change: Change) -> None:
        event = self.event_for(change)
        if event is not None:
            self.queue.put_nowait(event)
        self.sent_rv = max(self.sent_rv, change.rv)

    def bookmark(self, rv: int) -> None:
        if not self.bookmarks:
            return
        self.queue.put_nowait(
            {
                "type": "BOOKMARK",
                "object": {
                    "kind": self.kind,
                    "apiVersion": self.api_version,
                    "metadata": {"resourceVersion": str(max(rv, self.sent_rv))},
                },
            }
        )


class Store:
    """All objects of all resources, plus the change history and watchers."""

    def __init__(self, history_limit: int = 1000) -> None:
        self._objects: dict[str, dict[ObjectKey, JSON]] = {}
        self._rv = 0
        self._history: deque[Change] = deque()
        self._history_limit = history_limit
        # Watches may resume from any rv >= _floor; older ones get 410.
        self._floor = 0
        self.watchers: set[Watcher] = set()

    # -- reading -----------------------------------------------------------

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def oldest_resumable(self) -> int:
        return self._floor

    def get(self, resource_key: str, namespace: str, name: str) -> JSON | None:
        obj = self._objects.get(resource_key, {}).get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def list_objects(self, resource_key: str, namespace: str | None = None) -> list[JSON]:
        """Objects sorted by (namespace, name), like etcd's key order."""
        bucket = self._objects.get(resource_key, {})
        keys = sorted(k for k in bucket if namespace is None or k[0] == namespace)
        return [copy.deepcopy(bucket[k]) for k in keys]

    def peek_objects(self, resource_key: str, namespace: str | None = None) -> list[JSON]:
        """Like ``list_objects`` but the stored objects themselves: read them, never change them."""
        bucket = self._objects.get(resource_key, {})
        return [bucket[k] for k in sorted(k for k in bucket if namespace is None or k[0] == namespace)]

    def changes_after(self, rv: int) -> list[Change] | None:
        """History after ``rv``, or None when it was compacted away."""
        if rv < self._floor:
            return None
        return [change for change in self._history if change.rv > rv]

    # -- writing -----------------------------------------------------------

    def _commit(self, resource_key: str, change_type: str, obj: JSON, prev: JSON | None) -> JSON:
        self._rv += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
        bucket = self._objects.setdefault(resource_key, {})
        if change_type == "DELETED":
            bucket.pop(key, None)
        else:
            bucket[key] = obj
        change = Change(self._rv, resource_key, change_type, obj, prev)
        self._history.append(change)
        while len(self._history) > self._history_limit:
            self._floor = self._history.popleft().rv
        for watcher in list(self.watchers):
            if watcher.resource_key == resource_key:
                watcher.offer(change)
        return copy.deepcopy(obj)

    def create(self, resource_key: str, obj: JSON) -> JSON:
        return self._commit(resource_key, "ADDED", obj, None)

    def update(self, resource_key: str, obj: JSON, prev: JSON) -> JSON:
        return self._commit(resource_key, "MODIFIED", obj, prev)

    def delete(self, resource_key: str, prev: JSON) -> JSON:
        return self._commit(resource_key, "DELETED", prev, prev)

    def compact(self) -> None:
        """Forget all history: only watches from the current rv on can resume."""
        self._history.clear()
        self._floor = self._rv

    # -- watchers ----------------------------------------------------------

    def add_watcher(self, watcher: Watcher) -> None:
        watcher.sent_rv = max(watcher.sent_rv, self._rv)
        self.watchers.add(watcher)

    def remove_watcher(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def bookmark_all(self) -> None:
        for watcher in self.watchers:
            watcher.bookmark(self._rv)

    def close_all(self, items: Iterable[WatchItem]) -> int:
        """Queue ``items`` (ending with a close) on every watcher and forget them.

        They are unregistered at once, not when their handlers get round to
        it, so that no later change reaches them and a test waiting for the
        client to reconnect sees the new watch, not the old one.
        """
        watchers = list(self.watchers)
        items = list(items)
        for watcher in watchers:
            for item in items:
                watcher.queue.put_nowait(item)
        self.watchers.clear()
        return len(watchers)
