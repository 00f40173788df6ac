"""The list an Informer makes after its watch got 410 Gone is never older than its cache.

A DELETED releases the pod's address at once, so a relist that answers older than what
the watch has shown (``resourceVersion=0`` answered by a lagging API server of an HA
control plane) would free the address of a running pod. After a Gone the Informer lists
with its last resourceVersion and ``resourceVersionMatch=NotOlderThan``; a 504 "Too large
resource version" is retried with the same version; a 410 on that list falls back to a
consistent read (resourceVersion unset), never to "0".
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from ipamd.errors import Unavailable
from ipamd.k8s.client import Gone, KubeClient
from ipamd.k8s.watch import Informer
from tests.kube_double import KubeApiDouble

JSON = dict[str, Any]


def pod(name: str, version: int, uid: str | None = None) -> JSON:
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid or f"uid-{name}",
            "resourceVersion": str(version),
        },
        "spec": {"nodeName": "n1"},
    }


class Recorder:
    """The Informer's handler: every event, and a way to wait for one."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.changed = asyncio.Event()

    async def __call__(self, kind: str, obj: JSON, old: JSON | None) -> None:
        self.events.append((kind, obj["metadata"]["name"]))
        self.changed.set()

    async def wait(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(10):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


# ----------------------------------------------------------------- an HA control plane, stubbed

Step = JSON | Callable[[], None] | Exception


class HaControlPlane:
    """Two API servers over one history, as seen through ``KubeClient.list_all``/``watch``.

    ``resourceVersion=0`` is answered by the lagging one (its watch cache holds
    ``lagging``); ``NotOlderThan N`` and a consistent read by the current one, as a real
    API server does (it waits for its cache, or answers 504). ``list_errors`` are raised,
    in order, by the lists after the first. Each watch plays the next script: events are
    yielded, callables run (changes made meanwhile), an exception ends it; with no script
    left the watch blocks, and the Informer is idle.
    """

    def __init__(self, version: int, items: list[JSON]) -> None:
        self.current: tuple[int, list[JSON]] = (version, items)
        self.lagging: tuple[int, list[JSON]] = (version, items)
        self.lists: list[tuple[str | None, str | None]] = []
        self.list_errors: list[Exception] = []
        self.watches: list[str | None] = []
        self.scripts: list[list[Step]] = []
        self.idle = asyncio.Event()

    def meanwhile(self, **changes: Any) -> Callable[[], None]:
        return lambda: self.__dict__.update(changes)

    async def list_all(
        self,
        path: str,
        *,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        keep: Callable[[JSON], Any] | None = None,
        **_: Any,
    ) -> tuple[list[Any], str]:
        self.lists.append((resource_version, resource_version_match))
        if len(self.lists) > 1 and self.list_errors:
            raise self.list_errors.pop(0)
        if resource_version == "0":
            version, items = self.lagging
        else:
            version, items = self.current
            if resource_version is not None:
                # A paged list at N without the match would be Exact: not what is served here.
                assert resource_version_match == "NotOlderThan"
                assert version >= int(resource_version)
        copies = [{**item, "metadata": dict(item["metadata"])} for item in items]
        return [keep(item) if keep else item for item in copies], str(version)

    async def watch(self, path: str, *, resource_version: str | None, **_: Any) -> AsyncIterator[JSON]:
        self.watches.append(resource_version)
        if not self.scripts:
            self.idle.set()
            await asyncio.Event().wait()  # until the Informer is cancelled
        for step in self.scripts.pop(0):
            if isinstance(step, Exception):
                raise step
            if callable(step):
                step()
            else:
                yield step


@contextlib.asynccontextmanager
async def running(informer: Informer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(informer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_until_idle(plane: HaControlPlane, recorder: Recorder) -> Informer:
    informer = Informer(
        cast(KubeClient, plane), "/api/v1/pods", field_selector="spec.nodeName=n1", handler=recorder, min_gap=0
    )
    async with running(informer):
        async with asyncio.timeout(10):
            await plane.idle.wait()
    return informer


def expired(version: int) -> Gone:
    return Gone(f"watch /api/v1/pods: 410 Expired: too old resource version: {version}")


def too_large(version: int) -> Unavailable:
    return Unavailable(
        f"kubernetes API unavailable (GET /api/v1/pods: 504 Timeout: Too large resource version: {version}); retry later"
    )


async def test_after_gone_the_list_is_at_least_as_new_as_the_cache() -> None:
    plane = HaControlPlane(10, [pod("old", 5)])
    plane.scripts = [
        [
            # The watch shows "fresh" created at 12.
            {"type": "ADDED", "object": pod("fresh", 12)},
            # Unwatched, "old" is really deleted (15); "fresh" runs on. A lagging API
            # server's cache is still at 11: neither the creation nor the deletion.
            plane.meanwhile(current=(15, [pod("fresh", 12)]), lagging=(11, [pod("old", 5)])),
            expired(12),
        ]
    ]
    recorder = Recorder()
    informer = await run_until_idle(plane, recorder)
    # The real deletion while unwatched is reported; the running pod is not "deleted".
    assert recorder.events == [("ADDED", "old"), ("ADDED", "fresh"), ("DELETED", "old")]
    # The first list (empty cache) is the cheap one; the one after the Gone asks for the
    # last version seen, and nothing older.
    assert plane.lists == [("0", None), ("12", "NotOlderThan")]
    assert plane.watches == ["10", "15"]
    assert set(informer.cache) == {("default", "fresh")}
    assert informer.resource_version == "15" and informer.gone == 1


async def test_too_large_resource_version_is_retried_with_the_same_version() -> None:
    plane = HaControlPlane(10, [])
    plane.scripts = [
        [
            {"type": "ADDED", "object": pod("fresh", 12)},
            # The server answering the relist has a cache behind 12, for as long as it waits.
            plane.meanwhile(current=(13, [pod("fresh", 12)]), lagging=(10, []), list_errors=[too_large(12)]),
            expired(12),
        ]
    ]
    recorder = Recorder()
    informer = await run_until_idle(plane, recorder)
    assert plane.lists == [("0", None), ("12", "NotOlderThan"), ("12", "NotOlderThan")]
    assert recorder.events == [("ADDED", "fresh")]
    assert informer.resource_version == "13" and informer.error is None


async def test_a_gone_list_falls_back_to_a_consistent_read_not_to_0() -> None:
    plane = HaControlPlane(10, [pod("a", 8)])
    plane.scripts = [
        [
            {"type": "MODIFIED", "object": pod("a", 12)},
            plane.meanwhile(
                current=(20, [pod("a", 12), pod("b", 18)]),
                lagging=(9, []),
                list_errors=[
                    Gone("GET /api/v1/pods: 410 Expired: The resourceVersion for the provided list is too old.")
                ],
            ),
            expired(12),
        ]
    ]
    recorder = Recorder()
    informer = await run_until_idle(plane, recorder)
    assert plane.lists == [("0", None), ("12", "NotOlderThan"), (None, None)]
    assert recorder.events == [("ADDED", "a"), ("MODIFIED", "a"), ("ADDED", "b")]
    assert informer.gone == 2 and informer.resource_version == "20"
    assert plane.watches == ["10", "20"]


# ----------------------------------------------------------------- against the API double


@pytest.fixture
async def double(tmp_path: Path) -> AsyncIterator[tuple[KubeApiDouble, KubeClient]]:
    async with KubeApiDouble() as api:
        client = await KubeClient.connect(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        try:
            yield api, client
        finally:
            await client.close()


def list_queries(api: KubeApiDouble) -> list[tuple[str | None, str | None, str | None]]:
    return [
        (r.query.get("resourceVersion"), r.query.get("resourceVersionMatch"), r.served_from)
        for r in api.recorded("GET", "/api/v1/pods")
        if r.query.get("watch") is None
    ]


async def test_the_relist_request_asks_for_the_last_version_seen_not_older(
    double: tuple[KubeApiDouble, KubeClient],
) -> None:
    api, client = double
    api.create_pod("kept", node_name="n1")
    api.create_pod("deleted", node_name="n1")
    recorder = Recorder()
    release = asyncio.Event()

    async def handler(kind: str, obj: JSON, old: JSON | None) -> None:
        await recorder(kind, obj, old)
        if obj["metadata"]["name"] == "seen":
            await release.wait()  # the Informer reads nothing meanwhile

    informer = Informer(client, "/api/v1/pods", field_selector="spec.nodeName=n1", handler=handler, min_gap=0)
    async with running(informer):
        await api.wait_for_watches(1, "pods")
        api.create_pod("seen", node_name="n1")
        await recorder.wait(lambda: ("ADDED", "seen") in recorder.events)
        seen = str(api.resource_version)
        # Unwatched: the watch ends, a pod is deleted, the history is compacted.
        api.drop_watches()
        api.delete_pod("deleted", grace_period_seconds=0)
        api.compact()
        release.set()
        await recorder.wait(lambda: ("DELETED", "deleted") in recorder.events)
    # Without limit, so the watch cache can answer it (with limit it would be etcd's).
    assert list_queries(api) == [("0", None, "cache"), (seen, "NotOlderThan", "cache")]
    [relist] = [r for r in api.recorded("GET", "/api/v1/pods") if r.query.get("resourceVersionMatch")]
    assert "limit" not in relist.query
    assert [e for e in recorder.events if e[0] == "DELETED"] == [("DELETED", "deleted")]
    assert set(informer.cache) == {("default", "kept"), ("default", "seen")}
    assert informer.gone == 1


async def test_a_410_list_is_followed_by_a_consistent_list(double: tuple[KubeApiDouble, KubeClient]) -> None:
    api, client = double
    api.create_pod("a", node_name="n1")
    recorder = Recorder()
    informer = Informer(client, "/api/v1/pods", field_selector="spec.nodeName=n1", handler=recorder, min_gap=0)
    async with running(informer):
        await api.wait_for_watches(1, "pods")
        seen = informer.resource_version
        api.inject_error("GET", r"^/api/v1/pods$", code=410, reason="Expired", message="too old", times=1)
        api.expire_watches()
        api.create_pod("b", node_name="n1")
        await recorder.wait(lambda: ("ADDED", "b") in recorder.events)
    # The second list was answered by the injected 410 (served from nowhere).
    assert list_queries(api) == [("0", None, "cache"), (seen, "NotOlderThan", None), (None, None, "etcd")]
    assert informer.gone == 2


async def test_a_paged_list_at_a_compacted_version_needs_the_match(double: tuple[KubeApiDouble, KubeClient]) -> None:
    # Why list_all sends resourceVersionMatch: with limit, the API server reads a bare
    # resourceVersion as Exact, which is 410 once compacted.
    api, client = double
    api.create_pod("a", node_name="n1")
    old = str(api.resource_version)
    api.create_pod("b", node_name="n1")
    api.compact()
    with pytest.raises(Gone):
        await client.list_all("/api/v1/pods", resource_version=old)
    items, version = await client.list_all("/api/v1/pods", resource_version=old, resource_version_match="NotOlderThan")
    assert sorted(i["metadata"]["name"] for i in items) == ["a", "b"] and version == str(api.resource_version)
