"""docs/metrics.md is the contract: a live scrape has exactly its names, types and labels.

Also pins what the counters count after a known sequence of requests, and that one
daemon process can host several applications, each with its own registry.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.ops.support import TcpDaemon, tcp_get
from tests.support.daemon import REPO, Daemon, serve_refused
from tests.support.results import allocation_of
from tests.support.waiting import wait_for

DOC = REPO / "docs" / "metrics.md"


@dataclass(frozen=True)
class Documented:
    type: str
    labels: frozenset[str]


def documented_metrics(path: Path = DOC) -> dict[str, Documented]:
    """Returns the metrics table of docs/metrics.md by full sample name."""
    metrics = {}
    for line in path.read_text().splitlines():
        match = re.match(r"^\| `(ipamd_[a-z0-9_]+)` \| (counter|gauge|histogram) \|([^|]*)\|", line)
        if match:
            name, kind, labels = match.groups()
            metrics[name] = Documented(kind, frozenset(re.findall(r"`([a-z_]+)`", labels)))
    return metrics


def scraped_metrics(text: str) -> dict[str, Documented]:
    """Returns the metric families of a scrape, by the name the documentation uses."""
    metrics = {}
    for family in text_string_to_metric_families(text):
        name = f"{family.name}_total" if family.type == "counter" else family.name
        labels = frozenset(label for sample in family.samples for label in sample.labels if label != "le")
        metrics[name] = Documented(family.type, labels)
    return metrics


def exercise(daemon: Daemon) -> None:
    """Requests that make every labelled series appear: allocate, release, conflict, exhaust."""
    client = daemon.client
    assert (
        client.post("/v1/subnets", {"name": "tiny", "cidrBlock": "203.0.113.0/30", "provider": "tiny.default"}).status
        == 201
    )
    assert client.post("/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.0/24,2001:db8:1::/64"}).status == 201
    assert client.post("/v1/pools", {"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.51"]}).status == 201
    add = {
        "containerId": "c1",
        "ifName": "net1",
        "network": "tiny",
        "podNamespace": "ns",
        "podName": "a",
        "ipam": {"provider": "tiny.default"},
    }
    assert client.post("/v1/cni/add", add).status == 200
    assert client.post("/v1/cni/add", {**add, "containerId": "c2", "podName": "b"}).error_code == "exhausted"
    assert client.post("/v1/cni/del", add).body == {"released": 1}
    assert (
        client.post("/v1/allocations", {"subnet": "net1", "owner": {"pod": "x"}, "address": "192.0.2.20"}).status == 201
    )
    conflict = client.post("/v1/allocations", {"subnet": "net1", "owner": {"pod": "y"}, "address": "192.0.2.20"})
    assert conflict.error_code == "address_conflict"


def test_scrape_matches_the_documented_table(daemon: Daemon) -> None:
    exercise(daemon)
    reply = daemon.client.get("/metrics")
    assert reply.status == 200
    documented = documented_metrics()
    assert len(documented) >= 13, "the table in docs/metrics.md was not found"
    assert scraped_metrics(reply.raw.decode()) == documented


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


def test_counters_and_gauges_count_what_happened(daemon: Daemon) -> None:
    exercise(daemon)
    text = daemon.client.get("/metrics").raw.decode()
    assert sample(text, "ipamd_allocations_total", subnet="tiny", cluster="default") == 1
    assert sample(text, "ipamd_allocations_total", subnet="net1", cluster="default") == 1
    assert sample(text, "ipamd_releases_total", subnet="tiny", reason="cni_del", cluster="default") == 1
    assert sample(text, "ipamd_allocation_requests_total", route="/v1/cni/add", outcome="ok") == 1
    assert sample(text, "ipamd_allocation_requests_total", route="/v1/cni/add", outcome="exhausted") == 1
    assert sample(text, "ipamd_allocation_requests_total", route="/v1/allocations", outcome="address_conflict") == 1
    assert sample(text, "ipamd_allocation_duration_seconds_count", route="/v1/cni/add") == 2
    assert sample(text, "ipamd_address_conflicts_total", route="/v1/allocations") == 1
    assert sample(text, "ipamd_exhausted_total", subnet="tiny", pool="") == 1
    assert sample(text, "ipamd_reconciler_released_total", cluster="default") == 0
    assert sample(text, "ipamd_database_errors_total") == 0
    # /30: two allocatable addresses, one of them the gateway; the released one is free again.
    assert sample(text, "ipamd_subnet_capacity_addresses", subnet="tiny", family="ipv4") == 2
    assert sample(text, "ipamd_subnet_used_addresses", subnet="tiny", family="ipv4") == 0
    assert sample(text, "ipamd_subnet_available_addresses", subnet="tiny", family="ipv4") == 1
    # net1: 254 allocatable; 1 gateway, 2 pooled, 1 held leave 250.
    assert sample(text, "ipamd_subnet_used_addresses", subnet="net1", family="ipv4") == 1
    assert sample(text, "ipamd_subnet_available_addresses", subnet="net1", family="ipv4") == 250
    assert sample(text, "ipamd_subnet_capacity_addresses", subnet="net1", family="ipv6") == float(
        2**64 - 1
    )  # a float sample: Prometheus has no big integers
    assert sample(text, "ipamd_pool_capacity_addresses", pool="db", subnet="net1") == 2
    assert sample(text, "ipamd_pool_used_addresses", pool="db", subnet="net1") == 0
    assert sample(text, "ipamd_cluster_used_addresses", cluster="default", subnet="net1", family="ipv4") == 1
    assert sample(text, "ipamd_cluster_used_addresses", cluster="default", subnet="net1", family="ipv6") == 1
    # Released: the cluster holds nothing in the subnet, and has no series for it.
    assert sample(text, "ipamd_cluster_used_addresses", cluster="default", subnet="tiny", family="ipv4") is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_metrics_served_on_tcp_without_a_token(tcp_daemon: TcpDaemon) -> None:
    status, body, content_type = tcp_get(tcp_daemon.port, "/metrics")
    assert (status, content_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "ipamd_allocations_total" in body.decode()


def test_each_application_has_its_own_registry() -> None:
    from collections.abc import Callable

    from ipamd.api.app import create_app
    from ipamd.api.metrics import METRICS
    from ipamd.core.model import Allocated, Event
    from ipamd.core.usage import UsageReport

    class NoService:
        def __init__(self) -> None:
            self.listeners: list[Callable[[Event], None]] = []
            self.cluster = "east"

        async def usage(self) -> UsageReport:
            return UsageReport()

    first, second = create_app(NoService()), create_app(NoService())  # type: ignore[arg-type]
    allocation = allocation_of(subnet="a", cluster="east")
    first[METRICS].on_event(Allocated(allocation))
    # The reconciler's callback reaches the application it was given, and no other.
    second[METRICS].reconciler_released(3)
    labels = {"subnet": "a", "cluster": "east"}
    assert first[METRICS].registry.get_sample_value("ipamd_allocations_total", labels) == 1
    assert second[METRICS].registry.get_sample_value("ipamd_allocations_total", labels) is None
    released = {"cluster": "east"}
    assert first[METRICS].registry.get_sample_value("ipamd_reconciler_released_total", released) == 0
    assert second[METRICS].registry.get_sample_value("ipamd_reconciler_released_total", released) == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_subnets_of_inline_ranges_have_usage_gauges(daemon: Daemon) -> None:
    # A Whereabouts-style range: the daemon makes the subnet, whose spec carries ``overlap``.
    add = {
        "containerId": "c1",
        "ifName": "net1",
        "network": "wb",
        "podNamespace": "ns",
        "podName": "a",
        "ipam": {"type": "whereabouts", "range": "203.0.113.0/28"},
    }
    assert daemon.client.post("/v1/cni/add", add).status == 200
    text = daemon.client.get("/metrics").raw.decode()
    capacity = {
        found.labels["subnet"]: found.value
        for family in text_string_to_metric_families(text)
        for found in family.samples
        if found.name == "ipamd_subnet_capacity_addresses"
    }
    assert list(capacity.values()) == [14], text
    (subnet,) = capacity
    assert sample(text, "ipamd_subnet_used_addresses", subnet=subnet, family="ipv4") == 1
    assert sample(text, "ipamd_subnet_available_addresses", subnet=subnet, family="ipv4") == 13
    assert sample(text, "ipamd_cluster_used_addresses", cluster="default", subnet=subnet, family="ipv4") == 1


def test_grafana_dashboard_uses_documented_metrics_only() -> None:
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    expressions += [variable["definition"] for variable in dashboard["templating"]["list"]]
    used = {name for expression in expressions for name in re.findall(r"\bipamd_[a-z0-9_]+", expression)}
    documented = documented_metrics()
    histograms = {
        f"{name}_{suffix}"
        for name, metric in documented.items()
        if metric.type == "histogram"
        for suffix in ("bucket", "sum", "count")
    }
    assert used <= set(documented) | histograms
    # Every documented family has a panel.
    assert {name for name in documented} <= {name.removesuffix("_bucket") for name in used}


def _used(daemon: Daemon, subnet: str) -> float | None:
    return sample(
        daemon.client.get("/metrics").raw.decode(), "ipamd_subnet_used_addresses", subnet=subnet, family="ipv4"
    )


def _add(daemon: Daemon, pod: str) -> None:
    body = {
        "containerId": pod,
        "ifName": "net1",
        "network": "n",
        "podNamespace": "ns",
        "podName": pod,
        "ipam": {"provider": "m.ns"},
    }
    assert daemon.client.post("/v1/cni/add", body).status == 200


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_scrape_serves_cached_usage_and_counters_live(tmp_path: Path, database_url: str) -> None:
    # An interval no test outlives: whatever a scrape shows of usage was read before it.
    daemon = Daemon(tmp_path, database_url, extra_args=("--metrics-interval", "3600")).start()
    try:
        assert (
            daemon.client.post("/v1/subnets", {"name": "m1", "cidrBlock": "198.51.100.0/24", "provider": "m.ns"}).status
            == 201
        )
        assert _used(daemon, "m1") == 0  # the first scrape waits for the first refresh
        _add(daemon, "a")
        text = daemon.client.get("/metrics").raw.decode()
        assert sample(text, "ipamd_subnet_used_addresses", subnet="m1", family="ipv4") == 0  # cached, not recomputed
        assert sample(text, "ipamd_allocations_total", subnet="m1", cluster="default") == 1  # counters are live
        # What Prometheus asks for: gzip, one member, the same text.
        compressed = daemon.client.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        assert compressed.raw[:2] == b"\x1f\x8b"
        assert gzip.decompress(compressed.raw).decode() == daemon.client.get("/metrics").raw.decode()
        assert (
            zlib.decompressobj(wbits=31)
            .decompress(compressed.raw)
            .decode()
            .endswith(text.partition("ipamd_subnet_capacity")[2])
        )
    finally:
        daemon.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_usage_is_refreshed_in_the_background(tmp_path: Path, database_url: str) -> None:
    daemon = Daemon(tmp_path, database_url, extra_args=("--metrics-interval", "0.2")).start()
    try:
        assert (
            daemon.client.post("/v1/subnets", {"name": "m1", "cidrBlock": "198.51.100.0/24", "provider": "m.ns"}).status
            == 201
        )
        assert _used(daemon, "m1") == 0
        _add(daemon, "a")
        _add(daemon, "b")
        wait_for(lambda: _used(daemon, "m1") == 2, timeout=30, what="the usage gauges to be refreshed")
    finally:
        daemon.stop()


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "99999"])
def test_metrics_interval_is_checked(tmp_path: Path, interval: str) -> None:

    result = serve_refused(str(tmp_path / "s.sock"), f"sqlite:///{tmp_path / 'x.db'}", "--metrics-interval", interval)
    assert result.returncode == 2 and "--metrics-interval" in result.stderr and "0.1 to 3600" in result.stderr, (
        result.stderr
    )
