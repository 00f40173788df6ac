"""Prometheus metrics of one daemon: counters fed by events, usage gauges refreshed in the background.

Every application gets its own ``CollectorRegistry`` (several daemons can live in one test
process). Counters move through ``Ipam.listeners`` and one thin middleware; the
allocation hot path pays a clock read, a dictionary look-up and a counter increment.
Subnet and pool usage is not tracked continuously: a background task runs five aggregate
queries at most every ``refresh_interval`` seconds and keeps the rendered text, so a
scrape costs the same with 5 subnets as with 5,000 (docs/metrics.md lists every name and
label). The task runs while somebody scrapes and pauses when nobody has for a while.

I/O: the refresh reads the database through ``Ipam.read()``; nothing else here does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import struct
import time
import weakref
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import prometheus_client
import sqlalchemy as sa
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Connection

from ipamd.core import intervals as iv
from ipamd.core.pool import canonical_pool, pool_capacity
from ipamd.core.subnet import SubnetSpec, canonical_subnet
from ipamd.errors import IpamError, Unavailable
from ipamd.service import Ipam
from ipamd.store.schema import allocations, free_ranges, pools, released, subnets

log = logging.getLogger("ipamd.metrics")

# The ``*_created`` companion series double the size of a scrape and no dashboard uses them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Exposition format 0.0.4: what every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The routes that allocate; their latency and outcome are measured.
ALLOCATING_ROUTES = {("POST", "/v1/cni/add"): "/v1/cni/add", ("POST", "/v1/allocations"): "/v1/allocations"}
# The CNI plugin's endpoint (/v1/cni/exec) answers failures inside a 200; it leaves the verb
# and the error (or None) here for the middleware, which counts an ADD as /v1/cni/add.
CNI_OUTCOME: web.RequestKey[tuple[str, IpamError | None]] = web.RequestKey("cni_outcome")

# Allocation latency is dominated by one database transaction: from well under a
# millisecond (SQLite, warm) to seconds (PostgreSQL under lock contention).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

FAMILY_LABEL = {4: "ipv4", 6: "ipv6"}

DEFAULT_REFRESH_SECONDS = 5.0
# Without a scrape for this many refresh intervals the usage task pauses; the next scrape
# then waits for one refresh (at most FIRST_REFRESH_TIMEOUT) instead of reading old numbers.
IDLE_INTERVALS = 20
FIRST_REFRESH_TIMEOUT = 10.0

# Every live Metrics, so that layers without an application at hand (the reconciler)
# can count into whichever daemon runs them.
_LIVE: weakref.WeakSet[Metrics] = weakref.WeakSet()

METRICS: web.AppKey[Metrics] = web.AppKey("metrics")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reconciler_released(count: int) -> None:
    """Counts addresses the Kubernetes reconciler released (in every daemon of this process)."""
    if count > 0:
        for metrics in list(_LIVE):
            metrics.reconciler_released.inc(count)


def reason_label(reason: str) -> str:
    """Returns a release reason as a label value: ``cni del`` becomes ``cni_del``.

    Reasons are fixed strings in the code, so the label stays low-cardinality; the cap
    guards against one ever carrying a name.
    """
    return re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")[:40] or "unknown"


@dataclass(frozen=True)
class SubnetUsage:
    subnet: str
    family: int
    capacity: int
    used: int
    available: int


@dataclass(frozen=True)
class PoolUsage:
    pool: str
    subnet: str
    capacity: int
    used: int


@dataclass(frozen=True)
class ClusterUsage:
    cluster: str
    subnet: str
    family: int
    used: int


@dataclass
class UsageSnapshot:
    subnets: list[SubnetUsage] = field(default_factory=list)
    pools: list[PoolUsage] = field(default_factory=list)
    clusters: list[ClusterUsage] = field(default_factory=list)


class UsageCollector(Collector):
    """Hands the last snapshot to the registry; the background refresh sets it."""

    def __init__(self) -> None:
        self.snapshot = UsageSnapshot()

    def collect(self) -> Any:
        capacity = GaugeMetricFamily(
            "ipamd_subnet_capacity_addresses",
            "Allocatable addresses of a subnet family (network and broadcast excluded).",
            labels=["subnet", "family"],
        )
        used = GaugeMetricFamily(
            "ipamd_subnet_used_addresses",
            "Addresses of a subnet family held by allocations.",
            labels=["subnet", "family"],
        )
        available = GaugeMetricFamily(
            "ipamd_subnet_available_addresses",
            "Addresses dynamic allocation can still hand out in a subnet family.",
            labels=["subnet", "family"],
        )
        for usage in self.snapshot.subnets:
            labels = [usage.subnet, FAMILY_LABEL[usage.family]]
            capacity.add_metric(labels, usage.capacity)
            used.add_metric(labels, usage.used)
            available.add_metric(labels, usage.available)
        pool_capacity_family = GaugeMetricFamily(
            "ipamd_pool_capacity_addresses", "Member addresses of a pool.", labels=["pool", "subnet"]
        )
        pool_used = GaugeMetricFamily(
            "ipamd_pool_used_addresses", "Members of a pool held by allocations.", labels=["pool", "subnet"]
        )
        for pool in self.snapshot.pools:
            pool_capacity_family.add_metric([pool.pool, pool.subnet], pool.capacity)
            pool_used.add_metric([pool.pool, pool.subnet], pool.used)
        cluster_used = GaugeMetricFamily(
            "ipamd_cluster_used_addresses",
            "Addresses of a subnet family held by one cluster's allocations.",
            labels=["cluster", "subnet", "family"],
        )
        for share in self.snapshot.clusters:
            cluster_used.add_metric([share.cluster, share.subnet, FAMILY_LABEL[share.family]], share.used)
        return [capacity, used, available, pool_capacity_family, pool_used, cluster_used]


class Metrics:
    """The counters, histogram and usage gauges of one application."""

    def __init__(self, ipam: Ipam, *, refresh_interval: float = DEFAULT_REFRESH_SECONDS) -> None:
        self.ipam = ipam
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        # ``cluster`` is the allocation's: this daemon's, except when an operator releases
        # another cluster's allocation by id.
        self.allocations = Counter(
            "ipamd_allocations",
            "New allocations (an idempotent repeat is not counted).",
            ["subnet", "cluster"],
            registry=registry,
        )
        self.releases = Counter(
            "ipamd_releases", "Released allocations.", ["subnet", "reason", "cluster"], registry=registry
        )
        self.requests = Counter(
            "ipamd_allocation_requests",
            "Allocation requests answered, by route and outcome (ok or the error code).",
            ["route", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "ipamd_allocation_duration_seconds",
            "Time to answer an allocation request, whatever the outcome.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.conflicts = Counter(
            "ipamd_address_conflicts",
            "Requests refused because an address is held, reserved or not assignable.",
            ["route"],
            registry=registry,
        )
        self.exhausted = Counter(
            "ipamd_exhausted",
            "Allocations refused because a subnet or pool had no free address.",
            ["subnet", "pool"],
            registry=registry,
        )
        self.reconciler_released = Counter(
            "ipamd_reconciler_released",
            "Allocations released by the Kubernetes reconciler (pod gone).",
            ["cluster"],
            registry=registry,
        ).labels(ipam.cluster)
        self.database_errors = Counter(
            "ipamd_database_errors",
            "Operations that failed because the database was unavailable.",
            registry=registry,
        )
        self.history_pruned = Counter(
            "ipamd_history_pruned_events",
            "Audit history events deleted because they were older than --history-retention.",
            registry=registry,
        )
        self.history_prune_failures = Counter(
            "ipamd_history_prune_failures",
            "History pruning batches that failed (the events are kept; the next round retries).",
            registry=registry,
        )
        # labels() takes a lock and builds a key on every call: the hot path keeps its children.
        self._latency_by_route = {route: self.latency.labels(route) for route in ALLOCATING_ROUTES.values()}
        self._ok_by_route = {route: self.requests.labels(route, "ok") for route in ALLOCATING_ROUTES.values()}
        self._allocated_by_subnet: dict[tuple[str, str], Any] = {}
        # The usage gauges live in a registry of their own: rendered by the background
        # refresh, never by a scrape.
        self.usage = UsageCollector()
        self.usage_registry = CollectorRegistry(auto_describe=True)
        self.usage_registry.register(self.usage)
        self.refresh_interval = refresh_interval
        self._usage_text: bytes | None = None
        self._usage_deflated = b""
        self._usage_ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._last_scrape = 0.0
        self._refresher: asyncio.Task[None] | None = None
        # Parsed specs by row id, each with the stored form it came from (ids of deleted rows
        # are reused by SQLite, so the id alone does not name one spec forever).
        self._subnet_specs: dict[int, tuple[Any, Any]] = {}
        self._pool_specs: dict[int, tuple[Any, Any]] = {}
        _LIVE.add(self)

    # ------------------------------------------------------------------ events

    def on_event(self, event: str, **data: Any) -> None:
        """The ``Ipam.listeners`` entry: counts allocations, releases and exhaustion."""
        if event == "allocated":
            allocation = data["allocation"]
            key = (allocation["subnet"], allocation["cluster"])
            counter = self._allocated_by_subnet.get(key)
            if counter is None:
                counter = self._allocated_by_subnet[key] = self.allocations.labels(*key)
            counter.inc()
        elif event == "released":
            allocation = data["allocation"]
            self.releases.labels(
                allocation["subnet"], reason_label(str(data.get("reason") or "")), allocation["cluster"]
            ).inc()
        elif event == "history_pruned":
            self.history_pruned.inc(data["count"])
        elif event == "history_prune_failed":
            self.history_prune_failures.inc()
        elif event == "exhausted":
            pool = data.get("pool") or ""
            for subnet in data.get("subnets") or [""]:
                self.exhausted.labels(subnet, pool).inc()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Times allocating routes and counts their outcome; counts conflicts and database errors anywhere."""
        route = ALLOCATING_ROUTES.get((request.method, request.path))
        start = time.perf_counter()
        outcome = "ok"
        try:
            response = await handler(request)
            verb, error = request.get(CNI_OUTCOME, (None, None))
            if verb == "ADD":
                route = "/v1/cni/add"
            if error is not None:
                outcome = self._count_error(request, error)
            return response
        except IpamError as e:
            outcome = self._count_error(request, e)
            raise
        except web.HTTPException as e:
            outcome = "http_error" if e.status >= 400 else "ok"
            raise
        except Exception:
            outcome = "internal"
            raise
        finally:
            if route is not None:
                self._latency_by_route[route].observe(time.perf_counter() - start)
                if outcome == "ok":
                    self._ok_by_route[route].inc()
                else:
                    self.requests.labels(route, outcome).inc()

    def _count_error(self, request: web.Request, error: IpamError) -> str:
        if error.code == "address_conflict":
            self.conflicts.labels(_route_of(request)).inc()
        elif isinstance(error, Unavailable):
            self.database_errors.inc()
        return error.code

    # ------------------------------------------------------------------ scrape

    async def scrape(self, request: web.Request) -> web.Response:
        """Renders the counters and appends the usage text the background task last rendered."""
        self._last_scrape = time.monotonic()
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.create_task(self._refresh_while_scraped(), name="ipamd-metrics-usage")
        if self._usage_text is None:
            # The first scrape (or the first after a pause) waits for one refresh.
            self._wake.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(FIRST_REFRESH_TIMEOUT):
                    await self._usage_ready.wait()
        counters = prometheus_client.generate_latest(self.registry)
        usage = self._usage_text or b""
        if "gzip" not in request.headers.get("Accept-Encoding", "") or not usage:
            return web.Response(body=counters + usage, headers={"Content-Type": CONTENT_TYPE})
        # Prometheus asks for gzip: the usage text was compressed when it was rendered.
        body = gzip_joined(counters, usage, self._usage_deflated)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"})

    async def _refresh_while_scraped(self) -> None:
        """Refreshes the usage text every ``refresh_interval`` while scrapes keep coming."""
        while True:
            while time.monotonic() - self._last_scrape < self.refresh_interval * IDLE_INTERVALS:
                # Cleared before the refresh: the scrape that woke this task is served by it,
                # not by a second refresh right after.
                self._wake.clear()
                await self.refresh_usage()
                # A timer, not a synchronisation: the next refresh is due then, or earlier
                # when a scrape finds no usage text.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.refresh_interval):
                        await self._wake.wait()
            # Nobody scrapes: stop reading the database until somebody does again.
            self._usage_text = None
            self._usage_ready.clear()
            await self._wake.wait()

    async def refresh_usage(self) -> None:
        """Reads usage once and renders its gauges; a failed read leaves the gauges out."""
        try:
            self.usage.snapshot = await self.read_usage()
        except Unavailable as e:
            # Counters are still worth serving while the database is away.
            self.database_errors.inc()
            self.usage.snapshot = UsageSnapshot()
            log.warning("metrics: usage gauges skipped: %s", e.message)
        except Exception:
            # Whatever breaks one refresh must not stop the next ones.
            log.exception("metrics: usage refresh failed")
            self.usage.snapshot = UsageSnapshot()
        # Rendering and compressing 5,000 subnets takes tens of milliseconds: off the event loop.
        self._usage_text, self._usage_deflated = await asyncio.to_thread(self._render_usage)
        self._usage_ready.set()

    def _render_usage(self) -> tuple[bytes, bytes]:
        text = prometheus_client.generate_latest(self.usage_registry)
        return text, deflate_part(text)

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None

    async def read_usage(self) -> UsageSnapshot:
        """Returns capacity and use of every subnet family and pool, and each cluster's use of
        each subnet family, in five aggregate queries."""

        def run(conn: Connection) -> tuple[Any, ...]:
            subnet_rows = (
                conn.execute(sa.select(subnets.c.id, subnets.c.name, subnets.c.revision, subnets.c.spec))
            ).all()
            held_rows = (
                conn.execute(
                    sa.select(
                        allocations.c.subnet_id,
                        allocations.c.pool_id,
                        allocations.c.cluster,
                        sa.func.count(allocations.c.address_v4),
                        sa.func.count(allocations.c.address_v6),
                    ).group_by(allocations.c.subnet_id, allocations.c.pool_id, allocations.c.cluster)
                )
            ).all()
            # Free space is a handful of range rows per subnet: summing them in Python is cheap.
            range_rows = (
                conn.execute(
                    sa.select(
                        free_ranges.c.subnet_id, free_ranges.c.family, free_ranges.c.first, free_ranges.c.last
                    ).where(free_ranges.c.pool_id.is_(None))
                )
            ).all()
            released_rows = (
                conn.execute(
                    sa.select(released.c.subnet_id, released.c.family, sa.func.count()).group_by(
                        released.c.subnet_id, released.c.family
                    )
                )
            ).all()
            pool_rows = (conn.execute(sa.select(pools.c.id, pools.c.name, pools.c.subnet_id, pools.c.ips))).all()
            return subnet_rows, held_rows, range_rows, released_rows, pool_rows

        subnet_rows, held_rows, range_rows, released_rows, pool_rows = await self.ipam.read(run)

        held: dict[tuple[int, int], int] = {}
        pool_held: dict[int, int] = {}
        cluster_held: dict[tuple[str, int, int], int] = {}
        for subnet_id, pool_id, cluster, v4, v6 in held_rows:
            for family, count in ((4, int(v4)), (6, int(v6))):
                held[(subnet_id, family)] = held.get((subnet_id, family), 0) + count
                cluster_held[(cluster, subnet_id, family)] = cluster_held.get((cluster, subnet_id, family), 0) + count
            if pool_id is not None:
                pool_held[pool_id] = pool_held.get(pool_id, 0) + int(v4) + int(v6)
        available: dict[tuple[int, int], int] = {}
        for subnet_id, family, first, last in range_rows:
            available[(subnet_id, family)] = available.get((subnet_id, family), 0) + int(last) - int(first) + 1
        for subnet_id, family, count in released_rows:
            available[(subnet_id, family)] = available.get((subnet_id, family), 0) + int(count)

        snapshot = UsageSnapshot()
        # Parsing a spec costs more than the queries: keep them, but only those still alive,
        # so the cache never outgrows the database.
        subnet_specs: dict[int, tuple[Any, Any]] = {}
        by_id: dict[int, SubnetSpec] = {}
        for row in subnet_rows:
            spec = self._cached(
                self._subnet_specs, subnet_specs, row.id, row.spec, functools.partial(canonical_subnet, row.spec)
            )
            if spec is None:
                continue
            by_id[row.id] = spec
            for layout in spec.families:
                key = (row.id, layout.version)
                snapshot.subnets.append(
                    SubnetUsage(
                        row.name, layout.version, iv.size([layout.allocatable]), held.get(key, 0), available.get(key, 0)
                    )
                )
        pool_specs: dict[int, tuple[Any, Any]] = {}
        for row in pool_rows:
            if row.subnet_id not in by_id:
                continue
            subnet_spec = by_id[row.subnet_id]
            pool_spec = self._cached(
                self._pool_specs,
                pool_specs,
                row.id,
                (row.name, row.ips, subnet_spec),
                functools.partial(
                    canonical_pool, {"name": row.name, "subnet": subnet_spec.name, "ips": row.ips}, subnet=subnet_spec
                ),
            )
            if pool_spec is not None:
                snapshot.pools.append(
                    PoolUsage(row.name, subnet_spec.name, pool_capacity(pool_spec), pool_held.get(row.id, 0))
                )
        names = {row.id: row.name for row in subnet_rows if row.id in by_id}
        snapshot.clusters = [
            ClusterUsage(cluster, names[subnet_id], family, count)
            for (cluster, subnet_id, family), count in sorted(cluster_held.items())
            if subnet_id in names and by_id[subnet_id].family(family) is not None
        ]
        self._subnet_specs, self._pool_specs = subnet_specs, pool_specs
        return snapshot

    @staticmethod
    def _cached(
        old: dict[int, tuple[Any, Any]],
        new: dict[int, tuple[Any, Any]],
        key: int,
        stored: Any,
        parse: Callable[[], Any],
    ) -> Any:
        """Returns the spec parsed from ``stored``, from ``old`` when it is still that one; keeps it in ``new``."""
        cached = old.get(key)
        if cached is not None and cached[0] == stored:
            spec = cached[1]
        else:
            try:
                spec = parse()
            except IpamError as e:
                # A stored spec this version no longer accepts must not break every scrape.
                log.warning("metrics: skipping row #%d: %s", key, e.message)
                return None
        new[key] = (stored, spec)
        return spec


def deflate_part(data: bytes) -> bytes:
    """Returns ``data`` as raw deflate blocks that refer to nothing before them and end
    byte-aligned without a final block, so that they can follow other such blocks."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


# A gzip member header (no name, no time) and the empty final deflate block.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
_FINAL_BLOCK = b"\x03\x00"


def gzip_joined(head: bytes, tail: bytes, tail_deflated: bytes) -> bytes:
    """Returns one gzip member holding ``head + tail``, compressing only ``head``.

    One member, not two concatenated: every gzip reader handles it. The checksum still
    reads ``tail`` (about a gigabyte a second); the compression of it is reused.
    """
    crc = zlib.crc32(tail, zlib.crc32(head))
    size = (len(head) + len(tail)) & 0xFFFFFFFF
    return _GZIP_HEADER + deflate_part(head) + tail_deflated + _FINAL_BLOCK + struct.pack("<II", crc, size)


def _route_of(request: web.Request) -> str:
    """Returns the route template (``/v1/subnets/{name}``), never the raw path: labels stay few."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def install(app: web.Application, ipam: Ipam, *, refresh_interval: float = DEFAULT_REFRESH_SECONDS) -> Metrics:
    """Adds ``/metrics``, the measuring middleware and the event listener to ``app``."""
    metrics = Metrics(ipam, refresh_interval=refresh_interval)

    async def stop(_: web.Application) -> None:
        await metrics.stop()

    app.on_cleanup.append(stop)
    app[METRICS] = metrics
    ipam.listeners.append(metrics.on_event)
    # Innermost: it sees the domain errors before the error middleware turns them into responses.
    app.middlewares.append(metrics.middleware)
    app.router.add_get("/metrics", metrics.scrape)
    return metrics
