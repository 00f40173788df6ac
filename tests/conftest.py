"""Fixtures shared by every layer: databases (SQLite and a throwaway PostgreSQL) and daemons."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon
from tests.support.postgres import PostgresServer, create_database, drop_database


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """The URL of a PostgreSQL server the tests may create databases on."""
    configured = os.environ.get("IPAMD_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    server = PostgresServer.start()
    try:
        yield server.admin_url
    finally:
        server.destroy()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    url = create_database(postgres_admin_url)
    try:
        yield url
    finally:
        drop_database(postgres_admin_url, url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database on each backend the daemon supports."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ipamd.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh database on each backend for one module's shared fixture (e.g. a daemon that
    the module's read-only tests share instead of starting one each)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'ipamd.db'}"
        return
    admin_url = request.getfixturevalue("postgres_admin_url")
    url = create_database(admin_url)
    try:
        yield url
    finally:
        drop_database(admin_url, url)


@pytest.fixture(scope="module")
def module_daemon(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A running ipamd on each backend, shared by one module's tests that change nothing (they
    check it with ``Daemon.objects()``); starting one per test is most of such a test's time."""
    process = Daemon(tmp_path_factory.mktemp("daemon"), module_database_url).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def daemon(tmp_path: Path, database_url: str) -> Iterator[Daemon]:
    """A running ipamd on a fresh database, stopped after the test."""
    process = Daemon(tmp_path, database_url).start()
    try:
        yield process
    finally:
        process.stop()
