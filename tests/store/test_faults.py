"""Database failures named (ipamd.store.faults): real sqlite3 failures, and one log line per change."""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from ipamd.errors import DatabaseFault, DatabaseNeedsOperator
from ipamd.store import faults


def sqlite_error(tmp_path: Path, situation: str) -> sqlite3.Error:
    path = tmp_path / "x.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (v)")
    setup.commit()
    setup.close()
    if situation == "read-only":
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    else:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        connection = sqlite3.connect(path, timeout=0)
    try:
        connection.execute("INSERT INTO t VALUES (1)")
    except sqlite3.Error as e:
        return e
    raise AssertionError("the write went through")


@pytest.mark.parametrize("situation, kind", [("read-only", faults.READ_ONLY), ("locked", faults.LOCKED)])
def test_sqlite_failures_are_named(tmp_path: Path, situation: str, kind: faults.Kind):
    error = faults.error_for(sqlite_error(tmp_path, situation), database="/var/lib/ipamd/ipamd.db")
    assert type(error) is DatabaseFault and error.cni_code == 11 and error.details == {"fault": kind.name}
    assert error.message.startswith(f"database /var/lib/ipamd/ipamd.db: {kind.name} (")


def test_a_full_disk_and_a_timeout_are_named():
    assert faults.kind_of(OSError(28, os.strerror(28)))[0] is faults.DISK_FULL
    assert faults.kind_of(TimeoutError())[0] is faults.LOCKED
    assert faults.kind_of(ConnectionRefusedError(111, "refused"))[0] is faults.UNREACHABLE


def test_faults_no_retry_clears_are_code_5():
    gone = faults.fault(faults.FILE_GONE, "x is no longer there", database="x")
    assert isinstance(gone, DatabaseNeedsOperator) and (gone.http_status, gone.cni_code) == (503, 5)


def test_health_logs_once_per_change_with_the_count(caplog: pytest.LogCaptureFixture):
    health = faults.Health()
    full = faults.fault(faults.DISK_FULL, "database or disk is full", database="d")
    read_only = faults.fault(faults.READ_ONLY, "attempt to write a readonly database", database="d")
    with caplog.at_level(logging.INFO, logger="ipamd.database"):
        for _ in range(3):
            health.failed("writes", full)
        health.failed("writes", full, counted=False)
        health.succeeded("reads")
        health.failed("writes", read_only)
        health.failed("writes", read_only)
        health.succeeded("writes")
        health.succeeded("writes")
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 3, lines
    assert lines[0].startswith("database writes fail: database d: disk full (database or disk is full)")
    assert (
        lines[1].startswith("database writes fail now: database d: read-only")
        and "(3 request(s) failed with disk full before)" in lines[1]
    )
    assert lines[2].startswith("database writes work again after ") and lines[2].endswith(
        "s of read-only; 2 request(s) failed meanwhile"
    )
    assert health.current("writes") is None
