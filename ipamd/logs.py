"""Logging set-up: one line per event, as text or JSON."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from aiohttp.http_exceptions import HttpProcessingError

from ipamd.core.model import Allocation
from ipamd.core.text import printable

# Attributes every LogRecord has; anything else was passed with ``extra=`` and is a field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line; fields given with ``extra=`` become keys of their own."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def allocation_fields(event: str, allocation: Allocation, **more: Any) -> dict[str, Any]:
    """Returns the structured fields of an allocation log line (``extra=``): who holds what, where."""
    owner = allocation.owner
    return {
        "event": event,
        "allocationId": allocation.id,
        "subnet": allocation.subnet,
        "network": owner.network_key,
        "namespace": owner.namespace,
        "pod": owner.pod,
        "interface": owner.interface,
        "containerId": allocation.container_id,
        "addresses": allocation.address_texts,
        **more,
    }


class TextFormatter(logging.Formatter):
    """One line per event, and every line of the log written by the daemon as such.

    The message's control characters are spelled out after its arguments are put in,
    whatever they came from (pod names, network names, CNI_ARGS, a database's error
    text...). A traceback or stack keeps its lines, each behind ``TRACE_PREFIX``, so that
    no exception message can start a line that reads like an event of its own."""

    _second: int | None = None
    _second_text = ""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        # The date and time to the second are formatted once per second, not once per line.
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime(self.default_time_format, self.converter(record.created))
        return f"{self._second_text},{int(record.msecs):03d}"

    def formatException(self, ei: Any) -> str:
        return _continued(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _continued(super().formatStack(stack_info))


TRACE_PREFIX = "  | "


def _continued(text: str) -> str:
    return "\n".join(TRACE_PREFIX + printable(line) for line in text.split("\n"))


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs a client's malformed HTTP (a NUL in a header...) as an error with a
    traceback; it is the client's fault, so one warning line says what was rejected."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            first_line = (str(error.message).strip().splitlines() or [type(error).__name__])[0]
            record.msg, record.args = "malformed HTTP request rejected (%s): %s", (type(error).__name__, first_line)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup_logging(*, fmt: str = "text", level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    # Neither format prints the caller's file, line, thread or process; each costs
    # every log line a look-up (an allocation logs one line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would add a line per CNI call; the service logs what matters.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Alembic narrates every readiness check; migrations are logged by the server itself.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(existing, MalformedRequestFilter) for existing in server_log.filters):
        server_log.addFilter(MalformedRequestFilter())
