"""Fixtures for the end-to-end CNI tests: a CNI bin dir with Debian's plugins and ipamd's
plugin installed by ``ipamd install-cni``, ipamd daemons, and namespaces/links that are always
removed.

Every module in this directory is marked with ``requires_cni`` (e2e_support.skip_reason):
the tests need root and /usr/lib/cni/macvlan, and are skipped with the reason otherwise.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import SYSTEM_CNI_DIR, Cni, Topology, make_subnet

from tests.support.daemon import REPO, Daemon


def _short_dir(prefix: str) -> Path:
    # A Unix socket path holds at most 107 bytes; pytest's tmp_path can be longer.
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


@pytest.fixture(scope="session")
def cni_bin() -> Iterator[Path]:
    """A temporary CNI bin dir: symlinks to every system plugin, plus ipamd's plugin installed
    exactly as the chart's init container does it (also as ``kube-ovn``)."""
    directory = _short_dir("ipamd-e2e-bin-")
    try:
        for plugin in sorted(SYSTEM_CNI_DIR.iterdir()):
            (directory / plugin.name).symlink_to(plugin)
        done = subprocess.run(
            [sys.executable, "-m", "ipamd", "install-cni", "--dest", str(directory), "--also-as", "kube-ovn"],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"install-cni failed: {done.stdout}{done.stderr}"
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def cni(cni_bin: Path) -> Cni:
    return Cni(cni_bin)


def _start_daemon(url_for: Callable[[Path], str]) -> tuple[Daemon, Path]:
    workdir = _short_dir("ipamd-e2e-d-")
    try:
        return Daemon(workdir, url_for(workdir)).start(), workdir
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise


@contextlib.contextmanager
def _running_daemon(url_for: Callable[[Path], str]) -> Iterator[Daemon]:
    daemon, workdir = _start_daemon(url_for)
    try:
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _sqlite(directory: Path) -> str:
    return f"sqlite:///{directory / 'ipamd.db'}"


@pytest.fixture(scope="session")
def ipamd() -> Iterator[Daemon]:
    """One SQLite daemon shared by the tests that do not stop it. Each test uses subnets
    and providers of its own (the ``subnet`` fixture names them uniquely)."""
    with _running_daemon(_sqlite) as daemon:
        yield daemon


@pytest.fixture
def own_ipamd() -> Iterator[Daemon]:
    """A SQLite daemon for one test, which may stop and start it."""
    with _running_daemon(_sqlite) as daemon:
        yield daemon


@pytest.fixture
def pg_ipamd(postgres_url: str) -> Iterator[Daemon]:
    """A daemon on a fresh PostgreSQL database (tests/conftest.py's postgres_url)."""
    with _running_daemon(lambda _directory: postgres_url) as daemon:
        yield daemon


@pytest.fixture
def topo() -> Iterator[Topology]:
    """Namespaces and root-namespace links of one test; removed after it, pass or fail.
    A leftover that cannot be removed fails the test's teardown."""
    topology = Topology()
    try:
        yield topology
    finally:
        problems = topology.cleanup()
        assert not problems, f"could not remove: {problems}"


@pytest.fixture
def subnet(ipamd: Daemon) -> Callable[..., dict[str, Any]]:
    """subnet(cidr, **fields) on the shared daemon; returns the created subnet."""
    return lambda cidr, **fields: make_subnet(ipamd, cidr, **fields)
