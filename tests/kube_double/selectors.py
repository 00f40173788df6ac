"""Label and field selectors with the apiserver's matching semantics.

Label selectors support equality (``=``, ``==``, ``!=``), set-based
(``in``, ``notin``), existence (``key``, ``!key``) and the numeric ``<`` /
``>`` forms.  As in Kubernetes, ``!=`` and ``notin`` also match objects that
do not carry the key at all.

Field selectors support ``=``, ``==`` and ``!=`` on the fields a resource
declares; any other field is rejected with the apiserver's
``field label not supported`` error.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, bad_request

JSON = dict[str, Any]

# Kubernetes qualified names: optional DNS prefix, then a name of at most 63
# characters made of alphanumerics, '-', '_' and '.'.
_KEY_RE = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # one of: =, !=, in, notin, exists, !, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=" or self.op == "in":
            return present and value in self.values
        if self.op == "!=" or self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("gt", "lt"):
            if not present:
                return False
            try:
                number = int(value or "")
            except ValueError:
                return False
            bound = int(self.values[0])
            return number > bound if self.op == "gt" else number < bound
        raise AssertionError(self.op)


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(req.matches(labels) for req in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def _label_error(text: str, why: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {why} (selector {text!r})")


def _split_terms(text: str) -> list[str]:
    """Split on commas that are not inside an ``in (...)`` value list."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term.strip() for term in terms]


def _check_key(selector: str, key: str) -> str:
    if not _KEY_RE.match(key):
        raise _label_error(selector, f"invalid label key {key!r}")
    return key


def _check_value(selector: str, value: str) -> str:
    if not _VALUE_RE.match(value):
        raise _label_error(selector, f"invalid label value {value!r}")
    return value


_SET_RE = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse the ``labelSelector`` query parameter."""
    if text is None or not text.strip():
        return LabelSelector()
    requirements: list[Requirement] = []
    for term in _split_terms(text):
        if not term:
            raise _label_error(text, "found '', expected: identifier")
        set_match = _SET_RE.match(term)
        if set_match:
            key = _check_key(text, set_match["key"])
            values = tuple(_check_value(text, v.strip()) for v in set_match["values"].split(",") if v.strip())
            if not values and set_match["op"] == "in":
                raise _label_error(text, "for 'in', 'notin' operators, values set can't be empty")
            requirements.append(Requirement(key, set_match["op"], values))
            continue
        for symbol, op in (("!=", "!="), ("==", "="), ("=", "="), (">", "gt"), ("<", "lt")):
            if symbol in term:
                key, _, value = term.partition(symbol)
                key, value = key.strip(), value.strip()
                _check_key(text, key)
                if op in ("gt", "lt"):
                    if not re.fullmatch(r"-?\d+", value):
                        raise _label_error(text, f"for 'Gt', 'Lt' operators, the value must be an integer: {value!r}")
                else:
                    _check_value(text, value)
                requirements.append(Requirement(key, op, (value,)))
                break
        else:
            if term.startswith("!"):
                requirements.append(Requirement(_check_key(text, term[1:].strip()), "!"))
            else:
                requirements.append(Requirement(_check_key(text, term), "exists"))
    return LabelSelector(tuple(requirements))


def selector_from_label_selector_object(selector: JSON | None) -> LabelSelector:
    """Convert a ``metav1.LabelSelector`` (as used in StatefulSet specs)."""
    if not selector:
        return LabelSelector()
    requirements = [Requirement(k, "=", (v,)) for k, v in (selector.get("matchLabels") or {}).items()]
    op_names = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        requirements.append(Requirement(expr["key"], op_names[expr["operator"]], tuple(expr.get("values") or ())))
    return LabelSelector(tuple(requirements))


def label_selector_string(selector: JSON | None) -> str:
    """Render a ``metav1.LabelSelector`` the way the apiserver does in ``Scale.status.selector``."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        op = expr["operator"]
        if op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append("!" + expr["key"])
        else:
            parts.append(f"{expr['key']} {op.lower()} ({','.join(sorted(expr.get('values') or []))})")
    return ",".join(parts)


# ---------------------------------------------------------------------------
# Field selectors

FieldGetter = Callable[[JSON], str]


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()
    getters: Mapping[str, FieldGetter] | None = None

    def matches(self, obj: JSON) -> bool:
        for req in self.requirements:
            assert self.getters is not None
            actual = self.getters[req.field](obj)
            if (actual == req.value) != req.equal:
                return False
        return True

    @property
    def empty(self) -> bool:
        return not self.requirements


def _split_unescaped(text: str, sep: str) -> list[str]:
    r"""Split on ``sep`` unless it is escaped with a backslash (``\,``)."""
    parts: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append("\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_field_selector(text: str | None, getters: Mapping[str, FieldGetter]) -> FieldSelector:
    """Parse ``fieldSelector`` against the fields the resource supports."""
    if text is None or not text.strip():
        return FieldSelector(getters=getters)
    requirements: list[FieldRequirement] = []
    for term in _split_unescaped(text, ","):
        term = term.strip()
        if not term:
            continue
        for symbol, equal in (("!=", False), ("==", True), ("=", True)):  # noqa: B007 - read after the break
            index = _find_unescaped(term, symbol)
            if index >= 0:
                field = term[:index].strip()
                value = _unescape(term[index + len(symbol) :].strip())
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        if field not in getters:
            raise bad_request(f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, equal, value))
    return FieldSelector(tuple(requirements), getters)


def _find_unescaped(text: str, symbol: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(symbol, i):
            return i
        i += 1
    return -1


def dig(obj: JSON, path: str) -> str:
    """Follow a dotted path; missing values read as "" like the apiserver's field sets."""
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def getters_for(paths: list[str]) -> dict[str, FieldGetter]:
    return {path: functools.partial(_dig_path, path) for path in paths}


def _dig_path(path: str, obj: JSON) -> str:
    return dig(obj, path)
