"""Rendering API objects for people (aligned tables, usage bars) and for programs (JSON, YAML)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

BAR_WIDTH = 10
FORMATS = ("table", "json", "yaml")


def dump(data: Any, fmt: str) -> str:
    """Returns ``data`` as JSON or YAML text, exactly as the API answered it."""
    if fmt == "json":
        return json.dumps(data, indent=2)
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip("\n")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Returns rows under an upper-case header, columns separated by at least two spaces."""
    cells = [[str(cell) for cell in header]] + [
        ["-" if cell is None or cell == "" else str(cell) for cell in row] for row in rows
    ]
    widths = [max(len(row[column]) for row in cells) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def compact(count: int) -> str:
    """Returns a count short enough for a table cell: 254, 65534, 4.3G, 18.4E."""
    if count < 100_000:
        return str(count)
    value = float(count)
    for suffix in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
        value /= 1000
        if value < 1000:
            return f"{value:.1f}{suffix}"
    return f"{count:.2e}"


def usage_cell(used: int, available: int) -> str:
    """Returns ``used/capacity [####------] 40%`` where capacity is used plus still available.

    The percentage answers "how close is this to exhaustion": at 100% dynamic allocation
    has nothing left to hand out.
    """
    capacity = used + available
    if capacity == 0:
        return "0/0 [" + "#" * BAR_WIDTH + "] 100%"
    share = used / capacity
    filled = int(share * BAR_WIDTH + 0.5)
    percent = int(share * 100 + 0.5)
    if available:
        # Full bar and 100% only when nothing is left: rounding must not claim exhaustion.
        filled, percent = min(filled, BAR_WIDTH - 1), min(percent, 99)
    label = "<1%" if used and percent == 0 else f"{percent}%"
    return f"{compact(used)}/{compact(capacity)} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {label}"


def family_usage(subnet: Mapping[str, Any], family: str) -> str:
    usage = subnet.get("usage", {}).get(family)
    if usage is None:
        return "-"
    return usage_cell(int(usage["used"]), int(usage["available"]))


def subnets_table(subnets: Iterable[Mapping[str, Any]]) -> str:
    return table(
        ("NAME", "PROVIDER", "CIDR", "IPV4", "IPV6", "ORIGIN"),
        (
            (
                s["name"],
                s.get("provider"),
                s["cidrBlock"],
                family_usage(s, "v4"),
                family_usage(s, "v6"),
                s.get("origin"),
            )
            for s in subnets
        ),
    )


def pools_table(pools: Iterable[Mapping[str, Any]]) -> str:
    return table(
        ("NAME", "SUBNET", "IPS", "USAGE", "ORIGIN"),
        (
            (
                p["name"],
                p["subnet"],
                ",".join(p["ips"]),
                usage_cell(int(p["usage"]["used"]), int(p["usage"]["available"])),
                p.get("origin"),
            )
            for p in pools
        ),
    )


def reservations_table(reservations: Iterable[Mapping[str, Any]]) -> str:
    return table(
        ("ID", "SUBNET", "ADDRESS", "MAC", "OWNER", "NOTE", "ORIGIN"),
        (
            (r["id"], r["subnet"], r["address"], r.get("mac"), r.get("owner"), r.get("note"), r.get("origin"))
            for r in reservations
        ),
    )


def addresses_of(allocation: Mapping[str, Any]) -> str:
    return ",".join(address["address"] for address in allocation.get("addresses", []))


def allocations_table(allocations: Iterable[Mapping[str, Any]]) -> str:
    return table(
        ("ID", "SUBNET", "CLUSTER", "NAMESPACE", "POD", "INTERFACE", "ADDRESSES", "MAC", "NODE", "HOLD", "CREATED"),
        (
            (
                a["id"],
                a["subnet"],
                a.get("cluster"),
                a["owner"].get("namespace"),
                a["owner"].get("pod"),
                a["owner"].get("interface"),
                addresses_of(a),
                a.get("mac"),
                a.get("node"),
                a.get("hold"),
                a.get("createdAt"),
            )
            for a in allocations
        ),
    )


def holders_table(holders: Iterable[Mapping[str, Any]]) -> str:
    return table(
        ("ALLOCATION", "SUBNET", "CLUSTER", "NETWORK", "NAMESPACE", "POD", "INTERFACE", "CONTAINER", "SINCE"),
        (
            (
                a["id"],
                a["subnet"],
                a.get("cluster"),
                a.get("networkKey"),
                a["owner"].get("namespace"),
                a["owner"].get("pod"),
                a["owner"].get("interface"),
                short_id(a["owner"].get("containerId")),
                a.get("createdAt"),
            )
            for a in holders
        ),
    )


def history_table(history: Iterable[Mapping[str, Any]]) -> str:
    return table(
        ("SUBNET", "CLUSTER", "NETWORK", "NAMESPACE", "POD", "INTERFACE", "CONTAINER", "FROM", "TO", "REASON"),
        (
            (
                h["subnet"],
                h.get("cluster"),
                h.get("networkKey"),
                h.get("namespace"),
                h.get("pod"),
                h.get("interface"),
                short_id(h.get("containerId")),
                h.get("from"),
                h.get("to") or "(held)",
                h.get("releaseReason"),
            )
            for h in history
        ),
    )


def short_id(container_id: str | None) -> str | None:
    """Returns the first 12 characters of a container id, like ``docker ps``."""
    return container_id[:12] if container_id else None


def describe_subnet(
    subnet: Mapping[str, Any], pools: Sequence[Mapping[str, Any]], reservations: Sequence[Mapping[str, Any]]
) -> str:
    """Returns the subnet as labelled lines, with each family's free ranges, pools and reservations."""
    routes = [f"{r['dst']} via {r['gw']}" if r.get("gw") else r["dst"] for r in subnet.get("routes", [])]
    dns = subnet.get("dns") or {}
    dns_parts = [
        f"{key} {','.join(value) if isinstance(value, list) else value}" for key, value in dns.items() if value
    ]
    fields: list[tuple[str, object]] = [
        ("Name", subnet["name"]),
        ("CIDR", subnet["cidrBlock"]),
        ("Gateway", subnet.get("gateway")),
        ("Provider", subnet.get("provider") or "(none)"),
        ("Priority", subnet.get("priority")),
        ("Origin", subnet.get("origin")),
        ("Created", subnet.get("createdAt")),
        ("Exclude IPs", ", ".join(subnet.get("excludeIps") or []) or "(none)"),
        ("Routes", ", ".join(routes) or "(none)"),
        ("DNS", "; ".join(dns_parts) or "(none)"),
    ]
    lines = _labelled(fields)
    for family, title in (("v4", "IPv4"), ("v6", "IPv6")):
        usage = subnet.get("usage", {}).get(family)
        if usage is None:
            continue
        lines.append(f"{title}:")
        lines += _labelled(
            [
                ("Usage", usage_cell(int(usage["used"]), int(usage["available"]))),
                ("Total", usage["total"]),
                ("Used", usage["used"]),
                ("Available", usage["available"]),
                ("Excluded", usage["excluded"]),
                ("Reserved", usage["reserved"]),
                ("Pooled", usage["pooled"]),
            ],
            indent="  ",
        )
        free = usage.get("freeRanges") or []
        lines.append("  Free ranges:" + ("" if free else " (none)"))
        lines += [f"    {entry}" for entry in free]
    lines.append("Pools:" + ("" if pools else " (none)"))
    if pools:
        lines += _indented(pools_table(pools))
    lines.append("Reservations:" + ("" if reservations else " (none)"))
    if reservations:
        lines += _indented(reservations_table(reservations))
    return "\n".join(lines)


def describe_pool(pool: Mapping[str, Any]) -> str:
    usage = pool["usage"]
    lines = _labelled(
        [
            ("Name", pool["name"]),
            ("Subnet", pool["subnet"]),
            ("IPs", ", ".join(pool["ips"])),
            ("Origin", pool.get("origin")),
            ("Created", pool.get("createdAt")),
            ("Usage", usage_cell(int(usage["used"]), int(usage["available"]))),
            ("Total", usage["total"]),
            ("Used", usage["used"]),
            ("Available", usage["available"]),
        ]
    )
    free = usage.get("freeRanges") or []
    lines.append("Free ranges:" + ("" if free else " (none)"))
    lines += [f"  {entry}" for entry in free]
    return "\n".join(lines)


def _labelled(fields: Sequence[tuple[str, object]], *, indent: str = "") -> list[str]:
    width = max(len(label) for label, _ in fields) + 2
    return [f"{indent}{(label + ':').ljust(width)}{'-' if value is None else value}" for label, value in fields]


def _indented(text: str) -> list[str]:
    return [f"  {line}" for line in text.splitlines()]
