"""A test-controlled clock for the Kubernetes API double.

The double stamps objects (``creationTimestamp``, ``deletionTimestamp``) and
decides when a pod's deletion grace period is over by asking this clock. Tests
move time forward with :meth:`TestClock.advance` instead of sleeping, which
keeps grace-period tests fast and deterministic.
"""

from __future__ import annotations

import datetime as dt
import threading

UTC = dt.UTC


class TestClock:
    """Wall-clock time plus an offset that only tests change.

    Real time still flows (so ``kubectl get`` shows a sensible AGE), but
    nothing in the double acts on the mere passing of real time unless asked
    to: grace periods expire when a test calls ``advance`` (or the double's
    ``finalize_deletions``/``process_due_deletions``).
    """

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._lock = threading.Lock()
        base = start if start is not None else dt.datetime.now(UTC)
        # Offset between the emulated "now" and the real wall clock.
        self._offset = base - dt.datetime.now(UTC)

    def now(self) -> dt.datetime:
        with self._lock:
            return dt.datetime.now(UTC) + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulated time forward by ``seconds``."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        with self._lock:
            self._offset += dt.timedelta(seconds=seconds)


def rfc3339(moment: dt.datetime) -> str:
    """Kubernetes' ``metav1.Time`` format: second precision, ``Z`` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_micro(moment: dt.datetime) -> str:
    """Kubernetes' ``metav1.MicroTime`` format (used by Events and Leases)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(value: str) -> dt.datetime:
    """Parse a ``metav1.Time`` or ``metav1.MicroTime`` string."""
    text = value.replace("Z", "+00:00")
    return dt.datetime.fromisoformat(text)
