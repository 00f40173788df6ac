"""HTTP layer: URL routing, query parameters, content negotiation, watches.

A single catch-all route parses Kubernetes REST paths itself; aiohttp's
router cannot express "``namespaces/{ns}/pods`` unless the third segment is
a namespace subresource" without more ceremony than this does.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import discovery, errors, openapi
from .errors import ApiError
from .patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from .registry import PATCH_TYPES, DeleteOptions, Registry
from .resources import STATEFULSETS, ResourceType, lookup
from .selectors import (
    FieldSelector,
    LabelSelector,
    label_selector_string,
    parse_field_selector,
    parse_label_selector,
)
from .store import ABORT, CLOSE, Watcher
from .tables import partial_metadata, to_table

if TYPE_CHECKING:
    from .server import KubeApiDouble

JSON = dict[str, Any]

# Used when a watch request does not set timeoutSeconds.  The apiserver picks
# a random value between --min-request-timeout (1800 s) and twice that.
DEFAULT_WATCH_TIMEOUT = 1800.0


@dataclass
class RecordedRequest:
    """One request as the double saw it, for tests asserting client behaviour."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    # time.monotonic() on arrival, for tests of request pacing.
    at: float = field(default_factory=time.monotonic)
    # Lists only: "cache" (the watch cache) or "etcd" (see _served_from).
    served_from: str | None = None


def _served_from(query: dict[str, str]) -> str:
    """Where an apiserver (before 1.34's snapshot pagination, without the consistent reads
    from cache of 1.31) serves a list: from the watch cache when it asks for
    ``resourceVersion=0``, or for another version not Exact and without ``limit``; from
    etcd otherwise (a consistent read, a continue token, an Exact or paginated version)."""
    rv = query.get("resourceVersion") or ""
    if query.get("continue") or not rv:
        return "etcd"
    if rv == "0":
        return "cache"
    match = query.get("resourceVersionMatch") or ""
    return "cache" if match in ("", "NotOlderThan") and not int(query.get("limit") or 0) else "etcd"


@dataclass
class InjectedFault:
    method: str
    path: re.Pattern[str]
    error: ApiError
    remaining: int


@dataclass
class Target:
    """What a resource URL addresses."""

    resource: ResourceType
    namespace: str | None  # None: all namespaces (or a cluster-scoped resource)
    name: str | None
    subresource: str | None


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _error(err: ApiError) -> web.Response:
    response = _json(err.status(), status=err.code)
    retry_after = (err.details or {}).get("retryAfterSeconds")
    if retry_after is not None:
        # The apiserver sends both: the header for HTTP clients, the detail for client-go.
        response.headers["Retry-After"] = str(retry_after)
    return response


def format_http_date(moment: datetime) -> str:
    return format_datetime(moment, usegmt=True)


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in ("1", "true", "yes")


# -- content negotiation ---------------------------------------------------------


@dataclass
class OutputFormat:
    as_: str  # "object", "Table" or "PartialObjectMetadata"
    table_version: str = "meta.k8s.io/v1"


def negotiate(accept: str | None) -> OutputFormat:
    """Pick the first acceptable media type from the Accept header."""
    if not accept:
        return OutputFormat("object")
    for media in accept.split(","):
        parts = [p.strip() for p in media.split(";")]
        mime, params = parts[0], dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if mime not in ("application/json", "*/*", "application/*"):
            continue
        wanted = params.get("as")
        if wanted is None:
            return OutputFormat("object")
        if params.get("g") != "meta.k8s.io":
            continue
        version = params.get("v", "v1")
        if wanted == "Table":
            return OutputFormat("Table", f"meta.k8s.io/{version}")
        if wanted in ("PartialObjectMetadata", "PartialObjectMetadataList"):
            return OutputFormat("PartialObjectMetadata", f"meta.k8s.io/{version}")
    raise errors.not_acceptable(accept)


# -- path parsing ------------------------------------------------------------------


def parse_resource_path(segments: list[str], served: Sequence[ResourceType]) -> Target | None:
    """Map ``/api/v1/...`` or ``/apis/G/V/...`` segments to a target among the ``served`` resources."""
    if segments[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", segments[2:]
    elif len(segments) >= 3 and segments[0] == "apis":
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    namespace: str | None = None
    # "namespaces/NAME" addresses the Namespace itself unless a resource
    # name follows (status and finalize are Namespace subresources).
    if rest[:1] == ["namespaces"] and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    resource = lookup(group, version, rest[0], served)
    if resource is None:
        return None
    if namespace is not None and not resource.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and not ((sub == "status" and resource.has_status) or (sub == "scale" and resource.has_scale)):
        return None
    if resource.namespaced and namespace is None and name is not None:
        # Namespaced objects cannot be addressed without their namespace.
        return None
    return Target(resource, namespace, name, sub)


class Handlers:
    """The aiohttp request handler bound to one double."""

    def __init__(self, double: KubeApiDouble) -> None:
        self.double = double

    @property
    def registry(self) -> Registry:
        return self.double.registry

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        query = {k: v for k, v in request.query.items()}
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
        recorded = RecordedRequest(
            request.method,
            request.path,
            query,
            request.headers.get("Content-Type", ""),
            body,
            {k: v for k, v in request.headers.items()},
        )
        self.double.requests.append(recorded)
        try:
            fault = self.double.take_fault(request.method, request.path)
            if fault is not None:
                raise fault
            response = await self._dispatch(request, raw, body, query, recorded)
        except ApiError as err:
            response = _error(err)
        if not response.prepared:
            # The emulated clock (TestClock), as a clock offset between the API server and a node shows.
            response.headers["Date"] = format_http_date(self.double.clock.now())
        return response

    async def _dispatch(
        self,
        request: web.Request,
        raw: bytes,
        body: Any,
        query: dict[str, str],
        recorded: RecordedRequest | None = None,
    ) -> web.StreamResponse:
        segments = [s for s in request.path.split("/") if s]
        method = request.method
        static = self._static(segments, request.headers.get("Accept"))
        if static is not None:
            if method != "GET":
                raise errors.method_not_allowed()
            return static
        if segments in (["healthz"], ["readyz"], ["livez"]):
            return web.Response(text="ok")
        target = parse_resource_path(segments, self.double.served)
        if target is None:
            raise errors.path_not_found()
        resource = target.resource
        if target.subresource == "scale":
            return await self._scale(request, target, raw, body, query)

        if method == "GET":
            fmt = negotiate(request.headers.get("Accept"))
            if target.name is None:
                if _truthy(query.get("watch")):
                    return await self._watch(request, target, query, fmt)
                listed = self._list(target, query, fmt)
                if recorded is not None:
                    recorded.served_from = _served_from(query)
                return _json(listed)
            obj = self.registry.get(resource, target.namespace or "", target.name)
            return _json(self._render_one(resource, obj, fmt, query))
        if target.name is None:
            if resource.namespaced and target.namespace is None and method != "GET":
                # All-namespaces collections are read-only.
                raise errors.method_not_allowed()
            if method == "POST":
                created = self.registry.create(resource, target.namespace, body, dry_run=bool(query.get("dryRun")))
                return _json(created, status=201)
            if method == "DELETE":
                return _json(self._delete_collection(target, body, query))
            raise errors.method_not_allowed()
        namespace = target.namespace or ""
        dry_run = bool(query.get("dryRun"))
        if method == "PUT":
            return _json(self.registry.update(resource, namespace, target.name, body, target.subresource, dry_run))
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            return _json(
                self.registry.patch(resource, namespace, target.name, content_type, raw, target.subresource, dry_run)
            )
        if method == "DELETE" and target.subresource is None:
            return _json(self.registry.delete(resource, namespace, target.name, DeleteOptions.parse(body, query)))
        raise errors.method_not_allowed()

    # -- discovery and other fixed documents ---------------------------------

    def _static(self, segments: list[str], accept: str | None) -> web.Response | None:
        double = self.double
        if segments == ["version"]:
            return _json(discovery.version_info(*double.server_version))
        if segments == ["api"]:
            return _json(discovery.core_versions(f"{double.host}:{double.port}"))
        if segments == ["apis"]:
            return _json(discovery.group_list(double.served))
        if segments == ["api", "v1"]:
            return _json(discovery.resource_list("", "v1", double.served))
        if len(segments) == 2 and segments[0] == "apis":
            group = discovery.api_group(segments[1], double.served)
            if group is None:
                raise errors.path_not_found()
            return _json(group)
        if len(segments) == 3 and segments[0] == "apis":
            listing = discovery.resource_list(segments[1], segments[2], double.served)
            if listing is None:
                raise errors.path_not_found()
            return _json(listing)
        if segments == ["openapi", "v3"]:
            return _json(openapi.root_document(self._version_string(), double.served))
        if segments[:2] == ["openapi", "v3"] and len(segments) > 2:
            rest = segments[2:]
            if rest[0] == "api" and len(rest) == 2:
                api_group, api_version = "", rest[1]
            elif rest[0] == "apis" and len(rest) == 3:
                api_group, api_version = rest[1], rest[2]
            else:
                raise errors.path_not_found()
            doc = openapi.group_version_document(api_group, api_version, self._version_string(), double.served)
            if doc is None:
                raise errors.path_not_found()
            return _json(doc)
        if segments == ["openapi", "v2"]:
            if openapi.PROTOBUF_V2 in (accept or ""):
                # Answered with a '.' for the '@': Go's mime parser (as in
                # kubectl) rejects '@' in a Content-Type, and kube-openapi
                # does the same.
                return web.Response(
                    body=openapi.swagger_v2_protobuf(self._version_string()),
                    content_type=openapi.PROTOBUF_V2.replace("@", "."),
                )
            return _json(openapi.swagger_v2_json(self._version_string()))
        return None

    def _version_string(self) -> str:
        major, minor = self.double.server_version
        return f"v{major}.{minor}.0"

    # -- reads ------------------------------------------------------------------

    def _selectors(self, resource: ResourceType, query: dict[str, str]) -> tuple[LabelSelector, FieldSelector]:
        return (
            parse_label_selector(query.get("labelSelector")),
            parse_field_selector(query.get("fieldSelector"), resource.field_getters()),
        )

    def _list(self, target: Target, query: dict[str, str], fmt: OutputFormat) -> JSON:
        resource = target.resource
        labels, fields = self._selectors(resource, query)
        current = self.double.store.resource_version
        rv_param = query.get("resourceVersion") or ""
        match = query.get("resourceVersionMatch") or ""
        at_rv: int | None = None
        start_after: tuple[str, str] | None = None
        if query.get("continue"):
            at_rv, start_after = self._decode_continue(query["continue"])
        elif rv_param not in ("", "0"):
            wanted = self._parse_rv(rv_param)
            # With limit and no resourceVersionMatch, a non-zero resourceVersion means Exact
            # (the paginated list's legacy semantics, KEP-2523), not NotOlderThan.
            if match == "Exact" or (not match and int(query.get("limit") or 0) > 0):
                at_rv = wanted
            elif wanted > current:
                raise ApiError(
                    504,
                    "Timeout",
                    f"Too large resource version: {wanted}, current: {current}",
                    {
                        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                        "retryAfterSeconds": 1,
                    },
                )
        elif match == "Exact":
            raise errors.bad_request(
                'resourceVersionMatch: Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"'
            )

        list_rv = at_rv if at_rv is not None else current
        meta: JSON = {"resourceVersion": str(list_rv)}
        limit = int(query.get("limit") or 0)
        if rv_param == "0" and not query.get("continue") and not self.double.paginate_cache:
            # Served from the watch cache, which (before the ListFromCacheSnapshot feature,
            # default in 1.34) ignores limit: the whole collection in one answer.
            limit = 0
        objects, remaining = self.registry.list_page(
            resource,
            target.namespace,
            at_rv,
            lambda o: labels.matches(o["metadata"].get("labels")) and fields.matches(o),
            start_after,
            limit,
        )
        if remaining:
            last = objects[-1]["metadata"]
            meta["continue"] = self._encode_continue(list_rv, (last.get("namespace", ""), last["name"]))
            meta["remainingItemCount"] = remaining
        if fmt.as_ == "Table":
            return to_table(
                resource.kind,
                objects,
                self.double.clock.now(),
                meta,
                query.get("includeObject") or "PartialObjectMetadata",
                fmt.table_version,
            )
        if fmt.as_ == "PartialObjectMetadata":
            return {
                "kind": "PartialObjectMetadataList",
                "apiVersion": fmt.table_version,
                "metadata": meta,
                "items": [partial_metadata(o) for o in objects],
            }
        for obj in objects:
            # Items of a typed list carry no kind/apiVersion of their own.
            obj.pop("kind", None)
            obj.pop("apiVersion", None)
        return {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": meta, "items": objects}

    def _render_one(self, resource: ResourceType, obj: JSON, fmt: OutputFormat, query: dict[str, str]) -> JSON:
        if fmt.as_ == "Table":
            return to_table(
                resource.kind,
                [obj],
                self.double.clock.now(),
                {"resourceVersion": obj["metadata"]["resourceVersion"]},
                query.get("includeObject") or "PartialObjectMetadata",
                fmt.table_version,
            )
        if fmt.as_ == "PartialObjectMetadata":
            return partial_metadata(obj)
        return obj

    @staticmethod
    def _parse_rv(value: str) -> int:
        if not value.isdigit():
            raise ApiError(
                400, "BadRequest", f'resourceVersion: Invalid value: "{value}": must be a non-negative integer'
            )
        return int(value)

    @staticmethod
    def _encode_continue(rv: int, after: tuple[str, str]) -> str:
        token = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(after)})
        return base64.urlsafe_b64encode(token.encode()).decode()

    def _decode_continue(self, token: str) -> tuple[int, tuple[str, str]]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token.encode()))
            rv, start = int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise errors.bad_request(f"continue key is not valid: {exc}") from exc
        if self.double.store.changes_after(rv) is None:
            raise errors.gone(
                "The provided continue parameter is too old to display a consistent list result. "
                "You can start a new list without the continue parameter, or use the continue token "
                "in this response to retrieve the remainder of the results. Continuing with the "
                "provided token results in an inconsistent list - objects that were created, modified, "
                "or deleted between the time the first chunk was returned and now may show up in the list."
            )
        return rv, start

    # -- watch --------------------------------------------------------------------

    async def _watch(
        self, request: web.Request, target: Target, query: dict[str, str], fmt: OutputFormat
    ) -> web.StreamResponse:
        resource = target.resource
        labels, fields = self._selectors(resource, query)
        store = self.double.store
        registry = self.registry
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else DEFAULT_WATCH_TIMEOUT
        rv_param = query.get("resourceVersion") or ""
        watcher = Watcher(
            resource_key=resource.key,
            namespace=target.namespace,
            labels=labels,
            fields=fields,
            bookmarks=_truthy(query.get("allowWatchBookmarks")),
            kind=resource.kind,
            api_version=resource.api_version,
            view=lambda obj: registry.to_view(resource, obj),
        )
        initial: list[JSON] = []
        expired: ApiError | None = None
        # No await from here to add_watcher: the replay and the live stream
        # must join without a gap.
        if rv_param in ("", "0"):
            for obj in registry.list_objects(resource, target.namespace):
                if watcher.matches(obj):
                    initial.append({"type": "ADDED", "object": obj})
            if _truthy(query.get("sendInitialEvents")) and watcher.bookmarks:
                initial.append(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": resource.kind,
                            "apiVersion": resource.api_version,
                            "metadata": {
                                "resourceVersion": str(store.resource_version),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }
                )
        else:
            since = self._parse_rv(rv_param)
            changes = store.changes_after(since)
            if changes is None:
                expired = errors.gone(f"too old resource version: {since} ({store.oldest_resumable})")
            else:
                for change in changes:
                    if change.resource_key == resource.key:
                        event = watcher.event_for(change)
                        if event is not None:
                            initial.append(event)
        if expired is None:
            store.add_watcher(watcher)

        response = web.StreamResponse(
            status=200, headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        def encode(event: JSON) -> bytes:
            if fmt.as_ == "Table" and event["type"] != "BOOKMARK" and event["type"] != "ERROR":
                event = {
                    "type": event["type"],
                    "object": to_table(
                        resource.kind,
                        [event["object"]],
                        self.double.clock.now(),
                        {"resourceVersion": event["object"]["metadata"].get("resourceVersion", "")},
                        query.get("includeObject") or "PartialObjectMetadata",
                        fmt.table_version,
                    ),
                }
            elif fmt.as_ == "PartialObjectMetadata" and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                event = {"type": event["type"], "object": partial_metadata(event["object"])}
            return json.dumps(event, separators=(",", ":")).encode() + b"\n"

        try:
            await response.prepare(request)
            if expired is not None:
                # Like the apiserver's watch cache: 200, then an ERROR event.
                await response.write(encode({"type": "ERROR", "object": expired.status()}))
                await response.write_eof()
                return response
            for event in initial:
                await response.write(encode(event))
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    break
                if item is CLOSE:
                    break
                if item is ABORT:
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                assert isinstance(item, dict)
                await response.write(encode(item))
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            store.remove_watcher(watcher)
        return response

    # -- collection delete ---------------------------------------------------------

    def _delete_collection(self, target: Target, body: Any, query: dict[str, str]) -> JSON:
        resource = target.resource
        labels, fields = self._selectors(resource, query)
        options = DeleteOptions.parse(body, query)
        items = []
        for obj in self.registry.list_objects(resource, target.namespace):
            if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj):
                answer = self.registry.delete(
                    resource, obj["metadata"].get("namespace", ""), obj["metadata"]["name"], options
                )
                if answer.get("kind") != "Status":
                    answer.pop("kind", None)
                    answer.pop("apiVersion", None)
                    items.append(answer)
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": {"resourceVersion": str(self.double.store.resource_version)},
            "items": items,
        }

    # -- scale subresource -------------------------------------------------------

    async def _scale(
        self, request: web.Request, target: Target, raw: bytes, body: Any, query: dict[str, str]
    ) -> web.Response:
        assert target.resource is STATEFULSETS and target.name is not None and target.namespace is not None
        namespace, name = target.namespace, target.name
        if request.method == "GET":
            return _json(self.scale_of(self.registry.get(STATEFULSETS, namespace, name)))
        if request.method == "PUT":
            if not isinstance(body, dict):
                raise errors.bad_request("the body of the request must be a JSON object")
            replicas = (body.get("spec") or {}).get("replicas", 0)
            wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        elif request.method == "PATCH":
            content_type = request.headers.get("Content-Type", "").split(";")[0].strip()
            current = self.scale_of(self.registry.get(STATEFULSETS, namespace, name))
            flavour = PATCH_TYPES.get(content_type)
            if flavour is None:
                raise errors.unsupported_media_type(content_type)
            patch = json.loads(raw or b"null")
            try:
                patched = {"merge": merge_patch, "strategic": strategic_merge_patch, "json": json_patch}[flavour](
                    current, patch
                )
            except PatchError as exc:
                raise ApiError(422, "Invalid", str(exc)) from exc
            replicas = (patched.get("spec") or {}).get("replicas", 0)
            wanted_rv = (patched.get("metadata") or {}).get("resourceVersion")
            if wanted_rv == current["metadata"]["resourceVersion"]:
                wanted_rv = None
        else:
            raise errors.method_not_allowed()

        def set_replicas(sts: JSON) -> None:
            if wanted_rv:
                sts["metadata"]["resourceVersion"] = wanted_rv
            sts["spec"]["replicas"] = replicas

        updated = self.registry.mutate(STATEFULSETS, namespace, name, set_replicas)
        return _json(self.scale_of(updated))

    @staticmethod
    def scale_of(sts: JSON) -> JSON:
        meta = sts["metadata"]
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": sts["spec"].get("replicas", 0)},
            "status": {
                "replicas": (sts.get("status") or {}).get("replicas", 0),
                "selector": label_selector_string(sts["spec"].get("selector")),
            },
        }


def make_app(double: KubeApiDouble) -> web.Application:
    handlers = Handlers(double)
    # Watches stream for minutes; keep aiohttp from buffering huge bodies.
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handlers.handle)
    return app


__all__ = ["Handlers", "InjectedFault", "RecordedRequest", "make_app"]
