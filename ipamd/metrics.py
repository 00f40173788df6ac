"""Prometheus metrics of one daemon: counters fed by events, usage gauges refreshed in the background.

One ``Metrics`` per application, with its own ``CollectorRegistry`` (several daemons can
live in one test process); nothing here is shared between them. Counters move through
``Ipam.listeners``, the reconciler's callback and the HTTP middleware
(``ipamd.api.metrics``); the allocation hot path pays a clock read, a dictionary look-up
and a counter increment. Subnet and pool usage is not tracked continuously: a background
task asks the service for its usage report (``Ipam.usage``, five aggregate queries) at most
every ``refresh_interval`` seconds and keeps the rendered text, so a scrape costs the same
with 5 subnets as with 5,000 (docs/metrics.md lists every name and label). The task runs
while somebody scrapes and pauses when nobody has for a while.

I/O: none of its own; the usage report is read through the callable it is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ipamd.core.model import Allocated, Event, ExhaustedSpace, HistoryPruned, HistoryPruneFailed, Released
from ipamd.core.usage import UsageReport
from ipamd.errors import IpamError, Unavailable

log = logging.getLogger("ipamd.metrics")

# The ``*_created`` companion series double the size of a scrape and no dashboard uses them.
# A switch of the library, not state of ours: every registry renders the same way.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

# Exposition format 0.0.4: what every Prometheus version scrapes.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The ``route`` label values of the allocating routes, whose latency and outcome are measured.
ALLOCATION_ROUTES = ("/v1/cni/add", "/v1/allocations")

# Allocation latency is dominated by one database transaction: from well under a
# millisecond (SQLite, warm) to seconds (PostgreSQL under lock contention).
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

FAMILY_LABEL = {4: "ipv4", 6: "ipv6"}

DEFAULT_REFRESH_SECONDS = 5.0
# Without a scrape for this many refresh intervals the usage task pauses; the next scrape
# then waits for one refresh (at most FIRST_REFRESH_TIMEOUT) instead of reading old numbers.
IDLE_INTERVALS = 20
FIRST_REFRESH_TIMEOUT = 10.0

UsageSource = Callable[[], Awaitable[UsageReport]]


def reason_label(reason: str) -> str:
    """Returns a release reason as a label value: ``cni del`` becomes ``cni_del``.

    Reasons are fixed strings in the code, so the label stays low-cardinality; the cap
    guards against one ever carrying a name.
    """
    return re.sub(r"[^a-z0-9]+", "_", reason.lower()).strip("_")[:40] or "unknown"


class UsageCollector(Collector):
    """Hands the last usage report to the registry; the background refresh sets it."""

    def __init__(self) -> None:
        self.report = UsageReport()

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
        for usage in self.report.subnets:
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
        for pool in self.report.pools:
            pool_capacity_family.add_metric([pool.pool, pool.subnet], pool.capacity)
            pool_used.add_metric([pool.pool, pool.subnet], pool.used)
        cluster_used = GaugeMetricFamily(
            "ipamd_cluster_used_addresses",
            "Addresses of a subnet family held by one cluster's allocations.",
            labels=["cluster", "subnet", "family"],
        )
        for share in self.report.clusters:
            cluster_used.add_metric([share.cluster, share.subnet, FAMILY_LABEL[share.family]], share.used)
        return [capacity, used, available, pool_capacity_family, pool_used, cluster_used]


class Metrics:
    """The counters, histogram and usage gauges of one application."""

    def __init__(
        self, *, cluster: str, read_usage: UsageSource, refresh_interval: float = DEFAULT_REFRESH_SECONDS
    ) -> None:
        self.read_usage = read_usage
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
        self._reconciler_released = Counter(
            "ipamd_reconciler_released",
            "Allocations released by the Kubernetes reconciler (pod gone).",
            ["cluster"],
            registry=registry,
        ).labels(cluster)
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
        self._latency_by_route = {route: self.latency.labels(route) for route in ALLOCATION_ROUTES}
        self._ok_by_route = {route: self.requests.labels(route, "ok") for route in ALLOCATION_ROUTES}
        self._allocated_by_subnet: dict[tuple[str, str], Counter] = {}
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

    # ------------------------------------------------------------------ events

    def on_event(self, event: Event) -> None:
        """The ``Ipam.listeners`` entry: counts allocations, releases, exhaustion and pruning."""
        match event:
            case Allocated(allocation):
                key = (allocation.subnet, allocation.cluster)
                counter = self._allocated_by_subnet.get(key)
                if counter is None:
                    counter = self._allocated_by_subnet[key] = self.allocations.labels(*key)
                counter.inc()
            case Released(allocation, reason):
                self.releases.labels(allocation.subnet, reason_label(reason), allocation.cluster).inc()
            case ExhaustedSpace(subnets, pool):
                for subnet in subnets or ("",):
                    self.exhausted.labels(subnet, pool or "").inc()
            case HistoryPruned(count):
                self.history_pruned.inc(count)
            case HistoryPruneFailed():
                self.history_prune_failures.inc()

    def reconciler_released(self, count: int) -> None:
        """The Kubernetes reconciler's callback: counts the allocations one pass released."""
        if count > 0:
            self._reconciler_released.inc(count)

    def request_answered(self, route: str, outcome: str, seconds: float) -> None:
        """Counts one answered allocation request (``route`` one of ALLOCATION_ROUTES)."""
        self._latency_by_route[route].observe(seconds)
        if outcome == "ok":
            self._ok_by_route[route].inc()
        else:
            self.requests.labels(route, outcome).inc()

    def request_failed(self, error: IpamError, route_template: str) -> str:
        """Counts a conflict or a database error of any request; returns its outcome label."""
        if error.code == "address_conflict":
            self.conflicts.labels(route_template).inc()
        elif isinstance(error, Unavailable):
            self.database_errors.inc()
        return error.code

    # ------------------------------------------------------------------ scrape

    async def exposition(self) -> tuple[bytes, bytes, bytes]:
        """Returns the counters rendered now, and the usage text the background task last
        rendered with its deflated form (empty while the database cannot be read)."""
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
        return counters, self._usage_text or b"", self._usage_deflated

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
            self.usage.report = await self.read_usage()
        except Unavailable as e:
            # Counters are still worth serving while the database is away.
            self.database_errors.inc()
            self.usage.report = UsageReport()
            log.warning("metrics: usage gauges skipped: %s", e.message)
        except Exception:
            # Whatever breaks one refresh must not stop the next ones.
            log.exception("metrics: usage refresh failed")
            self.usage.report = UsageReport()
        # Rendering and compressing 5,000 subnets takes tens of milliseconds: off the event loop.
        self._usage_text, self._usage_deflated = await asyncio.to_thread(self._render_usage)
        self._usage_ready.set()

    def _render_usage(self) -> tuple[bytes, bytes]:
        text = prometheus_client.generate_latest(self.usage_registry)
        return text, deflate_part(text)

    async def stop(self) -> None:
        """Ends the background refresh, if it runs."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None


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
