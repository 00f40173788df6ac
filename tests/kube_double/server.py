"""``KubeApiDouble``: an in-process stand-in for kube-apiserver in tests.

Start it in an async test::

    async with KubeApiDouble() as api:
        api.write_kubeconfig(tmp_path / "kubeconfig")
        api.create_pod("web-0", node_name="n1")
        ...

or in its own thread for synchronous tests, subprocesses and kubectl::

    handle = KubeApiDouble.start_in_thread()
    try:
        handle.api.create_pod("web-0", node_name="n1")
        subprocess.run(["kubectl", "--kubeconfig", path, "get", "pods"])
    finally:
        handle.stop()

The helper methods (``create_pod``, ``set_pod_phase``, ``compact``, ...)
are plain synchronous methods that may be called from any thread: called
from another thread they run on the double's event loop and wait for the
result, so state is only ever touched by one thread.

See docs/design/kube-double.md for what is emulated and what is not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from aiohttp import web

from . import errors
from .clock import TestClock, parse_time, rfc3339
from .errors import ApiError
from .handlers import InjectedFault, RecordedRequest, make_app
from .realistic import managed_fields, realistic_spec
from .registry import DeleteOptions, Registry
from .resources import (
    ALL_RESOURCES,
    EVENTS,
    EVENTS_V1,
    NAMESPACES,
    NODES,
    PODS,
    STATEFULSETS,
    VIRTUAL_MACHINE_INSTANCES,
    VIRTUAL_MACHINES,
    ResourceType,
)
from .store import ABORT, CLOSE, Store

JSON = dict[str, Any]
P = ParamSpec("P")
R = TypeVar("R")

# By plural; events.k8s.io events are the core events' storage served again, not a name of their own.
RESOURCES_BY_NAME: dict[str, ResourceType] = {r.plural: r for r in ALL_RESOURCES if r is not EVENTS_V1}


def _on_loop(method: Callable[Concatenate[KubeApiDouble, P], R]) -> Callable[Concatenate[KubeApiDouble, P], R]:
    """Run a helper on the double's loop thread, whichever thread calls it."""

    @functools.wraps(method)
    def wrapper(self: KubeApiDouble, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread:
            return method(self, *args, **kwargs)
        future: concurrent.futures.Future[R] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(method(self, *args, **kwargs))
            except BaseException as exc:  # handed to the calling thread
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=30)

    return cast("Callable[Concatenate[KubeApiDouble, P], R]", wrapper)


class KubeApiDouble:
    """A Kubernetes API server double serving HTTP on 127.0.0.1."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        history_limit: int = 1000,
        namespaces: tuple[str, ...] = ("default", "kube-system", "kube-public", "kube-node-lease"),
        clock: TestClock | None = None,
        server_version: tuple[int, int] = (1, 30),
        bookmark_interval: float | None = None,
        auto_finalize_interval: float | None = None,
        paginate_cache: bool = False,
        kubevirt: bool = True,
    ) -> None:
        """
        ``history_limit`` bounds the watch history (older resource versions
        get 410).  ``bookmark_interval`` makes every bookmark-enabled watch
        receive a BOOKMARK that often (the apiserver does so about once a
        minute); by default bookmarks are only sent by ``send_bookmarks()``.
        ``auto_finalize_interval`` makes terminating pods disappear on their
        own once their grace period is over by ``clock`` (checked that
        often), for tests that cannot call ``finalize_deletions()``.
        ``paginate_cache`` makes lists with ``resourceVersion=0`` (served from the
        watch cache) honour ``limit``, as API servers with ListFromCacheSnapshot do;
        by default they ignore it, as earlier versions do. Answers carry a ``Date``
        from ``clock``, so advancing it shows as the API server's clock running ahead.
        ``kubevirt=False`` is a cluster without KubeVirt: its paths answer 404 and discovery
        does not list kubevirt.io, as when its CRDs are not installed.
        """
        self.host = host
        self.port = port
        self.clock = clock or TestClock()
        self.store = Store(history_limit)
        self.registry = Registry(self.store, self.clock)
        self.server_version = server_version
        self.paginate_cache = paginate_cache
        self.served = [r for r in ALL_RESOURCES if kubevirt or r.group != VIRTUAL_MACHINES.group]
        self.requests: list[RecordedRequest] = []
        self._faults: list[InjectedFault] = []
        self._bookmark_interval = bookmark_interval
        self._auto_finalize_interval = auto_finalize_interval
        self._runner: web.AppRunner | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        for namespace in namespaces:
            self.registry.create(NAMESPACES, None, {"metadata": {"name": namespace}})

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        # handler_cancellation: a watch whose client went away must unregister
        # at once, not at its next write.
        self._runner = web.AppRunner(make_app(self), handler_cancellation=True, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        if self._bookmark_interval:
            self._tasks.append(asyncio.create_task(self._every(self._bookmark_interval, self.store.bookmark_all)))
        if self._auto_finalize_interval:
            self._tasks.append(
                asyncio.create_task(self._every(self._auto_finalize_interval, self.process_due_deletions))
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        # End open watches first so the runner need not wait for them.
        self.store.close_all([CLOSE])
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._loop = None
        self._loop_thread = None

    async def __aenter__(self) -> KubeApiDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @staticmethod
    async def _every(interval: float, action: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(interval)
            action()

    @classmethod
    def start_in_thread(cls, **kwargs: Any) -> ThreadedKubeApi:
        """Run a double on its own event loop in a daemon thread."""
        return ThreadedKubeApi(cls(**kwargs))

    # -- connection details --------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def kubeconfig(self, namespace: str = "default", token: str = "kube-double-token") -> str:
        """A kubeconfig (YAML, written as JSON which YAML accepts) for this server."""
        import json

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kube-double", "cluster": {"server": self.url}}],
            "users": [{"name": "kube-double", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "kube-double",
                    "context": {"cluster": "kube-double", "user": "kube-double", "namespace": namespace},
                }
            ],
            "current-context": "kube-double",
            "preferences": {},
        }
        return json.dumps(config, indent=2) + "\n"

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        path = Path(path)
        path.write_text(self.kubeconfig(namespace))
        return path

    # -- generic object helpers -------------------------------------------------

    @staticmethod
    def _resource(name: str) -> ResourceType:
        try:
            return RESOURCES_BY_NAME[name]
        except KeyError:
            raise ValueError(f"unknown resource {name!r}; one of {sorted(RESOURCES_BY_NAME)}") from None

    @_on_loop
    def create(self, resource: str, body: JSON, namespace: str | None = "default") -> JSON:
        """Create any served object as an API client would (201 semantics)."""
        res = self._resource(resource)
        return self.registry.create(res, namespace if res.namespaced else None, body)

    @_on_loop
    def get(self, resource: str, name: str, namespace: str = "default") -> JSON | None:
        res = self._resource(resource)
        try:
            return self.registry.get(res, namespace if res.namespaced else "", name)
        except ApiError:
            return None

    @_on_loop
    def list_objects(self, resource: str, namespace: str | None = None) -> list[JSON]:
        res = self._resource(resource)
        return self.registry.list_objects(res, namespace if res.namespaced else None)

    @_on_loop
    def update(
        self, resource: str, name: str, change: Callable[[JSON], None], namespace: str = "default", status: bool = False
    ) -> JSON:
        """Edit an object in place through ``change``; writes ``status`` when asked."""
        res = self._resource(resource)
        return self.registry.mutate(
            res, namespace if res.namespaced else "", name, change, "status" if status else None
        )

    @_on_loop
    def delete(self, resource: str, name: str, namespace: str = "default") -> JSON:
        """DELETE any served object as a client would (pods: see ``delete_pod`` for the grace)."""
        res = self._resource(resource)
        return self.registry.delete(res, namespace if res.namespaced else "", name, DeleteOptions())

    @_on_loop
    def create_namespace(self, name: str, labels: dict[str, str] | None = None) -> JSON:
        existing = self.store.get(NAMESPACES.key, "", name)
        if existing is not None:
            return existing
        return self.registry.create(NAMESPACES, None, {"metadata": {"name": name, "labels": dict(labels or {})}})

    @_on_loop
    def create_node(self, name: str, labels: dict[str, str] | None = None) -> JSON:
        return self.registry.create(NODES, None, {"metadata": {"name": name, "labels": dict(labels or {})}})

    # -- pods -------------------------------------------------------------------

    @_on_loop
    def create_pod(
        self,
        name: str,
        namespace: str = "default",
        *,
        node_name: str | None = None,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        phase: str | None = None,
        pod_ip: str | None = None,
        owner: JSON | None = None,
        spec: JSON | None = None,
        finalizers: list[str] | None = None,
        termination_grace_period_seconds: int | None = None,
        realistic: bool = False,
    ) -> JSON:
        """Create a pod (its namespace too, if missing).

        ``realistic`` gives it the size of a real pod (about 7 KB with managedFields).

        The apiserver always creates pods Pending; ``phase`` and ``pod_ip``
        are applied afterwards through the status subresource, so watchers
        see ADDED then MODIFIED as with a real kubelet.  ``owner`` is an
        ownerReference (see :meth:`owner_reference`).
        """
        self.create_namespace(namespace)
        if realistic and spec is None:
            # The size of a real Deployment pod, managedFields included (realistic.py).
            spec = realistic_spec(None)
        pod_spec: JSON = dict(spec or {"containers": [{"name": "main", "image": "registry.example/app:1"}]})
        if node_name is not None:
            pod_spec["nodeName"] = node_name
        if termination_grace_period_seconds is not None:
            pod_spec["terminationGracePeriodSeconds"] = termination_grace_period_seconds
        metadata: JSON = {"name": name, "namespace": namespace}
        if labels:
            metadata["labels"] = dict(labels)
        if annotations:
            metadata["annotations"] = dict(annotations)
        if owner:
            metadata["ownerReferences"] = [owner]
        if finalizers:
            metadata["finalizers"] = list(finalizers)
        if realistic:
            metadata["managedFields"] = managed_fields(rfc3339(self.clock.now()))
            metadata.setdefault("labels", {}).update({"app": name.rsplit("-", 2)[0], "pod-template-hash": "5d4f8c7b9d"})
        pod = self.registry.create(
            PODS, namespace, {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}
        )
        if phase is not None or pod_ip is not None:
            pod = self.set_pod_phase(name, namespace, phase or "Pending", pod_ip=pod_ip)
        return pod

    @_on_loop
    def get_pod(self, name: str, namespace: str = "default") -> JSON | None:
        return self.get("pods", name, namespace)

    @_on_loop
    def pods(self, namespace: str | None = None) -> list[JSON]:
        return self.list_objects("pods", namespace)

    @_on_loop
    def set_pod_phase(
        self,
        name: str,
        namespace: str = "default",
        phase: str = "Running",
        *,
        reason: str | None = None,
        message: str | None = None,
        pod_ip: str | None = None,
    ) -> JSON:
        """Write pod status as a kubelet would: ``set_pod_phase(n, phase="Failed", reason="Evicted")``."""

        def change(pod: JSON) -> None:
            status = pod.setdefault("status", {})
            status["phase"] = phase
            for key, value in (("reason", reason), ("message", message)):
                if value is None:
                    status.pop(key, None)
                else:
                    status[key] = value
            if pod_ip is not None:
                status["podIP"] = pod_ip
                status["podIPs"] = [{"ip": pod_ip}]
            ready = phase == "Running"
            status["conditions"] = [{"type": "Ready", "status": "True" if ready else "False"}]
            status["containerStatuses"] = [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": ready,
                    "restartCount": 0,
                    "started": ready,
                    "state": {"running": {}}
                    if ready
                    else (
                        {"terminated": {"exitCode": 0 if phase == "Succeeded" else 1}}
                        if phase in ("Succeeded", "Failed")
                        else {"waiting": {}}
                    ),
                }
                for c in (pod.get("spec") or {}).get("containers") or []
            ]

        return self.registry.mutate(PODS, namespace, name, change, "status")

    @_on_loop
    def delete_pod(self, name: str, namespace: str = "default", grace_period_seconds: int | None = None) -> JSON:
        """DELETE the pod as a client would (graceful unless the grace is 0)."""
        return self.registry.delete(PODS, namespace, name, DeleteOptions(grace_period_seconds=grace_period_seconds))

    @_on_loop
    def finalize_deletions(self, namespace: str | None = None, name: str | None = None) -> int:
        """Complete every pending graceful pod deletion now (the kubelet's job).

        Returns how many pods disappeared (pods held by finalizers stay).
        """
        return self.registry.finish_pod_deletions(False, namespace, name)

    @_on_loop
    def process_due_deletions(self) -> int:
        """Complete the graceful deletions whose grace period is over by the clock."""
        return self.registry.finish_pod_deletions(True)

    @_on_loop
    def advance(self, seconds: float) -> int:
        """Move the test clock forward, then complete deletions that are due."""
        self.clock.advance(seconds)
        return self.process_due_deletions()

    # -- events -----------------------------------------------------------------

    @_on_loop
    def events(
        self, namespace: str | None = None, *, involved_name: str | None = None, reason: str | None = None
    ) -> list[JSON]:
        """Stored core/v1 Events (also those created via events.k8s.io/v1)."""
        found = self.registry.list_objects(EVENTS, namespace)
        return [
            e
            for e in found
            if (involved_name is None or (e.get("involvedObject") or {}).get("name") == involved_name)
            and (reason is None or e.get("reason") == reason)
        ]

    # -- statefulsets -----------------------------------------------------------

    @_on_loop
    def create_statefulset(
        self,
        name: str,
        namespace: str = "default",
        *,
        replicas: int = 1,
        labels: dict[str, str] | None = None,
        service_name: str | None = None,
        annotations: dict[str, str] | None = None,
    ) -> JSON:
        self.create_namespace(namespace)
        pod_labels = dict(labels or {"app": name})
        metadata: JSON = {"name": name, "namespace": namespace}
        if annotations:
            metadata["annotations"] = dict(annotations)
        body = {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": metadata,
            "spec": {
                "replicas": replicas,
                "serviceName": service_name or name,
                "selector": {"matchLabels": pod_labels},
                "template": {
                    "metadata": {"labels": pod_labels},
                    "spec": {"containers": [{"name": "main", "image": "registry.example/app:1"}]},
                },
            },
        }
        return self.registry.create(STATEFULSETS, namespace, body)

    @_on_loop
    def scale_statefulset(self, name: str, replicas: int, namespace: str = "default") -> JSON:
        """Set spec.replicas (as ``kubectl scale`` would); no controller acts on it."""

        def change(sts: JSON) -> None:
            sts["spec"]["replicas"] = replicas

        return self.registry.mutate(STATEFULSETS, namespace, name, change)

    @_on_loop
    def set_statefulset_status(
        self, name: str, namespace: str = "default", *, replicas: int, ready_replicas: int | None = None
    ) -> JSON:
        def change(sts: JSON) -> None:
            sts["status"] = {
                "replicas": replicas,
                "readyReplicas": replicas if ready_replicas is None else ready_replicas,
                "availableReplicas": replicas if ready_replicas is None else ready_replicas,
                "currentReplicas": replicas,
                "updatedReplicas": replicas,
                "observedGeneration": sts["metadata"].get("generation", 1),
            }

        return self.registry.mutate(STATEFULSETS, namespace, name, change, "status")

    @staticmethod
    def owner_reference(owner: JSON, controller: bool = True) -> JSON:
        """An ownerReference pointing at ``owner`` (e.g. a StatefulSet)."""
        return {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": controller,
            "blockOwnerDeletion": True,
        }

    def statefulset_pod(
        self,
        sts: JSON,
        ordinal: int,
        *,
        node_name: str | None = None,
        phase: str | None = None,
        pod_ip: str | None = None,
    ) -> JSON:
        """Create pod ``<sts>-<ordinal>`` the way the StatefulSet controller names and labels it."""
        name = f"{sts['metadata']['name']}-{ordinal}"
        labels = dict((sts["spec"]["template"].get("metadata") or {}).get("labels") or {})
        labels["statefulset.kubernetes.io/pod-name"] = name
        labels["apps.kubernetes.io/pod-index"] = str(ordinal)
        return self.create_pod(
            name,
            sts["metadata"]["namespace"],
            node_name=node_name,
            labels=labels,
            phase=phase,
            pod_ip=pod_ip,
            owner=self.owner_reference(sts),
        )

    # -- KubeVirt -------------------------------------------------------------------

    @_on_loop
    def create_virtual_machine(self, name: str, namespace: str = "default", *, running: bool = True) -> JSON:
        """A VirtualMachine as ``kubectl apply`` creates one (the VM controller is not simulated)."""
        body = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": name},
            "spec": {
                "running": running,
                "template": {"metadata": {"labels": {"kubevirt.io/vm": name}}, "spec": {"domain": {"devices": {}}}},
            },
        }
        return self.registry.create(VIRTUAL_MACHINES, namespace, body)

    @_on_loop
    def create_virtual_machine_instance(self, vm: JSON) -> JSON:
        """The VirtualMachineInstance the VM controller starts for ``vm``: same name, owned by it."""
        body = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {
                "name": vm["metadata"]["name"],
                "labels": {"kubevirt.io/vm": vm["metadata"]["name"]},
                "ownerReferences": [self.owner_reference(vm)],
            },
            "spec": {"domain": {"devices": {}}},
        }
        return self.registry.create(VIRTUAL_MACHINE_INSTANCES, vm["metadata"]["namespace"], body)

    def launcher_pod(
        self,
        vmi: JSON,
        *,
        suffix: str,
        node_name: str | None = None,
        phase: str = "Running",
        annotations: dict[str, str] | None = None,
    ) -> JSON:
        """A virt-launcher pod of ``vmi``, as virt-controller creates one (a migration target is a second one)."""
        name = vmi["metadata"]["name"]
        return self.create_pod(
            f"virt-launcher-{name}-{suffix}",
            vmi["metadata"]["namespace"],
            node_name=node_name,
            phase=phase,
            labels={
                "kubevirt.io": "virt-launcher",
                "vm.kubevirt.io/name": name,
                "kubevirt.io/created-by": vmi["metadata"]["uid"],
            },
            annotations=annotations,
            owner=self.owner_reference(vmi),
        )

    # -- watch control ------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The current global resource version."""
        return self.store.resource_version

    @_on_loop
    def watch_count(self, resource: str | None = None) -> int:
        """Open watch connections (of one resource, or all)."""
        key = self._resource(resource).key if resource else None
        return sum(1 for w in self.store.watchers if key is None or w.resource_key == key)

    async def wait_for_watches(self, count: int = 1, resource: str | None = None, timeout: float = 10.0) -> None:
        """Wait (async) until at least ``count`` watches are open."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.watch_count(resource) < count:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"expected {count} open watches, have {self.watch_count(resource)}")
            await asyncio.sleep(0.01)

    @_on_loop
    def drop_watches(self, abrupt: bool = False) -> int:
        """End every open watch: cleanly (stream ends), or by cutting the TCP connection."""
        return self.store.close_all([ABORT if abrupt else CLOSE])

    @_on_loop
    def expire_watches(self) -> int:
        """Send every open watch an ERROR 410 Expired event, then end it.

        This is what a client sees when the apiserver's watch cache can no
        longer serve it (it fell too far behind).
        """
        status = errors.gone(f"too old resource version: {self.store.resource_version}").status()
        return self.store.close_all([{"type": "ERROR", "object": status}, CLOSE])

    @_on_loop
    def compact(self) -> None:
        """Drop the watch history: resuming from any older resourceVersion yields 410."""
        self.store.compact()

    @_on_loop
    def send_bookmarks(self) -> int:
        """Send a BOOKMARK to every watch that allowed bookmarks."""
        self.store.bookmark_all()
        return sum(1 for w in self.store.watchers if w.bookmarks)

    # -- fault injection ------------------------------------------------------------

    @_on_loop
    def inject_error(
        self,
        method: str,
        path_pattern: str,
        code: int = 500,
        reason: str = "InternalError",
        message: str = "injected failure",
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with a Status error.

        ``path_pattern`` is a regular expression searched in the URL path.
        ``retry_after`` adds the ``Retry-After`` header and ``details.retryAfterSeconds``,
        as API Priority and Fairness does with its 429s.
        """
        details = {"retryAfterSeconds": retry_after} if retry_after is not None else None
        self._faults.append(
            InjectedFault(method.upper(), re.compile(path_pattern), ApiError(code, reason, message, details), times)
        )

    @_on_loop
    def clear_faults(self) -> int:
        """Forget the injected faults not served yet; returns how many were dropped."""
        dropped = sum(fault.remaining for fault in self._faults)
        self._faults.clear()
        return dropped

    def take_fault(self, method: str, path: str) -> ApiError | None:
        for fault in self._faults:
            if fault.method in (method, "*") and fault.path.search(path) and fault.remaining > 0:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault.error
        return None

    @_on_loop
    def recorded(self, method: str | None = None, path_contains: str | None = None) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path_contains is None or path_contains in r.path)
        ]


class ThreadedKubeApi:
    """A :class:`KubeApiDouble` serving from a daemon thread with its own loop."""

    def __init__(self, api: KubeApiDouble, start_timeout: float = 10.0) -> None:
        self.api = api
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kube-api-double", daemon=True)
        self._thread.start()
        if not self._started.wait(start_timeout):
            raise RuntimeError("kube API double did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.api.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    @property
    def url(self) -> str:
        return self.api.url

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        return self.api.write_kubeconfig(path, namespace)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.api.stop(), self._loop).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)

    def __enter__(self) -> ThreadedKubeApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["KubeApiDouble", "ThreadedKubeApi", "parse_time"]
