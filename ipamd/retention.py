"""History retention: a background task of the application deletes audit events older than
``--history-retention`` (docs/operations.md).

Each round deletes the oldest events in batches, one short transaction each, and after a
batch leaves the database alone for as long as the batch took. On SQLite a batch holds the
one writer every allocation waits for: it is 100 events, a few milliseconds (each deleted
event touches its own page of the history index; 1,000 took 165 ms on a loaded 2-core
machine, docs/benchmarks.md), and pruning takes at most half of the writer's time. On
PostgreSQL a batch of 1,000 locks only the rows it deletes, which nothing else writes.
Rounds come every quarter of the retention, between ``MIN_PERIOD`` and ``MAX_PERIOD``
seconds. With several daemons on one PostgreSQL database
one prunes at a time (an advisory lock; the others skip the round).

A failing round is logged once, when pruning starts failing, and once when it works again;
``ipamd_history_prune_failures_total`` counts every failed round.

I/O: the database, through ``Ipam.prune_history`` only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from ipamd.core.history import format_duration
from ipamd.errors import IpamError
from ipamd.service import Ipam

log = logging.getLogger("ipamd.history")

DEFAULT_RETENTION = 30 * 86400.0
BATCH = {"sqlite": 100}
BATCH_DEFAULT = 1000
MIN_PERIOD = 0.5
MAX_PERIOD = 300.0
# How long shutdown waits for a batch in flight before cancelling it (a transaction is
# bounded by the service's own timeout well below this).
STOP_TIMEOUT = 15.0


def batch_size(dialect: str) -> int:
    """Returns how many events one pruning transaction deletes on this database."""
    return BATCH.get(dialect, BATCH_DEFAULT)


class HistoryPruner:
    """Deletes history older than ``retention`` seconds (0: keeps everything) while running."""

    def __init__(self, ipam: Ipam, retention: float) -> None:
        self.ipam = ipam
        self.retention = retention
        self.batch = batch_size(ipam.database.dialect)
        self.failing = False
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def period(self) -> float:
        return min(max(self.retention / 4, MIN_PERIOD), MAX_PERIOD)

    def set_retention(self, retention: float) -> None:
        """Changes the retention from the next round on, which starts at once."""
        if retention != self.retention and self._task is not None:
            log.info("history retention %s (was %s)", format_duration(retention), format_duration(self.retention))
        self.retention = retention
        self._wake.set()

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="ipamd-history-pruner")

    async def stop(self) -> None:
        """Ends the task after the batch in flight, if any."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        try:
            await asyncio.wait_for(self._task, STOP_TIMEOUT)
        except TimeoutError:
            log.warning("history pruning did not finish its batch in %gs; cancelled", STOP_TIMEOUT)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            if self.retention > 0:
                await self.prune_once()
            # A timer, not a synchronisation: the next round is due then, or when the
            # retention changes or the daemon stops.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.period):
                    await self._wake.wait()

    async def prune_once(self) -> int:
        """Runs one round; returns how many events it deleted.

        The round keeps the retention it started with and ends when the retention changes:
        a batch after the change must not use a cutoff the round did not start from (the next
        round, woken by the change, does)."""
        total = 0
        retention = self.retention
        loop = asyncio.get_running_loop()
        while not self._stopping and self.retention == retention:
            started = loop.time()
            try:
                deleted, more = await self.ipam.prune_history(retention_seconds=retention, batch=self.batch)
            except Exception as e:  # noqa: BLE001 - whatever fails, the daemon keeps serving and retries next round
                self._failed(e)
                break
            if self.failing:
                self.failing = False
                log.info("history pruning works again")
            total += deleted
            if not more:
                break
            await asyncio.sleep(loop.time() - started)
        if total:
            log.debug("history: deleted %d events older than %s", total, format_duration(retention))
        return total

    def _failed(self, error: Exception) -> None:
        if self.failing:
            return
        self.failing = True
        reason = (
            error.message
            if isinstance(error, IpamError)
            else f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        )
        log.error(
            "history pruning failed (%s); events older than %s are kept until it works again, retrying every %s",
            reason,
            format_duration(self.retention),
            format_duration(self.period),
        )


HISTORY_PRUNER: web.AppKey[HistoryPruner] = web.AppKey("history_pruner")


def install(app: web.Application, ipam: Ipam, *, retention: float) -> HistoryPruner:
    """Runs a pruner for the lifetime of ``app``."""
    pruner = HistoryPruner(ipam, retention)

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        log.info(
            "history retention %s", format_duration(pruner.retention) if pruner.retention else "0: every event is kept"
        )
        pruner.start()
        yield
        await pruner.stop()

    app.cleanup_ctx.append(lifetime)
    app[HISTORY_PRUNER] = pruner
    return pruner
