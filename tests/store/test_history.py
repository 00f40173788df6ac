"""History retention and paging (issue 15, item 3), on SQLite and PostgreSQL.

The pruner runs in the application (``create_app(history_retention=...)``), as in the daemon.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from ipamd.core.allocation import Owner
from ipamd.core.history import HistoryQuery
from ipamd.core.nad import NetworkRequest
from ipamd.retention import HISTORY_PRUNER, HistoryPruner
from ipamd.service import AddRequest, Ipam
from ipamd.store.database import open_database
from ipamd.store.schema import address_events
from tests.support.inprocess import Rest, opened_ipam, rest_on

ADDRESS = "192.0.2.9"
ADDRESS_VALUE = 0xC0000209
OWNER = {"namespace": "lab", "pod": "churn", "interface": "eth1"}


async def count_events(ipam: Ipam) -> int:
    return int(
        await ipam.read(lambda conn: conn.execute(sa.select(sa.func.count()).select_from(address_events)).scalar_one())
    )


async def events_of_address(ipam: Ipam) -> list[Any]:
    return list(
        await ipam.read(
            lambda conn: conn.execute(
                sa.select(address_events).where(address_events.c.address == ADDRESS_VALUE).order_by(address_events.c.id)
            ).all()
        )
    )


async def page_through(
    rest: Rest, *, limit: int, order: str = "oldest", between_pages: Any = None
) -> list[dict[str, Any]]:
    """Returns every span the API lists, following the continue tokens."""
    spans: list[dict[str, Any]] = []
    token = None
    while True:
        query = f"?limit={limit}&order={order}" + (f"&continue={token}" if token else "")
        page = await rest.ok("GET", f"/v1/ips/{ADDRESS}{query}")
        assert len(page["history"]) <= limit
        spans += page["history"]
        token = page["continue"]
        if token is None:
            return spans
        if between_pages is not None:
            await between_pages()


@pytest.fixture
async def pruning_rest(database_url: str) -> AsyncIterator[Rest]:
    """An in-process daemon keeping 2 seconds of history, with one subnet holding ADDRESS."""
    async with opened_ipam(database_url, node="n1") as ipam, rest_on(ipam, history_retention=2.0) as rest:
        # A /30: the one usable address besides the gateway is ADDRESS, every cycle takes it again.
        await rest.ok("POST", "/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.8/30", "gateway": "192.0.2.10"})
        yield rest


# How long the churn goes on, in windows of retention plus one pruning period plus slack:
# enough for dozens of pruning rounds and for the history written early to be long gone.
WINDOWS = 3
# And at least as many cycles as issue 15 names, however fast the machine is.
CYCLES = 10_000


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_allocate_release_churn_over_several_retention_windows_leaves_a_bounded_history(
    pruning_rest: Rest,
) -> None:
    """Allocate/release cycles of one address, as fast as the service takes them, for three
    windows of 2 s retention, 0.5 s pruning period and 3 s slack and at least 10,000
    cycles: at every pruning period
    the table holds no more events than were written within one window; then the API pages
    through what remains, every allocation exactly once, in order, in both orders, while new
    cycles go on.

    What bounds the table is the retention in seconds, not a number of cycles: however
    many cycles a window holds on this machine, the early history must be gone."""
    rest = pruning_rest
    pruner = rest.app[HISTORY_PRUNER]
    window = pruner.retention + pruner.period + 3.0
    finished: list[float] = []
    samples: list[tuple[int, int]] = []

    # Through the service, the same transactions as POST and DELETE /v1/allocations without
    # the HTTP round trips: thousands of them in a row are what this test can afford.
    request = AddRequest(
        owner=Owner("net1", "lab", "churn", "eth1"), network=NetworkRequest("net1", None), subnet_name="net1"
    )

    async def cycle() -> int:
        allocation = await rest.ipam.allocate(request)
        assert allocation.addresses[0].address == ADDRESS
        await rest.ipam.release(allocation.id, reason="api")
        finished.append(time.monotonic())
        return allocation.id

    started = last_sample = time.monotonic()
    while time.monotonic() - started < WINDOWS * window or len(finished) < CYCLES:
        await cycle()
        if time.monotonic() - last_sample >= pruner.period:
            rows = await count_events(rest.ipam)
            now = last_sample = time.monotonic()
            recent = sum(1 for moment in finished if moment >= now - window)
            samples.append((rows, recent))
            # Two events per cycle written within the window, and the cycle in flight.
            assert rows <= 2 * recent + 2, (len(finished), rows, recent, samples)
    cycles = len(finished)
    assert len(samples) >= WINDOWS * window / pruner.period / 2, samples
    # Never more than half of what was written is still there: the early history is gone.
    assert max(rows for rows, _ in samples) < 2 * cycles // 2, (cycles, samples)

    # What remains, kept still: the pruner stops after its batch in flight, which would
    # otherwise delete events after they were read here.
    await pruner.stop()
    remaining = await events_of_address(rest.ipam)
    assert 0 < len(remaining) < 2 * cycles
    by_allocation: dict[int, list[str]] = {}
    for event in remaining:
        by_allocation.setdefault(event.allocation_id, []).append(event.action)
    expected = sorted(by_allocation)

    # Pages small enough that there are several of them, whatever the pace of this machine.
    limit = max(1, len(expected) // 7)
    listed = await page_through(rest, limit=limit)
    assert [span["allocationId"] for span in listed] == expected
    # Every event exactly once: an allocate is a start, a release an end; a span whose
    # allocate was pruned starts at null.
    for span in listed:
        actions = by_allocation[span["allocationId"]]
        assert (span["from"] is not None, span["to"] is not None) == ("allocate" in actions, "release" in actions), (
            span,
            actions,
        )
        assert span["releaseReason"] == "api" and span["pod"] == "churn"
    assert sum(len(by_allocation[span["allocationId"]]) for span in listed) == len(remaining)

    # Newest first, with cycles landing between the pages: the new allocations come after
    # the first page's position, so none of them shows up and nothing repeats or goes missing.
    added: list[int] = []

    async def more_cycles() -> None:
        for _ in range(3):
            added.append(await cycle())

    newest = await page_through(rest, limit=limit, order="newest", between_pages=more_cycles)
    assert [span["allocationId"] for span in newest] == expected[::-1]
    assert added and min(added) > max(expected)
    # Oldest first, the new ones are found at the end, once each.
    after = await page_through(rest, limit=limit, between_pages=more_cycles)
    ids = [span["allocationId"] for span in after]
    assert ids[: len(expected)] == expected and len(ids) == len(set(ids)) and ids == sorted(ids)
    assert set(added) <= set(ids)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        pytest.param("limit=0", "limit: '0': expected a whole number from 1 to 1000", id="limit-zero"),
        pytest.param("limit=1001", "limit: '1001': expected a whole number from 1 to 1000", id="limit-too-big"),
        pytest.param("limit=ten", "limit: 'ten': expected a whole number from 1 to 1000", id="limit-text"),
        pytest.param("order=sideways", "order: 'sideways': expected oldest (the default) or newest", id="order"),
        pytest.param(
            "page=2", "page: unknown parameter; known parameters are limit, continue, since, until, order", id="unknown"
        ),
        pytest.param(
            "since=yesterday",
            "since: 'yesterday': expected an RFC 3339 timestamp such as 2026-11-29T09:00:00Z",
            id="since-text",
        ),
        pytest.param(
            "until=2026-11-29T09:00:00",
            "until: '2026-11-29T09:00:00': give the time zone (Z for UTC, or an offset such as +01:00)",
            id="until-naive",
        ),
        pytest.param(
            "since=2026-11-29T10:00:00Z&until=2026-11-29T09:00:00Z",
            "since: 2026-11-29T10:00:00Z is not before until 2026-11-29T09:00:00Z",
            id="since-after-until",
        ),
        pytest.param(
            "continue=bm90IGEgdG9rZW4",
            "continue: not a continue token of this endpoint: pass the 'continue' value of the previous page unchanged",
            id="continue-forged",
        ),
        pytest.param(
            "continue=%%%",
            "continue: not a continue token of this endpoint: pass the 'continue' value of the previous page unchanged",
            id="continue-junk",
        ),
    ],
)
async def test_bad_history_parameters_are_refused_by_name(rest: Rest, query: str, message: str) -> None:
    status, body, _ = await rest.call("GET", f"/v1/ips/{ADDRESS}?{query}")
    assert status == 400, body
    assert body["error"]["code"] == "invalid_input"
    assert body["error"]["message"] == message


async def test_a_token_keeps_the_order_it_was_issued_for(rest: Rest) -> None:
    await rest.ok("POST", "/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.8/30", "gateway": "192.0.2.10"})
    for _ in range(3):
        allocation = await rest.ok("POST", "/v1/allocations", {"subnet": "net1", "owner": OWNER})
        await rest.ok("DELETE", f"/v1/allocations/{allocation['id']}")
    page = await rest.ok("GET", f"/v1/ips/{ADDRESS}?limit=1&order=newest")
    status, body, _ = await rest.call("GET", f"/v1/ips/{ADDRESS}?limit=1&continue={page['continue']}")
    assert status == 400
    assert (
        body["error"]["message"]
        == "continue: the token continues a listing with order=newest: keep the order of the first page"
    )


async def insert_events(ipam: Ipam, events: list[tuple[int, str, datetime]]) -> None:
    """Writes (allocation id, action, at) events of ADDRESS as an older daemon would have."""

    def run(conn: sa.Connection) -> None:
        conn.execute(
            sa.insert(address_events),
            [
                {
                    "allocation_id": allocation_id,
                    "action": action,
                    "at": at,
                    "subnet": "net1",
                    "family": 4,
                    "address": ADDRESS_VALUE,
                    "network_key": "net1",
                    "namespace": "lab",
                    "pod": f"p{allocation_id}",
                    "interface": "eth1",
                    "reason": "api" if action == "release" else None,
                }
                for allocation_id, action, at in events
            ],
        )

    await ipam.database.write(run)


async def test_since_and_until_list_the_holdings_overlapping_the_window(rest: Rest) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)

    def hour(n: float) -> datetime:
        return base + timedelta(hours=n)

    await insert_events(
        rest.ipam,
        [
            (1, "release", hour(1)),  # held since before the history kept, until 01:00
            (2, "allocate", hour(2)),
            (2, "release", hour(3)),
            (3, "allocate", hour(4)),
            (3, "release", hour(6)),
            (4, "allocate", hour(7)),  # still held
        ],
    )

    async def listed(query: str) -> list[int]:
        return [span["allocationId"] for span in (await rest.ok("GET", f"/v1/ips/{ADDRESS}?{query}"))["history"]]

    def stamp(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    assert await listed("") == [1, 2, 3, 4]
    assert await listed(f"since={stamp(hour(3))}") == [2, 3, 4]
    assert await listed(f"since={stamp(hour(3) + timedelta(seconds=1))}") == [3, 4]
    assert await listed(f"until={stamp(hour(2))}") == [1]
    assert await listed(f"since={stamp(hour(5))}&until={stamp(hour(6))}") == [3]
    assert await listed(f"since={stamp(hour(6.5))}&until={stamp(hour(7))}") == []
    assert await listed("since=2026-01-01T09:00:00%2B02:00") == [4]
    orphan, *_ = (await rest.ok("GET", f"/v1/ips/{ADDRESS}?limit=1"))["history"]
    assert (orphan["from"], orphan["to"], orphan["pod"]) == (None, "2026-01-01T01:00:00Z", "p1")


async def test_pruning_deletes_the_oldest_events_in_batches_by_the_database_clock(rest: Rest) -> None:
    """Events stamped an hour ago go, batch by batch; one stamped a minute ago stays, and so
    does every event behind it (the leading run only), until its own time comes."""
    now = datetime.now(UTC)
    old, recent = now - timedelta(hours=1), now - timedelta(minutes=1)
    await insert_events(
        rest.ipam, [(n, "allocate", old) for n in range(1, 8)] + [(8, "allocate", recent), (9, "allocate", old)]
    )

    deleted = []
    while True:
        count, more = await rest.ipam.prune_history(retention_seconds=1800, batch=3)
        deleted.append(count)
        if not more:
            break
    assert deleted == [3, 3, 1]
    assert [event.allocation_id for event in await events_of_address(rest.ipam)] == [8, 9]
    assert await rest.ipam.prune_history(retention_seconds=30, batch=3) == (2, False)
    assert await count_events(rest.ipam) == 0


async def test_a_retention_change_ends_the_round_in_flight_and_zero_deletes_nothing(
    rest: Rest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Setting the retention to 0 (keep everything) while a round is deleting batches: the
    round ends after the batch in flight instead of going on with a cutoff of now, which
    would delete the whole history."""
    await insert_events(rest.ipam, [(n, "allocate", datetime.now(UTC) - timedelta(hours=1)) for n in range(1, 8)])
    assert await rest.ipam.prune_history(retention_seconds=0, batch=3) == (0, False)

    pruner = HistoryPruner(rest.ipam, retention=1800)
    pruner.batch = 3
    asked: list[float] = []
    prune_history = rest.ipam.prune_history

    async def prune_then_keep_everything(*, retention_seconds: float, batch: int) -> tuple[int, bool]:
        asked.append(retention_seconds)
        result = await prune_history(retention_seconds=retention_seconds, batch=batch)
        pruner.set_retention(0)  # as SIGHUP would, while this batch was in flight
        return result

    monkeypatch.setattr(rest.ipam, "prune_history", prune_then_keep_everything)
    assert await pruner.prune_once() == 3
    assert asked == [1800]
    assert [event.allocation_id for event in await events_of_address(rest.ipam)] == [4, 5, 6, 7]


async def migrate(url: str, direction: str, revision: str) -> None:
    from alembic import command

    from ipamd.store.engine import alembic_config, create_engine

    engine = create_engine(url)

    def run(connection: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        getattr(command, direction)(config, revision)

    try:
        async with engine.begin() as connection:
            await connection.run_sync(run)
    finally:
        await engine.dispose()


async def history_indexes(url: str) -> list[list[str | None]]:
    from ipamd.store.engine import create_engine

    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(lambda sync: sa.inspect(sync).get_indexes("address_events"))
    finally:
        await engine.dispose()
    return sorted(index["column_names"] for index in found)


async def test_migration_0008_keeps_the_history_both_ways(database_url: str) -> None:
    """Events written at 0007 are listed a page at a time after the upgrade, and are all
    still there, with the old index back, after a downgrade."""
    await migrate(database_url, "upgrade", "0007")
    database = open_database(database_url)
    ipam = Ipam(database, node="n1")
    try:
        moment = datetime(2026, 1, 1, tzinfo=UTC)
        await insert_events(ipam, [(n, action, moment) for n in range(1, 6) for action in ("allocate", "release")])
        await migrate(database_url, "upgrade", "head")
        assert await history_indexes(database_url) == [["address", "family", "allocation_id"]]
        first = await ipam.ip_info(ADDRESS, HistoryQuery(limit=3))
        rest_of_it = await ipam.ip_info(ADDRESS, HistoryQuery(limit=3, after=3))
        assert [span.allocation_id for span in first.spans + rest_of_it.spans] == [1, 2, 3, 4, 5]
        assert first.continue_token is not None and rest_of_it.continue_token is None
        await migrate(database_url, "downgrade", "0007")
        assert await history_indexes(database_url) == [["address", "id"]]
        assert await count_events(ipam) == 10
        await migrate(database_url, "upgrade", "head")
        assert await count_events(ipam) == 10
    finally:
        await database.dispose()
