"""Where transactions run. The service hands over a function of a synchronous SQLAlchemy
``Connection``; a ``Database`` runs it in a transaction and returns its result.

- ``SqliteDatabase`` (embedded default): the standard ``sqlite3`` driver in one writer
  thread with group commit. Writers queued while a commit is on disk go into the next
  transaction together, each in its own SAVEPOINT (a failing one rolls back alone), and
  share one fsync. Readers use other threads: WAL lets them run beside the writer. Running
  each transaction whole in a thread costs one thread hand-off instead of one per statement.
- ``AsyncEngineDatabase`` (PostgreSQL): the asyncpg engine, the function run through
  ``AsyncConnection.run_sync`` so the same code serves both.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from ipamd.store import engine as engines

T = TypeVar("T")
Body = Callable[[Connection], T]

# Enough to amortise an fsync over a burst, small enough that one batch stays short.
MAX_BATCH = 128


class Database(Protocol):
    dialect: str

    async def write(self, body: Body[T]) -> T:
        """Returns ``body(connection)`` run in a committed write transaction."""

    async def read(self, body: Body[T]) -> T:
        """Returns ``body(connection)`` run in a read-only transaction."""

    async def upgrade(self) -> None: ...

    async def revision(self) -> str | None: ...

    async def dispose(self) -> None: ...


def open_database(raw_url: str | URL, *, pool_size: int = 10) -> Database:
    url = raw_url if isinstance(raw_url, URL) else engines.normalize_url(raw_url)
    engines.prepare_sqlite_directory(url)
    if url.get_backend_name() == "sqlite":
        return SqliteDatabase(url)
    return AsyncEngineDatabase(engines.create_engine(url, pool_size=pool_size))


def _current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


class SqliteDatabase:
    dialect = "sqlite"

    def __init__(self, url: URL) -> None:
        self.url = url
        self.engine: Engine = sa.create_engine(
            url.set(drivername="sqlite+pysqlite"),
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=5,
            max_overflow=5,
        )
        engines.configure_sqlite(self.engine)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ipamd-sqlite-writer")
        self._readers = ThreadPoolExecutor(4, thread_name_prefix="ipamd-sqlite-reader")
        self._lock = threading.Lock()
        self._pending: list[tuple[Body[Any], asyncio.Future[Any], asyncio.AbstractEventLoop]] = []
        self._flushing = False

    async def write(self, body: Body[T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            self._pending.append((body, future, loop))
            start = not self._flushing
            self._flushing = True
        if start:
            loop.run_in_executor(self._writer, self._drain)
        return await future

    def _drain(self) -> None:
        """Writer thread: commits queued bodies batch by batch until the queue is empty."""
        while True:
            with self._lock:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                if not batch:
                    self._flushing = False
                    return
            self._commit(batch)

    def _commit(self, batch: list[tuple[Body[Any], asyncio.Future[Any], asyncio.AbstractEventLoop]]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, BaseException | None]] = []
        try:
            with self.engine.begin() as connection:
                # Savepoints straight on the sqlite3 connection: SQLAlchemy's begin_nested()
                # costs more than the statements of a small allocation.
                driver = connection.connection.driver_connection
                assert driver is not None
                for body, future, loop in batch:
                    if future.cancelled():
                        continue
                    driver.execute("SAVEPOINT ipamd_body")
                    try:
                        value = body(connection)
                    except BaseException as e:  # noqa: BLE001 - handed to the waiting caller
                        driver.execute("ROLLBACK TO SAVEPOINT ipamd_body")
                        driver.execute("RELEASE SAVEPOINT ipamd_body")
                        outcomes.append((future, loop, None, e))
                    else:
                        driver.execute("RELEASE SAVEPOINT ipamd_body")
                        outcomes.append((future, loop, value, None))
        except BaseException as e:  # noqa: BLE001 - the commit failed: nobody's write landed
            outcomes = [(future, loop, None, e) for _, future, loop in batch]
        for future, loop, value, error in outcomes:
            loop.call_soon_threadsafe(_settle, future, value, error)

    async def read(self, body: Body[T]) -> T:
        def run() -> T:
            with self.engine.connect().execution_options(**{engines.READ_ONLY_OPTION: True}) as connection:
                with connection.begin():
                    return body(connection)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def upgrade(self) -> None:
        def run(connection: Connection) -> None:
            config = engines.alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

        def migrate() -> None:
            with self.engine.begin() as connection:
                run(connection)

        await asyncio.get_running_loop().run_in_executor(self._writer, migrate)

    async def revision(self) -> str | None:
        return await self.read(_current_revision)

    async def dispose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, lambda: None)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.engine.dispose()


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():
        return  # the caller gave up (timeout); an ADD is idempotent, so a retry finds the row
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class AsyncEngineDatabase:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name

    async def write(self, body: Body[T]) -> T:
        async with self.engine.begin() as connection:
            return await connection.run_sync(body)

    async def read(self, body: Body[T]) -> T:
        async with engines.reader(self.engine).connect() as connection:
            return await connection.run_sync(body)

    async def upgrade(self) -> None:
        await engines.upgrade(self.engine)

    async def revision(self) -> str | None:
        return await engines.current_revision(self.engine)

    async def dispose(self) -> None:
        await self.engine.dispose()
