"""Sets of integers kept as sorted, disjoint, inclusive intervals.

Addresses are integers here (IPv4 and IPv6 alike), so free space, exclusions and pools
are interval lists whose size never depends on how many addresses they cover.
"""

from __future__ import annotations

from collections.abc import Iterable

Interval = tuple[int, int]
"""An inclusive ``(first, last)`` pair with ``first <= last``."""


def normalize(intervals: Iterable[Interval]) -> list[Interval]:
    """Returns the intervals sorted, with overlapping and adjacent ones merged."""
    merged: list[Interval] = []
    for first, last in sorted(intervals):
        if first > last:
            continue
        if merged and first <= merged[-1][1] + 1:
            if last > merged[-1][1]:
                merged[-1] = (merged[-1][0], last)
        else:
            merged.append((first, last))
    return merged


def subtract(base: Iterable[Interval], removed: Iterable[Interval]) -> list[Interval]:
    """Returns the part of ``base`` not covered by ``removed``."""
    holes = normalize(removed)
    result: list[Interval] = []
    index = 0
    for first, last in normalize(base):
        # Skip holes that end before this interval starts.
        while index < len(holes) and holes[index][1] < first:
            index += 1
        cursor = first
        probe = index
        while probe < len(holes) and holes[probe][0] <= last:
            hole_first, hole_last = holes[probe]
            if hole_first > cursor:
                result.append((cursor, hole_first - 1))
            cursor = max(cursor, hole_last + 1)
            probe += 1
        if cursor <= last:
            result.append((cursor, last))
    return result


def intersect(left: Iterable[Interval], right: Iterable[Interval]) -> list[Interval]:
    """Returns the intervals covered by both ``left`` and ``right``."""
    a, b = normalize(left), normalize(right)
    result: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        first = max(a[i][0], b[j][0])
        last = min(a[i][1], b[j][1])
        if first <= last:
            result.append((first, last))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return result


def size(intervals: Iterable[Interval]) -> int:
    """Returns how many integers the intervals cover (they must be disjoint)."""
    return sum(last - first + 1 for first, last in intervals)


def contains(intervals: Iterable[Interval], value: int) -> bool:
    """Returns True when ``value`` lies in one of the intervals."""
    return any(first <= value <= last for first, last in intervals)


def from_points(points: Iterable[int]) -> list[Interval]:
    """Returns the intervals covering a collection of single integers."""
    return normalize((point, point) for point in points)


def nth(intervals: Iterable[Interval], index: int) -> int | None:
    """Returns the ``index``-th integer (0-based) the intervals cover in order, or None."""
    for first, last in intervals:
        span = last - first + 1
        if index < span:
            return first + index
        index -= span
    return None
