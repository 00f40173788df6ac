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
import collections
import logging
import os
import sqlite3
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeAlias, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import URL, Engine, Row
from sqlalchemy.engine import Connection as Connection  # handed to the store's functions by the service
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql.expression import Executable

from ipamd.errors import DatabaseFault, InvalidInput, Unavailable
from ipamd.store import engine as engines
from ipamd.store import faults
from ipamd.store.procedures import Procedure

log = logging.getLogger("ipamd.database")

T = TypeVar("T")
Body = Callable[[Connection], T]
# A body's future, the loop awaiting it, and its value or error.
Outcome = tuple[asyncio.Future[Any], asyncio.AbstractEventLoop, Any, BaseException | None]
Command: TypeAlias = Procedure | Executable
"""What ``Database.call`` runs: a named procedure, or one statement."""
DatabaseOrEngine: TypeAlias = "Database | AsyncEngine"

# Enough to amortise an fsync over a burst, small enough that one batch stays short.
MAX_BATCH = 128
# After "disk full", the free space writes are trusted again with: a few hundred allocations.
MIN_FREE_BYTES = 1024 * 1024


class Database(Protocol):
    dialect: str
    label: str
    """What messages call the database: the SQLite file, or the URL with its password masked."""

    async def write(self, body: Body[T]) -> T:
        """Returns ``body(connection)`` run in a committed write transaction."""

    async def read(self, body: Body[T]) -> T:
        """Returns ``body(connection)`` run in a read-only transaction."""

    async def call(self, command: Command, params: dict[str, Any]) -> list[Any]:
        """Returns the rows of one statement (or procedure) that is a transaction by itself."""

    async def upgrade(self) -> None: ...

    async def revision(self) -> str | None: ...

    async def dispose(self) -> None: ...

    def check_file(self) -> DatabaseFault | None:
        """SQLite: the fault when the file at the configured path is no longer the one
        opened (deleted, moved, replaced); None while it is, and always on PostgreSQL."""

    def check_space(self) -> DatabaseFault | None:
        """SQLite: "disk full" while its file system has less than MIN_FREE_BYTES free (a
        small write may still fit where an allocation does not); None on PostgreSQL."""


def open_database(raw_url: str | URL, *, pool_size: int = 10) -> Database:
    url = raw_url if isinstance(raw_url, URL) else engines.normalize_url(raw_url)
    engines.prepare_sqlite_directory(url)
    if url.get_backend_name() == "sqlite":
        return SqliteDatabase(url)
    return AsyncEngineDatabase(engines.create_engine(url, pool_size=pool_size), pool_size=pool_size)


def as_database(database: DatabaseOrEngine) -> Database:
    """Returns ``database``, an engine wrapped as one."""
    return AsyncEngineDatabase(database) if isinstance(database, AsyncEngine) else database


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def guarded(
    database: Database,
    health: faults.Health,
    operation: Callable[[], Awaitable[T]],
    channel: str,
    *,
    timeout: float,
    counted: bool = True,
) -> T:
    """Returns what ``operation`` (a transaction on ``database``) returns within ``timeout``
    seconds. A failure of the database leaves as the ``DatabaseFault`` it stands for
    (ipamd.store.faults), noted in ``health`` under ``channel`` ("reads" or "writes");
    ``counted``: for a request, not a check. A unique violation leaves as ConcurrentWrite;
    errors of the request itself pass unchanged."""
    try:
        async with asyncio.timeout(timeout):
            result = await operation()
    except Exception as e:
        collided = faults.conflict(e)
        if collided is not None:
            raise collided from e
        if not faults.is_database_failure(e):
            raise
        # A failure may be the file gone: that, not SQLite's own words, is what to say.
        error = database.check_file() or faults.error_for(e, database=database.label)
        health.failed(channel, error, counted=counted)
        raise error from e
    health.succeeded(channel)
    return result


async def try_upgrade(database: Database, url: URL) -> str | None:
    """Migrates ``database`` to the newest schema. Returns None once done, or why another
    try may succeed (ipamd.store.faults.migration_retry_reason); raises Unavailable when
    the database refuses us in a way waiting does not fix (a wrong password)."""
    try:
        await database.upgrade()
    except Exception as e:
        reason = faults.migration_retry_reason(e)
        if reason is not None:
            return reason
        if isinstance(e, sa.exc.DBAPIError):
            raise Unavailable(engines.refusal_message(e, url)) from e
        raise
    return None


class SqliteDatabase:
    """The embedded database. Its file is watched: SQLite keeps reading and writing a file
    that was deleted or replaced under it, and everything written there is lost at the next
    start. So the device and inode of the file at the path are compared with the opened
    one's before each batch of writes and after its commit, before anyone is told it
    landed (two ``stat`` calls per batch, small beside the batch's fsync); once they
    differ, writes are refused until the same file is back."""

    dialect = "sqlite"

    def __init__(self, url: URL) -> None:
        self.url = url
        assert url.database
        self.path = os.path.abspath(os.path.expanduser(url.database))
        self.label = self.path
        # Created here, and only here: a connection opened later never creates the file
        # again (mode=rw), so a deleted file does not come back empty under the daemon.
        try:
            with open(self.path, "ab"):
                pass
            info = os.stat(self.path)
        except OSError as e:
            raise InvalidInput(
                f"cannot create or open the SQLite file {self.path}: {e.strerror or e}", field="database-url"
            ) from e
        self._identity = (info.st_dev, info.st_ino)
        self._rescued = False
        self.rescue_path = f"{self.path}.rescued"
        self.engine: Engine = sa.create_engine(
            "sqlite+pysqlite://",
            creator=self._connect,
            poolclass=sa.pool.QueuePool,
            pool_size=5,
            max_overflow=5,
        )
        engines.configure_sqlite(self.engine)
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="ipamd-sqlite-writer")
        self._readers = ThreadPoolExecutor(4, thread_name_prefix="ipamd-sqlite-reader")
        # Queued writes. No lock: a deque's append and popleft are atomic, and a lock taken
        # by both threads made the event loop wait for a writer thread waiting for the GIL.
        self._pending: collections.deque[tuple[Body[Any], asyncio.Future[Any], asyncio.AbstractEventLoop]] = (
            collections.deque()
        )
        # Whether a _drain is queued or running; only it clears the flag.
        self._flushing = False

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            f"file:{urllib.parse.quote(self.path)}?mode=rw", uri=True, timeout=30, check_same_thread=False
        )
        # The sub-journal, where a batch's savepoints keep the pages a body changes, stays in
        # memory instead of spilling to a temporary file past 64 KiB: a batch of 128 ADDs
        # took twice as long per ADD as one of 16. Nothing durable lives there: the WAL is
        # what a crash is recovered from.
        connection.execute("PRAGMA temp_store=MEMORY")
        return connection

    async def write(self, body: Body[T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._pending.append((body, future, loop))
        if not self._flushing:
            self._flushing = True
            loop.run_in_executor(self._writer, self._drain)
        return await future

    def _drain(self) -> None:
        """Writer thread: commits queued bodies batch by batch until the queue is empty."""
        pending = self._pending
        while True:
            batch = [pending.popleft() for _ in range(min(len(pending), MAX_BATCH))]
            if batch:
                self._commit(batch)
                continue
            self._flushing = False
            # A write queued between the look above and the flag's clearing saw the flag
            # still set and started no drain: this one takes it. (One queued after the
            # clearing starts a drain of its own, which finds the queue empty or not.)
            if not pending:
                return
            self._flushing = True

    def _commit(self, batch: list[tuple[Body[Any], asyncio.Future[Any], asyncio.AbstractEventLoop]]) -> None:
        outcomes: list[Outcome] = []
        moved = self.check_file()
        if moved is not None:
            self._rescue()
            self._settle_all(batch, self.check_file() or moved)
            return
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
                        # Released at once, not left for COMMIT: savepoints left open make the
                        # sub-journal outgrow memory, and a batch then costs twice as much.
                        driver.execute("RELEASE SAVEPOINT ipamd_body")
                        outcomes.append((future, loop, value, None))
        except BaseException as e:  # noqa: BLE001 - the commit failed: nobody's write landed
            self._settle_all(batch, e)
            return
        moved = self.check_file()
        if moved is not None:
            # Committed into a file that is no longer at the path: lost at the next start,
            # so nobody may be told it landed.
            self._rescue()
            self._settle_all(batch, self.check_file() or moved)
            return
        _hand_back(outcomes)

    @staticmethod
    def _settle_all(
        batch: list[tuple[Body[Any], asyncio.Future[Any], asyncio.AbstractEventLoop]], error: BaseException
    ) -> None:
        _hand_back([(future, loop, None, error) for _, future, loop in batch])

    def check_file(self) -> DatabaseFault | None:
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            found = None
        except OSError:
            return None  # the directory cannot be read: nothing is known about the file
        else:
            found = (info.st_dev, info.st_ino)
        if found == self._identity:
            return None
        copied = f"; what ipamd had written is copied to {self.rescue_path}" if self._rescued else ""
        if found is None:
            detail = f"{self.path} is no longer there: deleted or moved while ipamd had it open{copied}"
            return faults.fault(faults.FILE_GONE, detail, database=self.label)
        return faults.fault(
            faults.FILE_REPLACED, f"{self.path} is another file than the one ipamd opened{copied}", database=self.label
        )

    def check_space(self) -> DatabaseFault | None:
        try:
            stats = os.statvfs(os.path.dirname(self.path))
        except OSError:
            return None
        free = stats.f_bavail * stats.f_frsize
        if free >= MIN_FREE_BYTES:
            return None
        return faults.fault(
            faults.DISK_FULL, f"{free // 1024} KiB free on the file system of {self.path}", database=self.label
        )

    def _rescue(self) -> None:
        """Writer thread, once the file is gone or replaced: copies what this daemon sees
        (its open file and WAL, every acknowledged write) to ``rescue_path`` beside it."""
        if self._rescued:
            return
        self._rescued = True
        try:
            with self.engine.connect() as connection:
                driver = connection.connection.driver_connection
                assert driver is not None
                copy = sqlite3.connect(self.rescue_path)
                try:
                    driver.backup(copy)
                finally:
                    copy.close()
            log.warning("database %s: what ipamd had written is copied to %s", self.path, self.rescue_path)
        except (sa.exc.DBAPIError, sqlite3.Error, OSError) as e:
            log.warning("database %s: could not copy what ipamd had written to %s (%s)", self.path, self.rescue_path, e)

    async def read(self, body: Body[T]) -> T:
        def run() -> T:
            with self.engine.connect().execution_options(**{engines.READ_ONLY_OPTION: True}) as connection:
                with connection.begin():
                    return body(connection)

        return await asyncio.get_running_loop().run_in_executor(self._readers, run)

    async def call(self, command: Command, params: dict[str, Any]) -> list[Any]:
        if not isinstance(command, Procedure):
            return await self.write(lambda connection: list(connection.execute(command, params)))

        def run(connection: Connection) -> list[Any]:
            driver = connection.connection.driver_connection
            assert driver is not None
            try:
                return command.sqlite(driver, params)
            except sqlite3.DatabaseError as e:
                # As SQLAlchemy would raise it (a unique violation is IntegrityError).
                raise sa.exc.DBAPIError.instance(None, None, e, sqlite3.Error) from e

        return await self.write(run)

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
        return await self.read(current_revision)

    async def dispose(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, lambda: None)
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self.engine.dispose()


def _hand_back(outcomes: list[Outcome]) -> None:
    """Writer thread: settles a batch's futures with one wake-up of each waiting loop, not
    one per future (each costs the loop a self-pipe write and the writer the GIL)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        by_loop.setdefault(outcome[1], []).append(outcome)
    for loop, settled in by_loop.items():
        loop.call_soon_threadsafe(_settle, settled)


def _settle(outcomes: list[Outcome]) -> None:
    for future, _, value, error in outcomes:
        if future.done():
            continue  # the caller gave up (timeout); an ADD is idempotent, so a retry finds the row
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


class AsyncEngineDatabase:
    def __init__(self, engine: AsyncEngine, *, pool_size: int = 10) -> None:
        self.engine = engine
        self.dialect = engine.dialect.name
        self.label = engines.safe_url(engine.url)
        self._pool_size = pool_size
        # Single statements run on connections of their own (see call), made on first use.
        self._calls: AsyncEngine | None = None

    def check_file(self) -> DatabaseFault | None:
        return None

    def check_space(self) -> DatabaseFault | None:
        return None

    async def write(self, body: Body[T]) -> T:
        async with self.engine.begin() as connection:
            return await connection.run_sync(body)

    async def read(self, body: Body[T]) -> T:
        async with engines.reader(self.engine).connect() as connection:
            return await connection.run_sync(body)

    async def call(self, command: Command, params: dict[str, Any]) -> list[Any]:
        """One round trip: no BEGIN and COMMIT around the statement, and no ping first.

        A pooled connection found dead (the server restarted) is retried once on a new
        one; the statements run here (ipamd.store.procedures) are safe to run twice.
        """
        if self._calls is None:
            self._calls = engines.create_engine(self.engine.url, pool_size=self._pool_size, autocommit=True)
        statement = command.postgresql if isinstance(command, Procedure) else command
        try:
            return await self._call_once(self._calls, statement, params)
        except sa.exc.DBAPIError as e:
            if not e.connection_invalidated:
                raise
        return await self._call_once(self._calls, statement, params)

    @staticmethod
    async def _call_once(engine: AsyncEngine, statement: Executable, params: dict[str, Any]) -> list[Row[Any]]:
        async with engine.connect() as connection:
            return list(await connection.execute(statement, params))

    async def upgrade(self) -> None:
        await engines.upgrade(self.engine)

    async def revision(self) -> str | None:
        return await engines.current_revision(self.engine)

    async def dispose(self) -> None:
        if self._calls is not None:
            await self._calls.dispose()
        await self.engine.dispose()
