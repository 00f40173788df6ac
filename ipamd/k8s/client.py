"""The Kubernetes API adapter: kubernetes_asyncio in, plain JSON objects and ipamd errors out.

Only this module imports kubernetes_asyncio. It uses the library for what it does well
(kubeconfig and in-cluster credentials, TLS, token refresh, the HTTP session) and reads
responses itself, as JSON dictionaries: ipamd needs a handful of fields of pods, not typed
models, and a watch must be read line by line with control over resourceVersion.

Errors leave here as ``ipamd.errors`` types, decided in one place (:func:`error_for`):
404 is ``NotFound``, 409 ``Conflict``, 410 ``Gone`` (relist), 401/403 ``Refused``
(RBAC), 429 ``TooManyRequests`` (with the server's ``Retry-After``), 400/422
``InvalidInput``, anything else and every transport failure ``Unavailable``.

Being polite to the API server: a 429 is retried here a few times after the delay the
server asks for, then handed to the caller with that delay (:func:`wait_asked`), which the
long-running loops (watch, Lease, SQLite claim, annotation retries) wait at least. Lists can be served from the watch cache
(``resourceVersion=0``, possibly older than what the caller has seen; a caller that must
not go back in time passes its version with ``resourceVersionMatch=NotOlderThan``) and can hand each item to a callback as its page arrives, so no
caller has to hold a whole cluster's pods. The client remembers the last successful
exchange (readiness) and the API server's clock (``Date``), for decisions that compare
times written by the API server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config
from kubernetes_asyncio.config.config_exception import ConfigException

from ipamd.errors import AlreadyExists, InvalidInput, IpamError, NotFound, Unavailable

log = logging.getLogger("ipamd.k8s.client")

JSON = dict[str, Any]
REQUEST_TIMEOUT_SECONDS = 10.0
LIST_PAGE_SIZE = 500
# A 429 is retried this many times in ``request`` before the caller sees it.
RETRIES_ON_429 = 3
# The longest Retry-After honoured inline; longer ones go to the caller.
LONGEST_INLINE_WAIT = 10.0
MERGE_PATCH = "application/merge-patch+json"


class Gone(Unavailable):
    """410: the resourceVersion is too old (watch history compacted): list again."""


class Conflict(AlreadyExists):
    """409: the object exists already, or changed since it was read."""


class Refused(Unavailable):
    """401/403: the daemon's credentials or RBAC do not allow the request."""


class TooManyRequests(Unavailable):
    """429: the API server (API Priority and Fairness) asks to come back after ``retry_after`` s."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retry_after_of(headers: Any, body: bytes | str | None) -> float:
    """Returns the delay a 429 asks for: the ``Retry-After`` header, else the Status details, else 1 s."""
    value = headers.get("Retry-After") if headers is not None else None
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
    if body:
        try:
            details = (json.loads(body) or {}).get("details") or {}
            return max(0.0, float(details["retryAfterSeconds"]))
        except (ValueError, TypeError, AttributeError, KeyError):
            pass
    return 1.0


def wait_asked(error: IpamError) -> float:
    """The seconds an error asks the caller to wait before asking again: a 429's ``Retry-After``, else 0."""
    return error.retry_after if isinstance(error, TooManyRequests) else 0.0


def error_for(status: int, body: bytes | str | None, *, what: str, headers: Any = None) -> IpamError:
    """Returns the ipamd error for a failed API request (``what`` names it for the message)."""
    message = ""
    reason = ""
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            message = str(parsed.get("message") or "")
            reason = str(parsed.get("reason") or "")
        elif isinstance(body, (bytes, str)):
            message = (body.decode(errors="replace") if isinstance(body, bytes) else body)[:200]
    detail = f"{what}: {status} {reason}".rstrip() + (f": {message}" if message else "")
    if status == 404:
        return NotFound(detail)
    if status == 409:
        return Conflict(detail)
    if status == 410:
        return Gone(detail)
    if status in (401, 403):
        return Refused(f"{detail}; grant ipamd's service account the RBAC rules of docs/kubernetes.md")
    if status in (400, 422):
        return InvalidInput(detail)
    if status == 429:
        delay = retry_after_of(headers, body)
        return TooManyRequests(f"kubernetes API busy ({detail}); retry after {delay:g}s", retry_after=delay)
    return Unavailable(f"kubernetes API unavailable ({detail}); retry later")


def pod_path(namespace: str, name: str | None = None) -> str:
    base = f"/api/v1/namespaces/{quote(namespace, safe='')}/pods"
    return base if name is None else f"{base}/{quote(name, safe='')}"


class KubeClient:
    """A Kubernetes API client speaking JSON, with ipamd's errors."""

    def __init__(self, api_client: k8s_client.ApiClient, *, request_timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.api_client = api_client
        self.request_timeout = request_timeout
        # time.monotonic() of the last successful exchange (a watch event counts), or None.
        self.last_ok: float | None = None
        # The API server's clock minus ours, from the Date header of the last answer.
        self.clock_offset = timedelta(0)

    @classmethod
    async def connect(cls, kubeconfig: str | None) -> KubeClient:
        """Returns a client for the cluster of ``kubeconfig``, or in-cluster credentials when None."""
        configuration = k8s_client.Configuration()
        try:
            if kubeconfig:
                await k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
            else:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except (ConfigException, OSError, ValueError, TypeError) as e:
            where = f"kubeconfig {kubeconfig}" if kubeconfig else "in-cluster configuration (service account token)"
            raise InvalidInput(
                f"cannot load {where}: {e}; pass --kubeconfig FILE outside a pod", field="kubeconfig"
            ) from e
        return cls(k8s_client.ApiClient(configuration))

    @property
    def host(self) -> str:
        return str(self.api_client.configuration.host)

    async def close(self) -> None:
        await self.api_client.close()

    def now(self) -> datetime:
        """The API server's time (our clock corrected by its ``Date``), for release decisions."""
        return datetime.now(UTC) + self.clock_offset

    def _answered(self, response: aiohttp.ClientResponse) -> None:
        date = response.headers.get("Date")
        if date:
            try:
                server = parsedate_to_datetime(date)
            except (TypeError, ValueError):
                server = None
            if server is not None and server.tzinfo is not None:
                # Date has a resolution of 1 s: offsets under that are noise.
                offset = server - datetime.now(UTC)
                self.clock_offset = offset if abs(offset) > timedelta(seconds=1) else timedelta(0)

    # ----------------------------------------------------------------- plumbing

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        timeout: aiohttp.ClientTimeout | float | None = None,
    ) -> aiohttp.ClientResponse:
        """Sends one request and returns the response unread (the caller releases it)."""
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            response: aiohttp.ClientResponse = await self.api_client.call_api(
                path,
                method,
                query_params=list(query),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=timeout if timeout is not None else self.request_timeout,
            )
        except (aiohttp.ClientError, OSError) as e:
            raise Unavailable(
                f"kubernetes API unreachable at {self.host} ({type(e).__name__}: {e}); retry later"
            ) from e
        except TimeoutError as e:
            raise Unavailable(
                f"kubernetes API at {self.host} did not answer {method} {path} in time; retry later"
            ) from e
        return response

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> JSON:
        """Returns the JSON answer of one request; raises the mapped error on failure."""
        for attempt in range(RETRIES_ON_429 + 1):
            response = await self._send(method, path, query=query, body=body, content_type=content_type)
            try:
                data = await response.read()
            except (aiohttp.ClientError, OSError) as e:
                raise Unavailable(
                    f"kubernetes API connection lost during {method} {path} ({type(e).__name__}); retry later"
                ) from e
            except TimeoutError as e:
                raise Unavailable(
                    f"kubernetes API at {self.host} did not answer {method} {path} in time; retry later"
                ) from e
            finally:
                response.release()
            self._answered(response)
            if response.status != 429:
                break
            error = error_for(response.status, data, what=f"{method} {path}", headers=response.headers)
            assert isinstance(error, TooManyRequests)
            if attempt == RETRIES_ON_429 or error.retry_after > LONGEST_INLINE_WAIT:
                raise error
            log.info("%s %s: 429 from the API server; retrying after %gs", method, path, error.retry_after)
            await asyncio.sleep(error.retry_after)
        if not 200 <= response.status < 300:
            raise error_for(response.status, data, what=f"{method} {path}", headers=response.headers)
        self.last_ok = time.monotonic()
        try:
            parsed = json.loads(data) if data else {}
        except ValueError as e:
            raise Unavailable(f"kubernetes API answered {method} {path} with something that is not JSON") from e
        if not isinstance(parsed, dict):
            raise Unavailable(
                f"kubernetes API answered {method} {path} with a JSON {type(parsed).__name__}, not an object"
            )
        return parsed

    async def get(self, path: str) -> JSON | None:
        """Returns the object at ``path``, or None when it does not exist."""
        try:
            return await self.request("GET", path)
        except NotFound:
            return None

    async def list_all(
        self,
        path: str,
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
        page_size: int = LIST_PAGE_SIZE,
        resource_version: str | None = None,
        resource_version_match: str | None = None,
        keep: Callable[[JSON], Any] | None = None,
    ) -> tuple[list[Any], str]:
        """Returns every item of a collection (read in pages) and the list's resourceVersion.

        ``resource_version="0"`` lets the API server answer from its watch cache instead of
        etcd, as client-go's reflector lists (the server may then ignore ``limit``): the
        answer may be older than what the caller has seen. ``None`` is a consistent read
        (the newest state). Any other version needs ``resource_version_match``: with
        ``limit`` set and no match the API server reads it as ``Exact`` (the state at that
        version, 410 once compacted), not ``NotOlderThan`` (at least as new). Both are sent
        with the first page only; a continue token carries the version of its list.
        ``page_size=0`` sends no ``limit``: one answer. A list at a non-zero version can then
        be served from the watch cache, where with ``limit`` the API server (before 1.34's
        snapshot pagination) reads it from etcd.
        ``keep`` turns each item into what the caller stores (None drops it) as its page
        arrives, so only one page of full objects is ever held.

        Raises ``Gone`` when the first page answers 410: the version asked for is no longer
        available (client-go's "last sync resourceVersion unavailable"), and the caller
        chooses what to list instead. A 410 on a later page is an expired continue token:
        the list starts over, a few times.
        """
        for _ in range(3):
            items: list[Any] = []
            token: str | None = None
            try:
                while True:
                    query = [("limit", str(page_size))] if page_size > 0 else []
                    if not token:
                        if resource_version is not None:
                            query.append(("resourceVersion", resource_version))
                        if resource_version_match:
                            query.append(("resourceVersionMatch", resource_version_match))
                    if field_selector:
                        query.append(("fieldSelector", field_selector))
                    if label_selector:
                        query.append(("labelSelector", label_selector))
                    if token:
                        query.append(("continue", token))
                    page = await self.request("GET", path, query=query)
                    raw = page.pop("items", None) or []
                    if keep is None:
                        items.extend(raw)
                    else:
                        for item in raw:
                            kept = keep(item)
                            if kept is not None:
                                items.append(kept)
                    del raw
                    meta = page.get("metadata") or {}
                    token = meta.get("continue") or None
                    if token is None:
                        return items, str(meta.get("resourceVersion") or "")
            except Gone:
                if token is None:
                    raise  # the first page: the version asked for is gone, the caller decides
                # The continue token outlived the history it points into: start over.
                log.info("list %s: continue token expired; listing again", path)
        raise Unavailable(f"could not list {path} consistently (history kept expiring); retry later")

    async def watch(
        self,
        path: str,
        *,
        resource_version: str | None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncGenerator[JSON, None]:
        """Yields the events of one watch request until the server ends it.

        Raises ``Gone`` for an expired resourceVersion (an ERROR event or a 410 answer) and
        ``Unavailable`` when the connection fails; the caller resumes or relists.
        """
        query = [("watch", "true"), ("allowWatchBookmarks", "true"), ("timeoutSeconds", str(timeout_seconds))]
        if resource_version:
            query.append(("resourceVersion", resource_version))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        # No total deadline; a read silent for longer than the server's own timeout means a
        # connection that died without a FIN.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.request_timeout, sock_read=timeout_seconds + 30)
        response = await self._send("GET", path, query=query, timeout=timeout)
        try:
            self._answered(response)
            if response.status != 200:
                raise error_for(response.status, await response.read(), what=f"watch {path}", headers=response.headers)
            self.last_ok = time.monotonic()
            if on_open is not None:
                on_open()
            async for line in response.content:
                self.last_ok = time.monotonic()
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                except ValueError as e:
                    raise Unavailable(f"watch {path}: undecodable event ({len(line)} bytes); reconnecting") from e
                if not isinstance(event, dict) or not isinstance(event.get("object"), dict):
                    raise Unavailable(f"watch {path}: malformed event; reconnecting")
                if event.get("type") == "ERROR":
                    status = event["object"]
                    raise error_for(int(status.get("code") or 500), json.dumps(status), what=f"watch {path}")
                yield event
        except (aiohttp.ClientError, OSError) as e:
            raise Unavailable(f"watch {path}: connection lost ({type(e).__name__})") from e
        except TimeoutError as e:
            raise Unavailable(f"watch {path}: no data for {timeout_seconds + 30}s") from e
        except asyncio.CancelledError:
            response.close()
            raise
        finally:
            response.release()

    # ----------------------------------------------------------------- resources

    async def get_pod(self, namespace: str, name: str) -> JSON | None:
        return await self.get(pod_path(namespace, name))

    async def patch_pod_annotations(
        self,
        namespace: str,
        name: str,
        annotations: dict[str, str | None],
        *,
        uid: str | None = None,
    ) -> JSON:
        """Sets (or, for None values, removes) only these annotations: a JSON merge patch.

        With ``uid``, the patch applies only to that instance of the pod: the API server
        takes ``metadata.uid`` in a patch as a precondition and answers 409 otherwise.
        """
        metadata: JSON = {"annotations": annotations}
        if uid:
            metadata["uid"] = uid
        return await self.request(
            "PATCH", pod_path(namespace, name), body={"metadata": metadata}, content_type=MERGE_PATCH
        )

    async def create_event(self, namespace: str, event: JSON) -> JSON:
        return await self.request("POST", f"/api/v1/namespaces/{quote(namespace, safe='')}/events", body=event)

    async def patch_event(self, namespace: str, name: str, patch: JSON) -> JSON:
        return await self.request(
            "PATCH",
            f"/api/v1/namespaces/{quote(namespace, safe='')}/events/{quote(name, safe='')}",
            body=patch,
            content_type=MERGE_PATCH,
        )

    async def get_statefulset(self, namespace: str, name: str) -> JSON | None:
        return await self.get(
            f"/apis/apps/v1/namespaces/{quote(namespace, safe='')}/statefulsets/{quote(name, safe='')}"
        )

    async def get_virtual_machine(self, namespace: str, name: str) -> JSON | None:
        return await self.get(
            f"/apis/kubevirt.io/v1/namespaces/{quote(namespace, safe='')}/virtualmachines/{quote(name, safe='')}"
        )

    async def get_virtual_machine_instance(self, namespace: str, name: str) -> JSON | None:
        return await self.get(
            f"/apis/kubevirt.io/v1/namespaces/{quote(namespace, safe='')}/virtualmachineinstances/{quote(name, safe='')}"
        )

    async def list_statefulsets(self, *, keep: Callable[[JSON], Any] | None = None) -> list[Any]:
        items, _ = await self.list_all("/apis/apps/v1/statefulsets", resource_version="0", keep=keep)
        return items

    async def list_pods(
        self, *, field_selector: str | None = None, keep: Callable[[JSON], Any] | None = None
    ) -> tuple[list[Any], str]:
        return await self.list_all("/api/v1/pods", field_selector=field_selector, keep=keep)

    def lease_path(self, namespace: str, name: str | None = None) -> str:
        base = f"/apis/coordination.k8s.io/v1/namespaces/{quote(namespace, safe='')}/leases"
        return base if name is None else f"{base}/{quote(name, safe='')}"

    async def get_lease(self, namespace: str, name: str) -> JSON | None:
        return await self.get(self.lease_path(namespace, name))

    async def create_lease(
        self, namespace: str, name: str, spec: JSON, *, annotations: dict[str, str] | None = None
    ) -> JSON:
        """Creates the Lease ``name``; one that exists already answers ``Conflict``."""
        metadata: JSON = {"name": name, "namespace": namespace}
        if annotations:
            metadata["annotations"] = annotations
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}
        return await self.request("POST", self.lease_path(namespace), body=lease)

    async def replace_lease(self, namespace: str, name: str, lease: JSON) -> JSON:
        """PUT with the read resourceVersion: a concurrent change answers ``Conflict``."""
        return await self.request("PUT", self.lease_path(namespace, name), body=lease)
