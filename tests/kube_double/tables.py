"""Server-side printing: ``meta.k8s.io`` ``Table`` responses for kubectl.

``kubectl get`` (without ``-o json``/``-o yaml``) asks for
``application/json;as=Table;v=v1;g=meta.k8s.io`` and prints whatever
columns the server chose.  The columns here follow the apiserver's printers
for the resources the double serves, closely enough that ``kubectl get``
output looks familiar; exact widths and rarely used columns are not a goal.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from .clock import parse_time

JSON = dict[str, Any]
Column = tuple[str, str, str, int]  # (name, type, format, priority)
RowFn = Callable[[JSON, dt.datetime], list[Any]]


def human_duration(delta: dt.timedelta) -> str:
    """Approximates k8s.io/apimachinery/pkg/util/duration.HumanDuration."""
    seconds = int(delta.total_seconds())
    if seconds < 0:
        seconds = 0
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if hours < 192:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def _age(obj: JSON, now: dt.datetime) -> str:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return "<unknown>"
    return human_duration(now - parse_time(created))


def _pod_row(pod: JSON, now: dt.datetime) -> list[Any]:
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    container_statuses = status.get("containerStatuses") or []
    total = len(spec.get("containers") or [])
    ready = sum(1 for cs in container_statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount") or 0) for cs in container_statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in container_statuses:
        waiting = (cs.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    if pod["metadata"].get("deletionTimestamp") and status.get("reason") != "NodeLost":
        reason = "Terminating"
    gates = spec.get("readinessGates") or []
    return [
        pod["metadata"]["name"],
        f"{ready}/{total}",
        reason,
        restarts,
        _age(pod, now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        f"0/{len(gates)}" if gates else "<none>",
    ]


_POD_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Ready", "string", "", 0),
    ("Status", "string", "", 0),
    ("Restarts", "string", "", 0),
    ("Age", "string", "", 0),
    ("IP", "string", "", 1),
    ("Node", "string", "", 1),
    ("Nominated Node", "string", "", 1),
    ("Readiness Gates", "string", "", 1),
]


def _sts_row(sts: JSON, now: dt.datetime) -> list[Any]:
    spec, status = sts.get("spec") or {}, sts.get("status") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    return [
        sts["metadata"]["name"],
        f"{status.get('readyReplicas', 0)}/{spec.get('replicas', 0)}",
        _age(sts, now),
        ",".join(c.get("name", "") for c in containers),
        ",".join(c.get("image", "") for c in containers),
    ]


_STS_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Ready", "string", "", 0),
    ("Age", "string", "", 0),
    ("Containers", "string", "", 1),
    ("Images", "string", "", 1),
]


def _lease_row(lease: JSON, now: dt.datetime) -> list[Any]:
    holder = (lease.get("spec") or {}).get("holderIdentity") or ""
    return [lease["metadata"]["name"], holder, _age(lease, now)]


_LEASE_COLUMNS: list[Column] = [("Name", "string", "name", 0), ("Holder", "string", "", 0), ("Age", "string", "", 0)]


def _namespace_row(ns: JSON, now: dt.datetime) -> list[Any]:
    return [ns["metadata"]["name"], (ns.get("status") or {}).get("phase", ""), _age(ns, now)]


_NAMESPACE_COLUMNS: list[Column] = [
    ("Name", "string", "name", 0),
    ("Status", "string", "", 0),
    ("Age", "string", "", 0),
]


def _event_row(event: JSON, now: dt.datetime) -> list[Any]:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get("creationTimestamp")
    seen = human_duration(now - parse_time(last)) if last else "<unknown>"
    return [
        seen,
        event.get("type", ""),
        event.get("reason", ""),
        f"{(involved.get('kind') or '').lower()}/{involved.get('name', '')}",
        event.get("message") or event.get("note") or "",
    ]


_EVENT_COLUMNS: list[Column] = [
    ("Last Seen", "string", "", 0),
    ("Type", "string", "", 0),
    ("Reason", "string", "", 0),
    ("Object", "string", "", 0),
    ("Message", "string", "", 0),
]

_PRINTERS: dict[str, tuple[list[Column], RowFn]] = {
    "Pod": (_POD_COLUMNS, _pod_row),
    "StatefulSet": (_STS_COLUMNS, _sts_row),
    "Lease": (_LEASE_COLUMNS, _lease_row),
    "Namespace": (_NAMESPACE_COLUMNS, _namespace_row),
    "Event": (_EVENT_COLUMNS, _event_row),
}


def partial_metadata(obj: JSON, list_item: bool = False) -> JSON:
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def to_table(
    kind: str,
    objects: list[JSON],
    now: dt.datetime,
    list_meta: JSON,
    include_object: str,
    api_version: str = "meta.k8s.io/v1",
) -> JSON:
    columns, row_fn = _PRINTERS[kind]
    rows = []
    for obj in objects:
        row: JSON = {"cells": row_fn(obj, now)}
        if include_object == "Object":
            row["object"] = obj
        elif include_object != "None":
            row["object"] = partial_metadata(obj)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": api_version,
        "metadata": list_meta,
        "columnDefinitions": [
            {"name": name, "type": col_type, "format": fmt, "description": name, "priority": priority}
            for name, col_type, fmt, priority in columns
        ],
        "rows": rows,
    }
