"""Engine set-up for the two supported databases, and schema migration.

SQLite (embedded default): WAL journal, ``synchronous=FULL`` so a commit survives power
loss, ``BEGIN IMMEDIATE`` so a write transaction takes the write lock up front instead of
failing half-way. PostgreSQL (cluster-wide): asyncpg with pre-ping and short timeouts so a
dead database turns into a quick "try again" instead of a hung request.
"""

from __future__ import annotations

import asyncio
import importlib.resources
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ipamd.errors import InvalidInput, Unavailable

CONNECT_TIMEOUT_SECONDS = 3.0
STATEMENT_TIMEOUT_SECONDS = 10.0
# pg_advisory_xact_lock key serialising schema migrations across daemons ("ipamd" in hex).
MIGRATION_LOCK_KEY = 0x6970616D64
# Execution option of read-only connections (see ``reader``).
READ_ONLY_OPTION = "ipamd_read_only"


def normalize_url(raw: str) -> URL:
    """Returns the SQLAlchemy URL with the async driver filled in."""
    try:
        url = make_url(raw)
    except Exception as e:  # sqlalchemy.exc.ArgumentError and friends
        raise InvalidInput(
            "not a database URL such as sqlite:///path or postgresql://user@host/db", field="database-url"
        ) from e
    backend = url.get_backend_name()
    if backend == "sqlite" and url.database in (None, "", ":memory:"):
        # Every connection would get a database of its own: writes would vanish.
        raise InvalidInput(
            "SQLite needs a file path (sqlite:////var/lib/ipamd/ipamd.db), not an in-memory database",
            field="database-url",
        )
    if backend == "sqlite":
        return url.set(drivername="sqlite+aiosqlite")
    if backend in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+asyncpg")
    raise InvalidInput(f"unsupported database {backend!r}: use sqlite or postgresql", field="database-url")


def safe_url(url: URL | str) -> str:
    """Returns the URL with its password masked, for logs and messages."""
    return (url if isinstance(url, URL) else make_url(url)).render_as_string(hide_password=True)


def refusal_message(error: BaseException, url: URL | str) -> str:
    """One line saying why the database refused us (a wrong password, a missing database).

    The driver's own first line says it best; the password is masked in case a driver
    ever echoes it.
    """
    parsed = url if isinstance(url, URL) else make_url(url)
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    text = lines[0] if lines else type(cause).__name__
    if parsed.password:
        text = text.replace(str(parsed.password), "***")
    return f"database {safe_url(parsed)} refused the connection: {text} ({type(cause).__name__})"


def create_engine(raw_url: str | URL, *, pool_size: int = 10, autocommit: bool = False) -> AsyncEngine:
    """Returns the engine of a database URL.

    ``autocommit`` (PostgreSQL): every statement its own transaction, and no ping before a
    pooled connection is used, so a statement is exactly one round trip; the caller retries
    a statement whose connection turned out dead (``Database.call``).
    """
    url = raw_url if isinstance(raw_url, URL) else normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        engine = create_async_engine(url, connect_args={"timeout": 30})
        configure_sqlite(engine.sync_engine)
        return engine
    return create_async_engine(
        url,
        pool_size=pool_size,
        # The one-call engine has no overflow: under a burst of ADDs, overflow connections
        # were opened (TLS attempt, type introspection, a new server backend) and closed on
        # return, again and again; a wait for one of pool_size connections is cheaper
        # (one daemon on PostgreSQL: 692 ADDs/s against 491, docs/benchmarks.md).
        max_overflow=0 if autocommit else pool_size,
        pool_pre_ping=not autocommit,
        **({"isolation_level": "AUTOCOMMIT"} if autocommit else {}),
        # Waiting for a pooled connection means load, not a dead database (that shows as a
        # failed connect within CONNECT_TIMEOUT_SECONDS): a burst of ADDs queued on one
        # subnet's row lock must not turn into 503s. The service's transaction timeout
        # bounds the whole wait anyway.
        pool_timeout=STATEMENT_TIMEOUT_SECONDS,
        pool_recycle=1800,
        connect_args={
            "timeout": CONNECT_TIMEOUT_SECONDS,
            "command_timeout": STATEMENT_TIMEOUT_SECONDS,
            "server_settings": {"application_name": "ipamd"},
        },
    )


def configure_sqlite(engine: Engine) -> None:
    """Durable WAL settings and explicit BEGIN on every connection of a (sync) SQLite engine."""

    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below instead of the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Connection) -> None:
        # Readers begin DEFERRED: in WAL mode they read a snapshot and neither take nor wait
        # for the write lock. Everything else takes the write lock up front.
        if connection.get_execution_options().get(READ_ONLY_OPTION):
            connection.exec_driver_sql("BEGIN")
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def reader(engine: AsyncEngine) -> AsyncEngine:
    """Returns a view of the engine whose connections only read (SQLite: no write lock)."""
    return engine.execution_options(**{READ_ONLY_OPTION: True})


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(importlib.resources.files("ipamd.migrations")))
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine) -> None:
    """Migrates the database to the newest schema."""

    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Every daemon of a DaemonSet migrates at start, all at once: without this lock
            # they race on CREATE TABLE of a fresh database and all but one crash. The lock
            # ends with the transaction; the others then find the schema at head.
            await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")
        await connection.run_sync(run)


async def current_revision(engine: AsyncEngine) -> str | None:
    async with reader(engine).connect() as connection:
        return await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


def prepare_sqlite_directory(url: URL) -> None:
    """Creates the directory of a SQLite file so a fresh node starts without set-up."""
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        from pathlib import Path

        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def run_upgrade_blocking(raw_url: str) -> None:
    url = normalize_url(raw_url)
    prepare_sqlite_directory(url)

    async def main() -> None:
        engine = create_engine(url)
        try:
            await upgrade(engine)
        except sa_exc.DBAPIError as e:
            raise Unavailable(refusal_message(e, url)) from e
        finally:
            await engine.dispose()

    asyncio.run(main())
