"""The audit history: who held an address (a page at a time), and pruning what is past retention."""

from __future__ import annotations

from ipamd.core import model
from ipamd.core.addresses import parse_ip
from ipamd.core.history import HistoryQuery, spans
from ipamd.service.base import ServiceBase
from ipamd.store import history, records
from ipamd.store.database import Connection


class History(ServiceBase):
    """Reading an address's holders and history; deleting history older than the retention."""

    async def ip_info(self, text: str, query: HistoryQuery | None = None) -> model.AddressHistory:
        """Returns who holds the address now and one page of who held it, with the token
        of the next page (None on the last)."""
        query = query or HistoryQuery()
        address = parse_ip(text, field="address")
        value, family = int(address), address.version

        def run(conn: Connection) -> model.AddressHistory:
            holders = self._allocations(conn, records.allocations_at(conn, family=family, address=value))
            ids = history.span_ids(conn, family=family, address=value, query=query)
            page = ids[: query.limit]
            events = history.span_events(conn, family=family, address=value, ids=page, newest_first=query.newest_first)
            return model.AddressHistory(
                address=str(address),
                holders=tuple(holders),
                spans=tuple(spans(events)),
                continue_token=query.next_token(page[-1]) if len(ids) > len(page) else None,
            )

        return await self._read(run)

    async def prune_history(self, *, retention_seconds: float, batch: int) -> tuple[int, bool]:
        """Deletes one batch of the oldest events older than the retention, in its own
        transaction; returns how many it deleted and whether older ones may remain.

        A retention of 0 keeps every event, as ``--history-retention 0`` does: it deletes
        nothing rather than everything older than now."""
        if retention_seconds <= 0:
            return 0, False
        try:
            deleted, more = await self._write(
                lambda conn: history.prune_batch(conn, retention_seconds=retention_seconds, batch=batch)
            )
        except Exception:
            self._notify(model.HistoryPruneFailed())
            raise
        if deleted:
            self._notify(model.HistoryPruned(deleted))
        return deleted, more
