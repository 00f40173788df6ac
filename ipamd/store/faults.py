"""Database failures, named: what went wrong, said once, and whether a retry can help.

The drivers say it in their own words: sqlite3's ``SQLITE_*`` names, PostgreSQL's SQLSTATE
codes, an errno. ``error_for`` turns each into one fault an operator can act on, as a
``DatabaseFault`` (503) whose message names the database, says what is wrong and what to
do (docs/operations.md, "When the database fails"):

==================== ============================================ ===================
fault                seen as                                      CNI code
==================== ============================================ ===================
disk full            SQLITE_FULL, ENOSPC, SQLSTATE 53100           11 (space freed)
read-only            SQLITE_READONLY*, EROFS, SQLSTATE 25006       11 (remount, failover)
file gone / replaced the SQLite file's device and inode changed    5: restart needed
locked too long      SQLITE_BUSY/LOCKED, SQLSTATE 55P03, 57014,    11
                     no answer within the transaction timeout
unreachable          connection refused, lost or timed out,        11
                     SQLSTATE 08*, 57P0*
authentication       SQLSTATE 28000, 28P01                         5: credentials needed
==================== ============================================ ===================

``Health`` keeps what requests find, one channel for reads and one for writes, and logs
one line when a channel starts failing, one when its fault changes and one when it works
again, with how many requests failed meanwhile: an outage is a few lines, not one per
refused request. I/O: none but the log.
"""

from __future__ import annotations

import errno
import logging
import time
from dataclasses import dataclass

import sqlalchemy as sa

from ipamd.errors import ConcurrentWrite, DatabaseFault, DatabaseNeedsOperator, IpamError

log = logging.getLogger("ipamd.database")


@dataclass(frozen=True)
class Kind:
    name: str
    advice: str
    retry_helps: bool = True


DISK_FULL = Kind("disk full", "free space on the file system of the database; ipamd retries by itself")
READ_ONLY = Kind(
    "read-only",
    "make the database writable again (a file system remounted read-only, a PostgreSQL standby after a failover); ipamd retries by itself",
)
FILE_GONE = Kind(
    "file gone",
    "writes are refused, as they would be lost at the next restart: put the file back, or restart ipamd",
    retry_helps=False,
)
FILE_REPLACED = Kind(
    "file replaced",
    "writes are refused, as they would go to the file ipamd opened, not to the one at its path: restart ipamd to use the new file",
    retry_helps=False,
)
LOCKED = Kind(
    "locked too long",
    "another writer holds the database (a backup, a stuck transaction, another process on the SQLite file); ipamd retries by itself",
)
UNREACHABLE = Kind("unreachable", "check the database server and the network to it; ipamd retries by itself")
AUTHENTICATION = Kind(
    "authentication failed", "fix the credentials of --database-url (or the server's pg_hba.conf)", retry_helps=False
)
FAILED = Kind("failed", "see the daemon log; ipamd retries by itself")

_SQLITE = {
    "SQLITE_FULL": DISK_FULL,
    "SQLITE_READONLY_DBMOVED": FILE_GONE,
    "SQLITE_BUSY": LOCKED,
    "SQLITE_LOCKED": LOCKED,
    "SQLITE_BUSY_SNAPSHOT": LOCKED,
    "SQLITE_CANTOPEN": UNREACHABLE,
}
_ERRNO = {errno.ENOSPC: DISK_FULL, errno.EDQUOT: DISK_FULL, errno.EROFS: READ_ONLY}
_SQLSTATE = {
    "53100": DISK_FULL,
    "25006": READ_ONLY,
    "55P03": LOCKED,
    "57014": LOCKED,
    "40P01": LOCKED,
    "28000": AUTHENTICATION,
    "28P01": AUTHENTICATION,
}


def kind_of(error: BaseException) -> tuple[Kind, str]:
    """Returns the fault ``error`` shows and the driver's own one-line account of it."""
    if isinstance(error, TimeoutError):
        return LOCKED, "no answer within the transaction timeout"
    cause: BaseException = getattr(error, "orig", None) or error
    detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    name = getattr(cause, "sqlite_errorname", None)
    if isinstance(name, str):
        if name in _SQLITE:
            return _SQLITE[name], detail
        if name.startswith("SQLITE_READONLY"):
            return READ_ONLY, detail
        if name == "SQLITE_IOERR_WRITE" or "disk is full" in detail:
            return DISK_FULL, detail
    for candidate in (cause, getattr(cause, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            if code in _SQLSTATE:
                return _SQLSTATE[code], detail
            if code.startswith(("08", "57P")):
                return UNREACHABLE, detail
        if isinstance(candidate, OSError) and candidate.errno in _ERRNO:
            return _ERRNO[candidate.errno], detail
    if isinstance(cause, (OSError, ConnectionError)) or isinstance(error, (sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return UNREACHABLE, detail
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return UNREACHABLE, detail
    return FAILED, detail


def fault(kind: Kind, detail: str, *, database: str) -> DatabaseFault:
    """Returns the error requests are answered with while ``kind`` lasts."""
    cls = DatabaseFault if kind.retry_helps else DatabaseNeedsOperator
    return cls(f"database {database}: {kind.name} ({detail}); {kind.advice}", fault=kind.name)


def error_for(error: BaseException, *, database: str) -> DatabaseFault:
    """Returns the named fault a database failure stands for."""
    if isinstance(error, DatabaseFault):
        return error
    kind, detail = kind_of(error)
    return fault(kind, detail, database=database)


def conflict(error: BaseException) -> ConcurrentWrite | None:
    """Returns the ConcurrentWrite a unique violation stands for; None for anything else."""
    if not isinstance(error, sa.exc.IntegrityError):
        return None
    cause: BaseException = error.orig or error
    detail = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return ConcurrentWrite(f"a concurrent request wrote the same row ({detail}); retry")


def is_database_failure(error: BaseException) -> bool:
    """True when ``error`` is the database failing, not the request (a constraint, our own error)."""
    if isinstance(error, DatabaseFault):
        return True
    if isinstance(error, (IpamError, sa.exc.IntegrityError)):
        return False
    if isinstance(error, (TimeoutError, OSError, sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError)):
        return True
    if isinstance(error, sa.exc.DBAPIError):
        # A statement PostgreSQL refuses (ProgrammingError, DataError) is a bug or a bad value, not an outage.
        return error.connection_invalidated or not isinstance(error, (sa.exc.ProgrammingError, sa.exc.DataError))
    return False


def migration_retry_reason(error: BaseException) -> str | None:
    """Says why a migration that failed with ``error`` is worth trying again: the database
    is not reachable yet, or the connection was lost meanwhile. None: waiting will not fix
    it (a wrong password, a missing database, a bug). Names the exception's type only: its
    text may carry the URL."""
    if isinstance(error, (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, OSError, TimeoutError)):
        return f"database not reachable yet ({type(error).__name__})"
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return f"database connection lost during migration ({type(error.orig).__name__})"
    return None


@dataclass
class _Outage:
    fault: DatabaseFault
    since: float
    failed: int = 0


class Health:
    """What requests find of the database, reads and writes apart (a full disk still reads)."""

    CHANNELS = ("reads", "writes")

    def __init__(self) -> None:
        self._outages: dict[str, _Outage | None] = {channel: None for channel in self.CHANNELS}

    def current(self, channel: str) -> DatabaseFault | None:
        """Returns the fault ``channel`` fails with now, or None."""
        outage = self._outages[channel]
        return outage.fault if outage is not None else None

    def failed(self, channel: str, error: DatabaseFault, *, counted: bool = True) -> None:
        """Notes that ``channel`` failed with ``error``; ``counted``: for a request (not a check)."""
        outage = self._outages[channel]
        if outage is None or outage.fault.fault != error.fault:
            if outage is None:
                log.warning(
                    "database %s fail: %s; answering 503 (CNI code %d) until they work again",
                    channel,
                    error.message,
                    error.cni_code,
                )
            else:
                log.warning(
                    "database %s fail now: %s (%d request(s) failed with %s before)",
                    channel,
                    error.message,
                    outage.failed,
                    outage.fault.fault,
                )
            outage = self._outages[channel] = _Outage(error, time.monotonic())
        outage.fault = error
        outage.failed += counted

    def succeeded(self, channel: str) -> None:
        outage = self._outages[channel]
        if outage is not None:
            self._outages[channel] = None
            log.info(
                "database %s work again after %.1f s of %s; %d request(s) failed meanwhile",
                channel,
                time.monotonic() - outage.since,
                outage.fault.fault,
                outage.failed,
            )
