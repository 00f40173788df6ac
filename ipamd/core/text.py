"""Text that goes into log lines."""

from __future__ import annotations


def printable(value: object) -> str:
    """``value`` for a log line: newlines, escapes and other control characters spelled out
    (``\\n``, ``\\x1b``), so that no field of a request can forge or break a line."""
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(c if c.isprintable() and c != "\\" else c.encode("unicode_escape").decode("ascii") for c in text)
