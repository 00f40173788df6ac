"""The three PATCH flavours the apiserver accepts for built-in types.

* JSON merge patch (RFC 7386): maps merge recursively, ``null`` deletes a
  key, anything else (lists included) replaces.
* Strategic merge patch: like a merge patch, except that a few well-known
  lists are merged by key (containers by ``name``, conditions by ``type``,
  ...) and ``metadata.finalizers`` merges as a set.  The ``$patch``,
  ``$retainKeys``, ``$setElementOrder`` and ``$deleteFromPrimitiveList``
  directives are understood in their common forms.
* JSON patch (RFC 6902): ``add``, ``remove``, ``replace``, ``move``,
  ``copy`` and ``test`` with RFC 6901 pointers.

Each function works on deep copies and returns the patched document; a
:class:`PatchError` becomes a 422 (or 400 for undecodable input) upstream.
"""

from __future__ import annotations

import copy
from typing import Any

JSON = dict[str, Any]


class PatchError(Exception):
    """The patch cannot be applied to the object."""


# ---------------------------------------------------------------------------
# RFC 7386 JSON merge patch


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# ---------------------------------------------------------------------------
# Strategic merge patch

# Lists that Kubernetes' Go struct tags mark with patchStrategy=merge, keyed
# by the path of field names leading to them (list indices left out).
_MERGE_KEYS: dict[tuple[str, ...], str] = {
    ("spec", "containers"): "name",
    ("spec", "initContainers"): "name",
    ("spec", "ephemeralContainers"): "name",
    ("spec", "volumes"): "name",
    ("spec", "tolerations"): "key",
    ("spec", "imagePullSecrets"): "name",
    ("spec", "containers", "env"): "name",
    ("spec", "containers", "ports"): "containerPort",
    ("spec", "containers", "volumeMounts"): "mountPath",
    ("status", "conditions"): "type",
    ("status", "containerStatuses"): "name",
    ("status", "podIPs"): "ip",
    ("metadata", "ownerReferences"): "uid",
    ("spec", "template", "spec", "containers"): "name",
    ("spec", "template", "spec", "initContainers"): "name",
    ("spec", "template", "spec", "volumes"): "name",
    ("spec", "template", "spec", "containers", "env"): "name",
}
# Lists of scalars merged as sets (patchStrategy=merge on a []string).
_PRIMITIVE_MERGE: set[tuple[str, ...]] = {("metadata", "finalizers")}


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    return _smp(target, patch, ())


def _smp(target: Any, patch: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "delete":
        return None
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$patch", "$retainKeys"):
            # Ordering hints and retain lists do not change membership, which
            # is all the double's clients look at.
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            current = result.get(field)
            if isinstance(current, list):
                result[field] = [item for item in current if item not in (value or [])]
            continue
        child = path + (key,)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and child in _MERGE_KEYS:
            result[key] = _merge_keyed_list(result.get(key), value, child, _MERGE_KEYS[child])
        elif isinstance(value, list) and child in _PRIMITIVE_MERGE:
            current = list(result.get(key) or [])
            result[key] = current + [item for item in value if item not in current]
        else:
            result[key] = _smp(result.get(key), value, child)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_keyed_list(current: Any, patch: list[Any], path: tuple[str, ...], key: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(item) for item in patch if not (isinstance(item, dict) and "$patch" in item)]
    merged = [copy.deepcopy(item) for item in (current or [])]
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {key}")
        index = next(
            (i for i, existing in enumerate(merged) if isinstance(existing, dict) and existing.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del merged[index]
            continue
        if index is None:
            merged.append(_smp({}, item, path))
        else:
            merged[index] = _smp(merged[index], item, path)
    return merged


# ---------------------------------------------------------------------------
# RFC 6902 JSON patch


def _parse_pointer(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer {pointer!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer[1:].split("/")]


def _resolve(doc: Any, parts: list[str], pointer: str) -> Any:
    node = doc
    for part in parts:
        if isinstance(node, dict):
            if part not in node:
                raise PatchError(f"doc is missing path: {pointer!r}")
            node = node[part]
        elif isinstance(node, list):
            node = node[_index(node, part, pointer, allow_end=False)]
        else:
            raise PatchError(f"doc is missing path: {pointer!r}")
    return node


def _index(node: list[Any], part: str, pointer: str, allow_end: bool) -> int:
    if allow_end and part == "-":
        return len(node)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise PatchError(f"invalid array index {part!r} in {pointer!r}")
    index = int(part)
    limit = len(node) + (1 if allow_end else 0)
    if index >= limit:
        raise PatchError(f"array index out of bounds: {pointer!r}")
    return index


def _add(doc: Any, pointer: str, value: Any) -> Any:
    parts = _parse_pointer(pointer)
    if not parts:
        return copy.deepcopy(value)
    parent = _resolve(doc, parts[:-1], pointer)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, pointer, allow_end=True), copy.deepcopy(value))
    else:
        raise PatchError(f"doc is missing path: {pointer!r}")
    return doc


def _remove(doc: Any, pointer: str) -> tuple[Any, Any]:
    parts = _parse_pointer(pointer)
    if not parts:
        raise PatchError("cannot remove the whole document")
    parent = _resolve(doc, parts[:-1], pointer)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"Unable to remove nonexistent key: {last}: missing value")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last, pointer, allow_end=False))
    raise PatchError(f"doc is missing path: {pointer!r}")


def json_patch(target: Any, operations: Any) -> Any:
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError(f"invalid JSON patch operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, op.get("value"))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            # RFC 6902: the target location must exist.
            _resolve(doc, _parse_pointer(path), path)
            doc, _ = _remove(doc, path) if _parse_pointer(path) else (doc, None)
            doc = _add(doc, path, op.get("value"))
        elif kind == "move":
            doc, value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            value = _resolve(doc, _parse_pointer(op["from"]), op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            actual = _resolve(doc, _parse_pointer(path), path)
            if actual != op.get("value"):
                raise PatchError(f"testing value {path} failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc
