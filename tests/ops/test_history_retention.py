"""``--history-retention`` in the daemon: the flag, the config file, a pruner that fails and
recovers (logged once each way) and stops cleanly with the daemon."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.daemon import REPO, Daemon, serve_refused
from tests.support.postgres import _psql
from tests.support.waiting import wait_for


def serve_fails(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return serve_refused(str(tmp_path / "s.sock"), f"sqlite:///{tmp_path / 'db'}", *args)


@pytest.mark.parametrize("value", ["3x", "30", "1.5h", "-1d"])
def test_a_bad_retention_stops_the_daemon_with_one_line(tmp_path: Path, value: str) -> None:
    result = serve_fails(tmp_path, f"--history-retention={value}")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"ipamd: history-retention: {value!r}: expected a number with a unit s, m, h or d (such as 30d, 12h, 90s), or 0"
    )


def test_a_bad_retention_in_the_config_file_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "ipamd.yaml"
    path.write_text(yaml.safe_dump({"history": {"retention": "a week"}}))
    result = serve_fails(tmp_path, "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"ipamd: config: {path}: history: retention: 'a week': expected a number with a unit s, m, h or d (such as 30d, 12h, 90s), or 0"
    )
    path.write_text(yaml.safe_dump({"history": {"keep": "7d"}}))
    assert serve_fails(tmp_path, "--config", str(path)).stderr.splitlines()[-1] == (
        f"ipamd: config: {path}: history: keep: unknown field; known fields are retention"
    )


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_config_file_sets_the_retention_unless_the_flag_does(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "ipamd.yaml"
    path.write_text(yaml.safe_dump({"history": {"retention": "45s"}}))
    daemon = Daemon(tmp_path, database_url, extra_args=("--config", str(path))).start()
    try:
        assert "history retention 45s\n" in daemon.log()
        start = len(daemon.log())
        path.write_text(yaml.safe_dump({"history": {"retention": "2m"}}))
        assert daemon.process is not None
        os.kill(daemon.process.pid, signal.SIGHUP)
        wait_for(lambda: "history retention 2m (was 45s)" in daemon.log()[start:], what="the new retention")
    finally:
        assert daemon.stop() == 0

    flagged = Daemon(
        tmp_path, database_url, name="flagged", extra_args=("--config", str(path), "--history-retention", "90s")
    ).start()
    try:
        log = flagged.log()
        assert "config: history.retention 2m ignored: --history-retention 90s is given" in log
        assert "history retention 90s\n" in log
    finally:
        flagged.stop()


def metric(daemon: Daemon, name: str) -> float:
    text = daemon.client.get("/metrics").raw.decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match is not None, text
    return float(match.group(1))


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_failing_pruner_logs_once_recovers_once_and_stops_cleanly(
    tmp_path: Path, database_url: str, postgres_admin_url: str
) -> None:
    """The daemon's role may not delete history: every round fails, the log says so once;
    once allowed, it prunes and says so once; SIGTERM then ends it cleanly."""
    subprocess.run(
        [sys.executable, "-m", "ipamd", "db", "upgrade", "--database-url", database_url],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    role = f"ipamd_history_{uuid.uuid4().hex[:8]}"
    _psql(postgres_admin_url, f"CREATE ROLE {role} LOGIN")
    grants = (
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}; "
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}; "
        f"REVOKE DELETE ON address_events FROM {role}"
    )
    _psql(database_url, grants)
    limited = database_url.replace("postgresql://postgres@", f"postgresql://{role}@")
    daemon = Daemon(tmp_path, limited, extra_args=("--no-migrate", "--history-retention", "1s")).start()
    try:
        assert daemon.client.post("/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.0/24"}).status == 201
        for _ in range(3):
            allocation = daemon.client.post("/v1/allocations", {"subnet": "net1", "owner": {"pod": "p"}}).body
            assert daemon.client.delete(f"/v1/allocations/{allocation['id']}").status == 200
        wait_for(
            lambda: metric(daemon, "ipamd_history_prune_failures_total") >= 3, timeout=60, what="three failed rounds"
        )
        assert daemon.log().count("history pruning failed") == 1, daemon.log()
        assert "history pruning failed (ProgrammingError: " in daemon.log()

        _psql(database_url, f"GRANT DELETE ON address_events TO {role}")
        wait_for(lambda: metric(daemon, "ipamd_history_pruned_events_total") >= 6, timeout=60, what="the events pruned")
        assert daemon.log().count("history pruning works again") == 1
        assert daemon.client.get("/v1/ips/192.0.2.1").body["history"] == []
    finally:
        code = daemon.stop()
        _psql(
            database_url,
            f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {role}; REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {role}",
        )
        _psql(postgres_admin_url, f"DROP ROLE {role}")
    assert code == 0
    log = daemon.log()
    assert log.rstrip().endswith("stopped"), log[-2000:]
    assert "Traceback" not in log and "Task was destroyed" not in log
