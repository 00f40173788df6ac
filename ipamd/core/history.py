"""The audit history of an address, as the API shows it: durations, paging, holding spans.

Pure: no I/O. The store reads event rows; this module turns a query string into a
``HistoryQuery``, a page of rows into spans, and a position into a continue token.

A span is one allocation's hold on the address: its ``allocate`` event and, once released,
its ``release`` event. Spans are keyed by allocation id, which the database never hands out
twice and hands out in increasing order: paging on it (keyset, not offset) lists every span
exactly once, however many events are written or pruned between two pages.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ipamd.errors import InvalidInput

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"([0-9]{1,9})([smhd])")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
ORDERS = ("oldest", "newest")
QUERY_KEYS = ("limit", "continue", "since", "until", "order")


def parse_duration(value: object, *, field: str) -> float:
    """Returns the seconds of ``30d``, ``12h``, ``15m``, ``90s`` or ``0``."""
    text = str(value).strip() if isinstance(value, (str, int)) and not isinstance(value, bool) else None
    if text == "0":
        return 0.0
    match = _DURATION.fullmatch(text or "")
    if match is None:
        raise InvalidInput(
            f"{value!r}: expected a number with a unit s, m, h or d (such as 30d, 12h, 90s), or 0", field=field
        )
    return float(int(match.group(1)) * DURATION_UNITS[match.group(2)])


def format_duration(seconds: float) -> str:
    """Returns ``seconds`` in the largest unit that divides it (``2592000`` is ``30d``)."""
    if seconds <= 0:
        return "0"
    for unit, size in sorted(DURATION_UNITS.items(), key=lambda item: -item[1]):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_moment(value: str, *, field: str) -> datetime:
    """Returns an RFC 3339 timestamp (``2026-11-29T09:00:00Z``) as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{value!r}: expected an RFC 3339 timestamp such as 2026-11-29T09:00:00Z", field=field
        ) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"{value!r}: give the time zone (Z for UTC, or an offset such as +01:00)", field=field)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class HistoryQuery:
    """Which spans a page lists: after the token's allocation id, overlapping [since, until)."""

    limit: int = DEFAULT_LIMIT
    newest_first: bool = False
    after: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def next_token(self, last_allocation_id: int) -> str:
        return encode_token(last_allocation_id, newest_first=self.newest_first)


def history_query(params: Mapping[str, str]) -> HistoryQuery:
    """Returns the query a request's parameters ask for; raises InvalidInput naming the bad one."""
    unknown = sorted(set(params) - set(QUERY_KEYS))
    if unknown:
        raise InvalidInput(f"unknown parameter; known parameters are {', '.join(QUERY_KEYS)}", field=unknown[0])
    limit = DEFAULT_LIMIT
    if "limit" in params:
        text = params["limit"].strip()
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
            raise InvalidInput(f"{params['limit']!r}: expected a whole number from 1 to {MAX_LIMIT}", field="limit")
        limit = int(text)
    order = params.get("order", "oldest")
    if order not in ORDERS:
        raise InvalidInput(f"{order!r}: expected oldest (the default) or newest", field="order")
    newest_first = order == "newest"
    after = decode_token(params["continue"], newest_first=newest_first) if "continue" in params else None
    since = parse_moment(params["since"], field="since") if "since" in params else None
    until = parse_moment(params["until"], field="until") if "until" in params else None
    if since is not None and until is not None and since >= until:
        raise InvalidInput(f"{params['since']} is not before until {params['until']}", field="since")
    return HistoryQuery(limit=limit, newest_first=newest_first, after=after, since=since, until=until)


def encode_token(allocation_id: int, *, newest_first: bool) -> str:
    raw = json.dumps({"v": 1, "after": allocation_id, "order": ORDERS[newest_first]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, *, newest_first: bool) -> int:
    """Returns the allocation id a continue token resumes after."""
    problem = "not a continue token of this endpoint: pass the 'continue' value of the previous page unchanged"
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidInput(problem, field="continue") from None
    if (
        not isinstance(decoded, dict)
        or decoded.get("v") != 1
        or type(decoded.get("after")) is not int
        or decoded.get("order") not in ORDERS
    ):
        raise InvalidInput(problem, field="continue")
    if decoded["order"] != ORDERS[newest_first]:
        raise InvalidInput(
            f"the token continues a listing with order={decoded['order']}: keep the order of the first page",
            field="continue",
        )
    return int(decoded["after"])


@dataclass(frozen=True, slots=True)
class Span:
    """One allocation of an address, from its ``allocate`` event to its ``release``.

    ``start`` is None when the allocate event was pruned (held since before the history
    kept), ``end`` while it is still held."""

    allocation_id: int
    subnet: str
    cluster: str
    network_key: str
    namespace: str
    pod: str
    interface: str
    container_id: str | None
    start: datetime | None = None
    end: datetime | None = None
    release_reason: str | None = None


def spans(events: Iterable[Any]) -> list[Span]:
    """Returns one span per allocation of ``events`` (rows grouped by allocation id, each
    group in event order), in the order of the groups."""
    result: list[Span] = []
    for event in events:
        if not result or result[-1].allocation_id != event.allocation_id:
            result.append(
                Span(
                    event.allocation_id,
                    event.subnet,
                    event.cluster,
                    event.network_key,
                    event.namespace,
                    event.pod,
                    event.interface,
                    event.container_id,
                )
            )
        if event.action == "allocate":
            result[-1] = replace(result[-1], start=event.at)
        elif event.action == "release":
            result[-1] = replace(result[-1], end=event.at, release_reason=event.reason)
    return result
