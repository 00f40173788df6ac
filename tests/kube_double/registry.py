"""Write semantics of the apiserver's generic registry, per resource type.

This is where create/update/patch/delete behave like the real thing:
server-populated metadata, ``status`` isolated behind its subresource,
optimistic concurrency on ``resourceVersion``, no-op writes that do not bump
the resource version, finalizers, and graceful pod deletion.  Both the HTTP
handlers and the test helpers go through here so that a helper-made change
looks, to a watching client, exactly like one made over the API.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors
from .clock import TestClock, parse_time, rfc3339
from .errors import ApiError
from .patches import PatchError, json_patch, merge_patch, strategic_merge_patch
from .resources import (
    ALL_RESOURCES,
    EVENTS_V1,
    NAMESPACES,
    PODS,
    ResourceType,
    check_name,
    event_core_to_v1,
    event_v1_to_core,
)
from .store import Store

JSON = dict[str, Any]

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
}

# What the apiserver uses for generateName suffixes (no vowels, no look-alikes).
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Metadata only the server writes; updates cannot change them.
_SERVER_METADATA = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation")


@dataclass
class DeleteOptions:
    grace_period_seconds: int | None = None
    precondition_uid: str | None = None
    precondition_rv: str | None = None
    dry_run: bool = False

    @classmethod
    def parse(cls, body: Any, query: dict[str, str]) -> DeleteOptions:
        options = cls()
        if isinstance(body, dict):
            if body.get("gracePeriodSeconds") is not None:
                options.grace_period_seconds = int(body["gracePeriodSeconds"])
            pre = body.get("preconditions") or {}
            options.precondition_uid = pre.get("uid")
            options.precondition_rv = pre.get("resourceVersion")
            options.dry_run = bool(body.get("dryRun"))
        if query.get("gracePeriodSeconds"):
            try:
                options.grace_period_seconds = int(query["gracePeriodSeconds"])
            except ValueError as exc:
                raise errors.bad_request(f"gracePeriodSeconds: invalid value {query['gracePeriodSeconds']!r}") from exc
        if query.get("dryRun"):
            options.dry_run = True
        return options


def _comparable(obj: JSON) -> JSON:
    """The object without the fields a write bumps anyway."""
    clone = copy.deepcopy(obj)
    clone.get("metadata", {}).pop("resourceVersion", None)
    return clone


class Registry:
    """CRUD on the store with the apiserver's per-type rules."""

    def __init__(self, store: Store, clock: TestClock) -> None:
        self.store = store
        self.clock = clock

    # -- views: events.k8s.io/v1 shares the core/v1 event storage ----------

    @staticmethod
    def to_view(resource: ResourceType, obj: JSON) -> JSON:
        obj = copy.deepcopy(obj)
        obj["kind"] = resource.kind
        obj["apiVersion"] = resource.api_version
        if resource is EVENTS_V1:
            return event_core_to_v1(obj)
        return obj

    @staticmethod
    def from_view(resource: ResourceType, obj: JSON) -> JSON:
        if resource is EVENTS_V1:
            return event_v1_to_core(obj)
        return obj

    # -- reads ---------------------------------------------------------------

    def get(self, resource: ResourceType, namespace: str, name: str) -> JSON:
        obj = self.store.get(resource.key, namespace, name)
        if obj is None:
            raise errors.not_found(resource.plural, resource.group, name)
        return self.to_view(resource, obj)

    def list_objects(self, resource: ResourceType, namespace: str | None, at_rv: int | None = None) -> list[JSON]:
        """Current objects, or the objects as they were at ``at_rv``."""
        if at_rv is None:
            objects = self.store.list_objects(resource.key, namespace)
        else:
            objects = self._snapshot(resource, namespace, at_rv)
        return [self.to_view(resource, obj) for obj in objects]

    def list_page(
        self,
        resource: ResourceType,
        namespace: str | None,
        at_rv: int | None,
        matches: Callable[[JSON], bool],
        after: tuple[str, str] | None,
        limit: int,
    ) -> tuple[list[JSON], int]:
        """One page of a list: the objects ``matches`` keeps after ``after``, at most ``limit``
        (0: all), and how many more match. Only the page is copied, so a page of a large
        collection costs the page, as on a real API server."""
        if resource is EVENTS_V1:
            # Selectors apply to the served form, which differs from the stored one.
            objects = [o for o in self.list_objects(resource, namespace, at_rv) if matches(o)]
            views = False
        else:
            objects = (
                self.store.peek_objects(resource.key, namespace)
                if at_rv is None
                else self._snapshot(resource, namespace, at_rv, copy_all=False)
            )
            objects = [o for o in objects if matches(o)]
            views = True
        if after is not None:
            objects = [o for o in objects if (o["metadata"].get("namespace", ""), o["metadata"]["name"]) > after]
        remaining = 0
        if limit > 0 and len(objects) > limit:
            remaining = len(objects) - limit
            objects = objects[:limit]
        return ([self.to_view(resource, o) for o in objects] if views else objects), remaining

    def _snapshot(self, resource: ResourceType, namespace: str | None, rv: int, copy_all: bool = True) -> list[JSON]:
        # Undo, newest first, every change made after rv: this is what etcd
        # does when asked for a range at an old revision.
        changes = self.store.changes_after(rv)
        if changes is None:
            raise errors.gone(f"too old resource version: {rv} ({self.store.oldest_resumable})")
        current = (
            self.store.list_objects(resource.key, None) if copy_all else self.store.peek_objects(resource.key, None)
        )
        state = {(o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in current}
        for change in reversed(changes):
            if change.resource_key != resource.key:
                continue
            key = (change.obj["metadata"].get("namespace", ""), change.obj["metadata"]["name"])
            if change.type == "ADDED":
                state.pop(key, None)
            else:
                assert change.prev is not None
                state[key] = copy.deepcopy(change.prev) if copy_all else change.prev
        return [state[k] for k in sorted(state) if namespace is None or k[0] == namespace]

    # -- create ----------------------------------------------------------------

    def create(self, resource: ResourceType, namespace: str | None, body: Any, dry_run: bool = False) -> JSON:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        self._check_kind(resource, body)
        obj = self.from_view(resource, copy.deepcopy(body))
        meta = obj.get("metadata")
        if meta is None:
            meta = obj["metadata"] = {}
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        if resource.namespaced:
            assert namespace is not None
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = namespace
            if self.store.get(NAMESPACES.key, "", namespace) is None:
                raise errors.not_found("namespaces", "", namespace)
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_ALPHABET, k=5))
        name = meta.get("name") or ""
        causes = check_name(resource, name)
        if causes:
            raise errors.invalid(resource.kind, resource.group, name, causes)
        if meta.get("resourceVersion"):
            # etcd3 storage refuses this; the apiserver answers 500.
            raise errors.internal("resourceVersion should not be set on objects to be created")
        if self.store.get(resource.key, namespace or "", name) is not None:
            raise errors.already_exists(resource.plural, resource.group, name)

        obj["kind"], obj["apiVersion"] = resource.kind, resource.api_version
        if resource is EVENTS_V1:
            obj["kind"], obj["apiVersion"] = "Event", "v1"
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = rfc3339(self.clock.now())
        for server_only in ("deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
            meta.pop(server_only, None)
        if resource.tracks_generation:
            meta["generation"] = 1
        if resource.has_status:
            obj["status"] = self._initial_status(resource)
        resource.set_defaults(obj)
        causes = resource.validate(obj, None)
        if causes:
            raise errors.invalid(resource.kind, resource.group, name, causes)
        if dry_run:
            return self.to_view(resource, obj)
        return self.to_view(resource, self.store.create(resource.key, obj))

    @staticmethod
    def _initial_status(resource: ResourceType) -> JSON:
        # PrepareForCreate in the real strategies drops client-sent status.
        if resource is PODS:
            return {"phase": "Pending", "qosClass": "BestEffort"}
        if resource.kind == "StatefulSet":
            return {"replicas": 0, "availableReplicas": 0}
        return {}

    @staticmethod
    def _check_kind(resource: ResourceType, body: JSON) -> None:
        kind = body.get("kind")
        if kind and kind != resource.kind:
            raise errors.bad_request(f"the object provided is unrecognized (must be of type {resource.kind}): {kind}")

    # -- update and patch -------------------------------------------------------

    def update(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        """PUT: replace the object; a non-empty resourceVersion must be current."""
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        self._check_kind(resource, body)
        new = self.from_view(resource, copy.deepcopy(body))
        meta = new.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise errors.bad_request(
                f"the name of the object ({meta['name']}) does not match the name on the URL ({name})"
            )
        if resource.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        return self._write(resource, namespace, name, lambda old: new, subresource, dry_run)

    def patch(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        raw: bytes,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        flavour = PATCH_TYPES.get(content_type)
        if flavour is None:
            raise errors.unsupported_media_type(content_type)
        try:
            patch = json.loads(raw or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding patch: {exc}") from exc
        if flavour != "json" and not isinstance(patch, dict):
            raise errors.bad_request("the patch must be a JSON object")

        def apply(old: JSON) -> JSON:
            view = self.to_view(resource, old)
            try:
                if flavour == "merge":
                    patched = merge_patch(view, patch)
                elif flavour == "strategic":
                    patched = strategic_merge_patch(view, patch)
                else:
                    patched = json_patch(view, patch)
            except PatchError as exc:
                raise ApiError(422, "Invalid", str(exc)) from exc
            if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
                raise errors.bad_request("the patched object is not a valid object")
            if patched["metadata"].get("name") != name:
                raise errors.bad_request(
                    f"the name of the object ({patched['metadata'].get('name')}) does not match the name on the URL ({name})"
                )
            # A patch may carry a resourceVersion as a precondition; one it
            # does not mention must not make the write conditional.
            if not _mentions_rv(patch, flavour):
                patched["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return self.from_view(resource, patched)

        return self._write(resource, namespace, name, apply, subresource, dry_run)

    def mutate(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        change: Callable[[JSON], None],
        subresource: str | None = None,
    ) -> JSON:
        """Helper-side write: edit a copy of the current object in place."""

        def apply(old: JSON) -> JSON:
            new = copy.deepcopy(old)
            change(new)
            return new

        return self._write(resource, namespace, name, apply, subresource, False)

    def _write(
        self,
        resource: ResourceType,
        namespace: str,
        name: str,
        make_new: Callable[[JSON], JSON],
        subresource: str | None,
        dry_run: bool,
    ) -> JSON:
        old = self.store.get(resource.key, namespace, name)
        if old is None:
            raise errors.not_found(resource.plural, resource.group, name)
        new = make_new(copy.deepcopy(old))
        meta = new.setdefault("metadata", {})
        wanted_rv = meta.get("resourceVersion")
        if wanted_rv and wanted_rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.plural, resource.group, name)
        if meta.get("uid") and meta["uid"] != old["metadata"]["uid"]:
            raise errors.conflict(
                resource.plural,
                resource.group,
                name,
                f"Precondition failed: UID in precondition: {meta['uid']}, UID in object meta: {old['metadata']['uid']}",
            )

        if subresource == "status":
            # Status writes change status only.
            merged = copy.deepcopy(old)
            merged["status"] = new.get("status") or {}
            new = merged
        else:
            meta["name"] = name
            if resource.namespaced:
                meta["namespace"] = namespace
            for field in _SERVER_METADATA:
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
                else:
                    meta.pop(field, None)
            if resource.has_status:
                # Writes to the main resource cannot change status.
                new["status"] = copy.deepcopy(old.get("status") or {})
            new["kind"], new["apiVersion"] = old["kind"], old["apiVersion"]
            if resource.tracks_generation and new.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        resource.set_defaults(new)
        if resource is NAMESPACES:
            new["status"] = copy.deepcopy(old.get("status") or {"phase": "Active"})
        causes = resource.validate(new, old)
        if causes:
            raise errors.invalid(resource.kind, resource.group, name, causes)
        if _comparable(new) == _comparable(old):
            # The apiserver skips no-op writes: no new resourceVersion, no event.
            return self.to_view(resource, old)
        if dry_run:
            return self.to_view(resource, new)
        if self._ready_to_vanish(new):
            return self.to_view(resource, self.store.delete(resource.key, new))
        return self.to_view(resource, self.store.update(resource.key, new, old))

    @staticmethod
    def _ready_to_vanish(obj: JSON) -> bool:
        """A terminating object whose grace is over and whose finalizers are gone."""
        meta = obj["metadata"]
        return (
            bool(meta.get("deletionTimestamp"))
            and not meta.get("finalizers")
            and meta.get("deletionGracePeriodSeconds", 0) == 0
        )

    # -- delete ------------------------------------------------------------------

    def delete(self, resource: ResourceType, namespace: str, name: str, options: DeleteOptions) -> JSON:
        old = self.store.get(resource.key, namespace, name)
        if old is None:
            raise errors.not_found(resource.plural, resource.group, name)
        meta = old["metadata"]
        if options.precondition_uid and options.precondition_uid != meta["uid"]:
            raise errors.conflict(
                resource.plural,
                resource.group,
                name,
                f"Precondition failed: UID in precondition: {options.precondition_uid}, UID in object meta: {meta['uid']}",
            )
        if options.precondition_rv and options.precondition_rv != meta["resourceVersion"]:
            raise errors.conflict(
                resource.plural,
                resource.group,
                name,
                f"Precondition failed: ResourceVersion in precondition: {options.precondition_rv}, "
                f"ResourceVersion in object meta: {meta['resourceVersion']}",
            )
        if resource is NAMESPACES and not options.dry_run:
            self._empty_namespace(name)

        grace = self._grace_period(resource, old, options)
        current_grace = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and current_grace is not None and grace >= current_grace:
            # Already terminating at least this fast: nothing changes.
            return self._deleted_answer(resource, old)
        if grace > 0 or meta.get("finalizers"):
            new = copy.deepcopy(old)
            now = self.clock.now()
            new["metadata"]["deletionTimestamp"] = rfc3339(now + dt.timedelta(seconds=grace))
            new["metadata"]["deletionGracePeriodSeconds"] = grace
            if options.dry_run:
                return self.to_view(resource, new)
            # Terminating objects answer with their new state, not a Status.
            return self.to_view(resource, self.store.update(resource.key, new, old))
        if options.dry_run:
            return self._deleted_answer(resource, old)
        return self._deleted_answer(resource, self.store.delete(resource.key, old))

    def _deleted_answer(self, resource: ResourceType, obj: JSON) -> JSON:
        if resource.return_deleted_object or obj["metadata"].get("deletionTimestamp"):
            return self.to_view(resource, obj)
        return errors.success_status(obj["metadata"]["name"], resource.plural, resource.group, obj["metadata"]["uid"])

    @staticmethod
    def _grace_period(resource: ResourceType, obj: JSON, options: DeleteOptions) -> int:
        if resource is not PODS:
            return 0
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        # Pods no kubelet owns, or that already stopped, go at once (as in the
        # real pod strategy's CheckGracefulDelete).
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if options.grace_period_seconds is not None:
            return max(options.grace_period_seconds, 0)
        value = spec.get("terminationGracePeriodSeconds")
        return int(value) if value is not None else 30

    def _empty_namespace(self, namespace: str) -> None:
        # The namespace controller's job, done synchronously.
        seen: set[str] = set()
        for resource in ALL_RESOURCES:
            if not resource.namespaced or resource.key in seen:
                continue
            seen.add(resource.key)
            for obj in self.store.list_objects(resource.key, namespace):
                self.store.delete(resource.key, obj)

    # -- graceful deletion completion (the kubelet's part) ----------------------

    def finish_pod_deletions(self, due_only: bool, namespace: str | None = None, name: str | None = None) -> int:
        """Remove terminating pods, as a kubelet does once containers stopped.

        ``due_only`` limits this to pods whose grace period is over by the
        test clock.  Pods that still carry finalizers stay, with a zero grace
        period, until a write removes the last finalizer.
        """
        now = self.clock.now()
        removed = 0
        for pod in self.store.list_objects(PODS.key, namespace):
            meta = pod["metadata"]
            if name is not None and meta["name"] != name:
                continue
            stamp = meta.get("deletionTimestamp")
            if not stamp:
                continue
            if due_only and parse_time(stamp) > now:
                continue
            if meta.get("finalizers"):
                if meta.get("deletionGracePeriodSeconds") != 0:
                    new = copy.deepcopy(pod)
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    self.store.update(PODS.key, new, pod)
                continue
            self.store.delete(PODS.key, pod)
            removed += 1
        return removed


def _mentions_rv(patch: Any, flavour: str) -> bool:
    if flavour == "json":
        return any(
            isinstance(op, dict)
            and op.get("path") == "/metadata/resourceVersion"
            and op.get("op") in ("add", "replace")
            for op in patch
        )
    return isinstance(patch.get("metadata"), dict) and bool(patch["metadata"].get("resourceVersion"))
