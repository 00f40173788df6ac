"""Placement rules: which pods, namespaces, nodes and clusters a subnet (or pool) serves. Pure, no I/O.

A subnet or pool may carry any of these rules; each one it carries must admit the pod:

- ``namespaces``: Kube-OVN's Subnet field. A list of namespace names; the subnet serves only
  pods of those namespaces. An empty or absent list binds nothing and serves any namespace.
- ``nodeNames``: the nodes whose pods it serves (one site, rack or VLAN of a macvlan NAD).
- ``clusters``: the clusters (``--cluster-name``) whose daemons may allocate from it, when
  several clusters share one database (a staging cluster's own range on a shared segment).
- ``namespaceSelector``, ``nodeSelector``, ``podSelector``: Kubernetes label selectors
  (``matchLabels`` and ``matchExpressions`` with ``In``, ``NotIn``, ``Exists``,
  ``DoesNotExist``) matched against the labels of the pod's namespace, node and pod. As in
  Kubernetes an empty selector ``{}`` matches everything, and ``NotIn`` matches an object
  without the key.

A rule that needs a fact the request does not carry (no node named, no namespace, labels
nobody could read) refuses: a subnet bound to a site must never serve a pod of unknown place.

``refusal`` returns why one rule set refuses a pod, as text naming the rule; ``Admission``
splits candidates, kept in the order given (priority order), into admitted and refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ipamd.core import identity
from ipamd.errors import InvalidInput

RULE_FIELDS = ("namespaces", "namespaceSelector", "nodeSelector", "podSelector", "nodeNames", "clusters")
SELECTOR_FIELDS = frozenset({"matchLabels", "matchExpressions"})
EXPRESSION_FIELDS = frozenset({"key", "operator", "values"})
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")

# Kubernetes' qualified name (label key): an optional DNS-subdomain prefix and '/', then a
# name of at most 63 characters; a label value is such a name or empty. Matched whole
# (fullmatch): a '$' would let a trailing newline through.
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}")
LABEL_VALUE = re.compile(rf"({_NAME})?")

Labels = Mapping[str, str]


@dataclass(frozen=True)
class Requirement:
    """One ``matchExpressions`` entry (``matchLabels`` entries become ``In`` with one value)."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Labels) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        return self.key not in labels

    @property
    def text(self) -> str:
        if self.operator == "Exists":
            return self.key
        if self.operator == "DoesNotExist":
            return f"!{self.key}"
        if self.operator == "In" and len(self.values) == 1:
            return f"{self.key}={self.values[0]}"
        word = "in" if self.operator == "In" else "notin"
        return f"{self.key} {word} ({','.join(self.values)})"


@dataclass(frozen=True)
class LabelSelector:
    """A Kubernetes label selector: every requirement must hold."""

    match_labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[Requirement, ...] = ()

    @property
    def requirements(self) -> tuple[Requirement, ...]:
        return (*(Requirement(key, "In", (value,)) for key, value in self.match_labels), *self.expressions)

    def matches(self, labels: Labels) -> bool:
        return all(requirement.matches(labels) for requirement in self.requirements)

    def failing(self, labels: Labels) -> list[Requirement]:
        """Returns the requirements ``labels`` do not meet."""
        return [requirement for requirement in self.requirements if not requirement.matches(labels)]

    @property
    def text(self) -> str:
        """The selector as ``kubectl -l`` writes it."""
        return ",".join(requirement.text for requirement in self.requirements) or "everything"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if self.match_labels:
            body["matchLabels"] = dict(self.match_labels)
        if self.expressions:
            body["matchExpressions"] = [
                {"key": e.key, "operator": e.operator, **({"values": list(e.values)} if e.values else {})}
                for e in self.expressions
            ]
        return body


@dataclass(frozen=True)
class Subject:
    """What the rules look at: where the pod is and what it is. None: not known."""

    namespace: str = ""
    node: str | None = None
    pod_labels: Labels | None = None
    namespace_labels: Labels | None = None
    node_labels: Labels | None = None
    cluster: str | None = None

    @property
    def label(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "no namespace"
        return f"{where}, node {self.node}" if self.node else f"{where}, no node"


@dataclass(frozen=True)
class Placement:
    """The rules of one subnet or pool; a field left out (None) binds nothing."""

    namespaces: tuple[str, ...] = ()
    node_names: tuple[str, ...] = ()
    namespace_selector: LabelSelector | None = None
    node_selector: LabelSelector | None = None
    pod_selector: LabelSelector | None = None
    clusters: tuple[str, ...] = ()

    @property
    def binds(self) -> bool:
        """True when some rule restricts who is served."""
        return bool(self.namespaces or self.node_names or self.clusters) or any(
            selector is not None for selector in (self.namespace_selector, self.node_selector, self.pod_selector)
        )

    @property
    def needs_labels(self) -> frozenset[str]:
        """Which objects' labels the rules read: a subset of {"pod", "namespace", "node"}."""
        needed = {"pod": self.pod_selector, "namespace": self.namespace_selector, "node": self.node_selector}
        return frozenset(kind for kind, selector in needed.items() if selector is not None)

    def to_json(self) -> dict[str, Any]:
        """The rules in the API's form; only the ones set, so a spec without rules reads as before."""
        body: dict[str, Any] = {}
        if self.namespaces:
            body["namespaces"] = list(self.namespaces)
        if self.node_names:
            body["nodeNames"] = list(self.node_names)
        if self.clusters:
            body["clusters"] = list(self.clusters)
        for key, selector in (
            ("namespaceSelector", self.namespace_selector),
            ("nodeSelector", self.node_selector),
            ("podSelector", self.pod_selector),
        ):
            if selector is not None:
                body[key] = selector.to_json()
        return body


NO_RULES = Placement()


def refusal(placement: Placement, subject: Subject) -> str | None:
    """Returns why ``placement`` refuses ``subject`` (the first rule that does), or None when it admits it."""
    if placement.clusters and subject.cluster not in placement.clusters:
        held = subject.cluster or "unknown"
        return f"clusters [{', '.join(placement.clusters)}] does not include cluster {held}"
    if placement.namespaces and subject.namespace not in placement.namespaces:
        held = subject.namespace or "none"
        return f"namespaces [{', '.join(placement.namespaces)}] does not include namespace {held}"
    if placement.node_names and subject.node not in placement.node_names:
        return f"nodeNames [{', '.join(placement.node_names)}] does not include node {subject.node or 'unknown'}"
    for kind, selector, labels in (
        ("namespace", placement.namespace_selector, subject.namespace_labels),
        ("node", placement.node_selector, subject.node_labels),
        ("pod", placement.pod_selector, subject.pod_labels),
    ):
        if selector is None:
            continue
        if labels is None:
            return f"{kind}Selector {selector.text} cannot be checked: the {kind}'s labels are unknown"
        failing = selector.failing(labels)
        if failing:
            return f"{kind}Selector {selector.text} does not match ({', '.join(r.text for r in failing)} not met by the {kind}'s labels)"
    return None


T = TypeVar("T")


@dataclass(frozen=True)
class Admission(Generic[T]):
    """Candidates split by their rules, each list in the order the candidates came."""

    admitted: tuple[T, ...]
    refused: tuple[tuple[T, str], ...]


def admit(candidates: Iterable[tuple[T, Placement]], subject: Subject) -> Admission[T]:
    """Returns the candidates whose rules admit ``subject`` and, with the reason, those refusing it."""
    admitted: list[T] = []
    refused: list[tuple[T, str]] = []
    for candidate, placement in candidates:
        reason = refusal(placement, subject)
        if reason is None:
            admitted.append(candidate)
        else:
            refused.append((candidate, reason))
    return Admission(tuple(admitted), tuple(refused))


def refusals_text(refused: Sequence[tuple[str, str]], *, kind: str = "subnet", limit: int = 5) -> str:
    """Returns ``subnet a: <why>; subnet b: <why>`` for the first ``limit``, and how many more."""
    shown = "; ".join(f"{kind} {name}: {reason}" for name, reason in refused[:limit])
    more = len(refused) - limit
    return f"{shown}; and {more} more" if more > 0 else shown


# ----------------------------------------------------------------- parsing


def parse_placement(raw: Mapping[str, Any], *, prefix: str = "") -> Placement:
    """Returns the rules among the fields of a subnet or pool spec (other fields are ignored)."""
    selectors = {
        key: parse_selector(raw[key], field=f"{prefix}{key}") if raw.get(key) is not None else None
        for key in ("namespaceSelector", "nodeSelector", "podSelector")
    }
    return Placement(
        namespaces=_names(raw.get("namespaces"), identity.namespace, field=f"{prefix}namespaces"),
        node_names=_names(raw.get("nodeNames"), identity.node, field=f"{prefix}nodeNames"),
        namespace_selector=selectors["namespaceSelector"],
        node_selector=selectors["nodeSelector"],
        pod_selector=selectors["podSelector"],
        clusters=_names(raw.get("clusters"), identity.cluster_name, field=f"{prefix}clusters"),
    )


def _names(raw: object, check: Callable[..., str], *, field: str) -> tuple[str, ...]:
    """The listed names, each checked by its identity rule (the one a request's own names meet)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidInput("expected a list of names", field=field)
    return tuple(dict.fromkeys(check(item, field=f"{field}[{index}]") for index, item in enumerate(raw)))


def parse_selector(raw: object, *, field: str) -> LabelSelector:
    """Returns the label selector written as Kubernetes writes one."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected a label selector {matchLabels, matchExpressions}", field=field)
    unknown = sorted(set(raw) - SELECTOR_FIELDS)
    if unknown:
        raise InvalidInput(
            "unknown field; known fields are matchExpressions, matchLabels", field=f"{field}.{unknown[0]}"
        )
    # Absent or null is empty; any other non-object is refused, not read as empty: an empty
    # selector matches everything, so '"matchLabels": ""' must not silently become one.
    labels = _or_empty(raw, "matchLabels", {})
    if not isinstance(labels, Mapping):
        raise InvalidInput("expected an object of label key: value", field=f"{field}.matchLabels")
    match_labels = []
    for key, value in sorted(labels.items()):
        _check_key(key, field=f"{field}.matchLabels")
        _check_value(value, field=f"{field}.matchLabels.{key}")
        match_labels.append((key, value))
    expressions_raw = _or_empty(raw, "matchExpressions", [])
    if not isinstance(expressions_raw, list):
        raise InvalidInput("expected a list of {key, operator, values}", field=f"{field}.matchExpressions")
    expressions = [
        _requirement(item, field=f"{field}.matchExpressions[{index}]") for index, item in enumerate(expressions_raw)
    ]
    return LabelSelector(tuple(match_labels), tuple(expressions))


def _requirement(raw: object, *, field: str) -> Requirement:
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected {key, operator, values}", field=field)
    unknown = sorted(set(raw) - EXPRESSION_FIELDS)
    if unknown:
        raise InvalidInput("unknown field; known fields are key, operator, values", field=f"{field}.{unknown[0]}")
    key = raw.get("key")
    _check_key(key, field=f"{field}.key")
    assert isinstance(key, str)
    operator = raw.get("operator")
    if operator not in OPERATORS:
        raise InvalidInput(
            f"{operator!r} is not an operator; use one of {', '.join(OPERATORS)}", field=f"{field}.operator"
        )
    values = _or_empty(raw, "values", [])
    if not isinstance(values, list):
        raise InvalidInput("expected a list of label values", field=f"{field}.values")
    for index, value in enumerate(values):
        _check_value(value, field=f"{field}.values[{index}]")
    if operator in ("In", "NotIn") and not values:
        raise InvalidInput(f"operator {operator} needs at least one value", field=f"{field}.values")
    if operator in ("Exists", "DoesNotExist") and values:
        raise InvalidInput(f"operator {operator} takes no values", field=f"{field}.values")
    return Requirement(key, str(operator), tuple(dict.fromkeys(values)))


def _or_empty(raw: Mapping[str, Any], key: str, empty: object) -> Any:
    value = raw.get(key)
    return empty if value is None else value


def _check_key(key: object, *, field: str) -> None:
    if not isinstance(key, str) or not LABEL_KEY.fullmatch(key):
        raise InvalidInput(
            f"{key!r} is not a label key (an optional DNS prefix and '/', then at most 63 characters)", field=field
        )


def _check_value(value: object, *, field: str) -> None:
    if not isinstance(value, str) or not LABEL_VALUE.fullmatch(value):
        raise InvalidInput(f"{value!r} is not a label value (at most 63 letters, digits, '-', '_', '.')", field=field)


def parse_labels(raw: object, *, field: str) -> dict[str, str]:
    """Returns a label map given in a request (REST allocations outside Kubernetes)."""
    if not isinstance(raw, Mapping):
        raise InvalidInput("expected an object of label key: value", field=field)
    for key, value in raw.items():
        _check_key(key, field=field)
        _check_value(value, field=f"{field}.{key}")
    return dict(raw)
