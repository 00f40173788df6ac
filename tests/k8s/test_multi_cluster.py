"""Several Kubernetes clusters on one address space (issue 16).

Two clusters, ``east`` and ``west``, each with its own API double and its own daemons in
Kubernetes mode (``--cluster-name``), share one real PostgreSQL database and one subnet, as
clusters sharing an L2 segment do. Their pods have the same namespaces and names, and
their nodes the same names: only the cluster tells the attachments apart.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.k8s.conftest import NET1, PROVIDER, Cluster
from tests.kube_double import KubeApiDouble, ThreadedKubeApi
from tests.support.daemon import REPO, Daemon
from tests.support.waiting import wait_for


@dataclass
class Group:
    """One cluster: its API double and a daemon per node, all with ``--cluster-name name``."""

    name: str
    kube: ThreadedKubeApi
    nodes: dict[str, Cluster] = field(default_factory=dict)

    @property
    def first(self) -> Cluster:
        return next(iter(self.nodes.values()))

    def pod(self, name: str, *, node: str = "n1", namespace: str = "prod") -> dict[str, Any]:
        return self.first.pod(name, node=node, namespace=namespace)

    def add(self, pod: dict[str, Any]) -> dict[str, Any]:
        reply = self.nodes[pod["spec"]["nodeName"]].add(pod)
        assert reply.status == 200, reply.body
        return dict(reply.body)

    def allocations(self, *, pod: str | None = None) -> list[dict[str, Any]]:
        """This cluster's allocations, as REST shows them with ``?cluster=``."""
        reply = self.first.daemon.client.get(f"/v1/allocations?cluster={self.name}" + (f"&pod={pod}" if pod else ""))
        assert reply.status == 200, reply.body
        return list(reply.body["items"])

    def addresses(self, pod: str) -> list[str]:
        return [a["address"] for body in self.allocations(pod=pod) for a in body["addresses"]]

    def log(self) -> str:
        return "".join(cluster.daemon.log() for cluster in self.nodes.values())

    def reconcile_passes(self) -> int:
        return len(re.findall(r"reconcile pass \d+:", self.log()))


@pytest.fixture
def make_groups(postgres_url: str) -> Iterator[Callable[..., tuple[Group, Group]]]:
    """Returns a factory of the two clusters, each with a daemon on each of ``nodes``."""
    workdir = Path(tempfile.mkdtemp(prefix="ipamd-mc-", dir="/tmp"))
    doubles: list[ThreadedKubeApi] = []
    daemons: list[Daemon] = []

    def start(*, nodes: tuple[str, ...] = ("n1",)) -> tuple[Group, Group]:
        groups = []
        for name in ("east", "west"):
            kube = KubeApiDouble.start_in_thread()
            doubles.append(kube)
            kubeconfig = kube.write_kubeconfig(workdir / f"{name}.kubeconfig")
            group = Group(name, kube)
            for node in nodes:
                daemon = Daemon(
                    workdir,
                    postgres_url,
                    name=f"{name}-{node}",
                    extra_args=(
                        "--kubernetes",
                        "--kubeconfig",
                        str(kubeconfig),
                        "--node-name",
                        node,
                        "--cluster-name",
                        name,
                        "--reconcile-interval",
                        "1",
                        "--release-grace",
                        "1",
                        "--log-level",
                        "debug",
                    ),
                )
                daemons.append(daemon)
                group.nodes[node] = Cluster(kube.api, daemon.start())
            groups.append(group)
        reply = groups[0].first.daemon.client.post("/v1/subnets", NET1)
        assert reply.status == 201, reply.body
        return groups[0], groups[1]

    try:
        yield start
    finally:
        for daemon in daemons:
            daemon.stop()
        for kube in doubles:
            kube.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_same_pod_in_two_clusters_gets_two_addresses_of_the_shared_subnet(
    make_groups: Callable[..., tuple[Group, Group]],
):
    east, west = make_groups()
    east_body = east.add(east.pod("db-0"))
    west_body = west.add(west.pod("db-0"))
    east_address, west_address = east_body["ips"][0]["address"], west_body["ips"][0]["address"]
    assert east_address != west_address
    assert east_body["subnet"] == west_body["subnet"] == "net1"
    # An ADD again (a sandbox restart) is the same attachment of the same cluster.
    assert (
        east.first.add(east.first.api.get_pod("db-0", "prod"), new_sandbox=True).body["ips"][0]["address"]
        == east_address
    )
    # Each API server's pod carries its own cluster's result.
    assert east.first.annotations("db-0", "prod")[f"{PROVIDER}.kubernetes.io/ip_address"] == east_address.split("/")[0]
    assert west.first.annotations("db-0", "prod")[f"{PROVIDER}.kubernetes.io/ip_address"] == west_address.split("/")[0]

    # REST shows every cluster, and filters by one.
    everything = east.first.daemon.client.get("/v1/allocations?pod=db-0").body["items"]
    assert sorted((body["cluster"], body["addresses"][0]["address"]) for body in everything) == [
        ("east", east_address.split("/")[0]),
        ("west", west_address.split("/")[0]),
    ]
    assert [body["cluster"] for body in west.allocations()] == ["west"]
    bad = east.first.daemon.client.get("/v1/allocations?cluster=East_1")
    assert (bad.status, bad.error_code) == (400, "invalid_input")
    assert "'East_1' is not a valid cluster name" in bad.message
    # Who holds the address says which cluster; so does its history.
    holder = west.first.daemon.client.get(f"/v1/ips/{east_address.split('/')[0]}").body
    assert [h["cluster"] for h in holder["holders"]] == ["east"]
    assert [span["cluster"] for span in holder["history"]] == ["east"]
    # A static request for the other cluster's address names the holder with its cluster.
    taken = west.first.daemon.client.post(
        "/v1/allocations", {"subnet": "net1", "owner": {"pod": "lab"}, "address": east_address.split("/")[0]}
    )
    assert taken.status == 409, taken.body
    assert f"is held by prod/db-0 net1 (cluster east, network {PROVIDER}" in taken.message

    # Each daemon counts its own cluster's allocations; the usage gauges show every cluster's share.
    scraped = text_string_to_metric_families(east.first.daemon.client.get("/metrics").raw.decode())
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for family in scraped for s in family.samples}
    assert samples[("ipamd_allocations_total", (("cluster", "east"), ("subnet", "net1")))] == 1
    assert ("ipamd_allocations_total", (("cluster", "west"), ("subnet", "net1"))) not in samples
    for cluster in ("east", "west"):
        assert (
            samples[("ipamd_cluster_used_addresses", (("cluster", cluster), ("family", "ipv4"), ("subnet", "net1")))]
            == 1
        )

    assert "cluster east registered in this database" in east.log()
    assert "cluster west joins a database shared with cluster(s) east" in west.log()


def test_each_reconciler_releases_only_its_own_clusters_deleted_pods(make_groups: Callable[..., tuple[Group, Group]]):
    east, west = make_groups()
    # "only-east" exists in east alone: west's API server has never heard of it.
    east.add(east.pod("only-east"))
    for group in (east, west):
        group.add(group.pod("web-1"))
        group.add(group.pod("web-2"))
    passes = west.reconcile_passes()
    wait_for(lambda: west.reconcile_passes() >= passes + 2, what="two reconcile passes in west after the ADDs")
    assert east.addresses("only-east")
    # West's passes count west's two allocations only: east's are not west's to judge.
    counts = [int(count) for count in re.findall(r"reconcile pass \d+: (\d+) pod allocation", west.log())]
    assert counts[-1] == 2 and max(counts) == 2, counts

    # West also holds prod/web-2 through REST: no pod UID, so only the cluster tells east's
    # pod watch that it is not east's web-2 (west's CNI allocation differs by UID as well).
    rest = west.first.daemon.client.post(
        "/v1/allocations", {"subnet": "net1", "owner": {"namespace": "prod", "pod": "web-2", "interface": "rest0"}}
    )
    assert rest.status == 201, rest.body

    # East's pod watch sees its web-2 deleted: east's web-2 is released, west's are not.
    east.kube.api.delete_pod("web-2", "prod", grace_period_seconds=0)
    wait_for(lambda: not east.allocations(pod="web-2"), what="east's pod watch releasing east's web-2")
    assert sorted(body["owner"]["interface"] for body in west.allocations(pod="web-2")) == ["net1", "rest0"]

    # web-1 is deleted in east while east's daemon is down: only east's reconciler can see it.
    east.first.daemon.stop()
    east.kube.api.delete_pod("web-1", "prod", grace_period_seconds=0)
    east.first.daemon.start()
    wait_for(lambda: not east.allocations(pod="web-1"), what="east's reconciler releasing east's web-1")
    assert "reconcile: released allocation" in east.first.daemon.log()
    assert west.addresses("web-1") and east.addresses("only-east")
    assert "reconcile: released allocation" not in west.log()


def test_cni_gc_in_one_cluster_leaves_the_other_untouched(make_groups: Callable[..., tuple[Group, Group]]):
    east, west = make_groups()
    for group in (east, west):
        for name in ("stale", "live"):
            group.add(group.pod(name))
    # Node n1 of east collects what its runtime no longer runs; west also has a node n1.
    reply = east.first.daemon.client.post(
        "/v1/cni/gc",
        {
            "network": "macvlan",
            "ipam": {"type": "ipamd", "provider": PROVIDER},
            "validAttachments": [{"containerId": "live-sandbox-1", "ifName": "net1"}],
        },
    )
    assert reply.status == 200, reply.body
    assert reply.body == {"released": 1}
    assert [body["owner"]["pod"] for body in east.allocations()] == ["live"]
    assert sorted(body["owner"]["pod"] for body in west.allocations()) == ["live", "stale"]


def test_concurrent_bursts_from_both_clusters_leave_no_duplicate(make_groups: Callable[..., tuple[Group, Group]]):
    east, west = make_groups(nodes=("n1", "n2"))
    per_daemon = 12
    pods = {
        (group.name, node): [group.pod(f"burst-{node}-{i}", node=node) for i in range(per_daemon)]
        for group in (east, west)
        for node in ("n1", "n2")
    }
    failures: list[Any] = []
    start = threading.Barrier(4)

    def burst(group: Group, node: str) -> None:
        start.wait()
        for pod in pods[(group.name, node)]:
            reply = group.nodes[node].add(pod)
            if reply.status != 200:
                failures.append(reply.body)

    threads = [threading.Thread(target=burst, args=(group, node)) for group in (east, west) for node in ("n1", "n2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    held = [
        (body["cluster"], a["address"])
        for group in (east, west)
        for body in group.allocations()
        for a in body["addresses"]
    ]
    assert len(held) == 4 * per_daemon
    assert len({address for _, address in held}) == len(held), "an address is held twice"
    assert sorted({cluster for cluster, _ in held}) == ["east", "west"]
    # Every name exists in both clusters, each with its own address.
    for group in (east, west):
        assert len(group.allocations()) == 2 * per_daemon


def _serve(workdir: Path, url: str, cluster: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ipamd",
            "serve",
            "--socket",
            str(workdir / f"{cluster}.sock"),
            "--database-url",
            url,
            "--cluster-name",
            cluster,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )


def test_sqlite_refuses_a_second_cluster_name_at_start(tmp_path: Path):
    workdir = Path(tempfile.mkdtemp(prefix="ipamd-mc-", dir="/tmp"))
    url = f"sqlite:///{tmp_path / 'ipamd.db'}"
    try:
        first = Daemon(workdir, url, name="east", extra_args=("--cluster-name", "east")).start()
        assert first.client.post("/v1/subnets", NET1).status == 201
        assert (
            first.client.post(
                "/v1/allocations", {"subnet": "net1", "owner": {"namespace": "prod", "pod": "db-0"}}
            ).status
            == 201
        )
        first.stop()

        refused = _serve(workdir, url, "west")
        output, _ = refused.communicate(timeout=60)
        assert refused.returncode == 2, output
        assert (
            "ipamd: this SQLite database holds the allocations of cluster east, and SQLite serves one cluster: "
            "start with --cluster-name east, or share addresses between clusters through PostgreSQL"
        ) in output.decode()
        # Nothing changed: east starts again and still holds its allocation.
        first.start()
        assert [body["cluster"] for body in first.client.get("/v1/allocations").body["items"]] == ["east"]
        assert first.client.delete("/v1/allocations/1").status == 200
        first.stop()

        # A name that holds nothing (a mistake since corrected) does not keep the file.
        renamed = Daemon(workdir, url, name="west", extra_args=("--cluster-name", "west")).start()
        renamed.stop()
        assert "cluster east held no allocation in this SQLite database: cluster west replaces it" in renamed.log()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def test_a_cluster_name_that_is_not_a_dns_label_is_refused(tmp_path: Path):
    refused = _serve(tmp_path, f"sqlite:///{tmp_path / 'ipamd.db'}", "Prod East")
    output, _ = refused.communicate(timeout=60)
    assert refused.returncode == 2, output
    assert "'Prod East' is not a valid cluster name: expected a DNS label" in output.decode()
    assert not (tmp_path / "ipamd.db").exists()


def test_without_migrating_the_daemon_registers_its_cluster_once_the_schema_is_upgraded(tmp_path: Path):
    """--no-migrate: the schema may still be at an older revision (a Job upgrades it). The
    daemon serves meanwhile, not ready and allocating nothing, and registers its cluster
    once the schema is the newest."""
    import sqlalchemy as sa
    from alembic import command

    from ipamd.store.engine import alembic_config

    workdir = Path(tempfile.mkdtemp(prefix="ipamd-mc-", dir="/tmp"))
    url = f"sqlite:///{tmp_path / 'ipamd.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.upgrade(config, "0005")
    engine.dispose()
    daemon = Daemon(workdir, url, name="late", extra_args=("--no-migrate", "--cluster-name", "east")).start(wait=False)
    try:
        wait_for(
            lambda: "cannot register cluster east yet (database schema at 0005, expected" in daemon.log(),
            what="the wait for the schema",
        )
        wait_for(lambda: Path(daemon.socket).exists(), what="the socket")
        assert daemon.client.get("/healthz").status == 200
        assert daemon.client.get("/readyz").status == 503
        # (Nothing is allocated before the upgrade: this code's subnets and pools need
        # columns that schema 0005 lacks.)
        upgraded = subprocess.run(
            [sys.executable, "-m", "ipamd", "db", "upgrade", "--database-url", url],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
        assert upgraded.returncode == 0, upgraded.stderr
        daemon.wait_ready(timeout=60)
        assert "cluster east registered in this database" in daemon.log()
        assert daemon.client.post("/v1/subnets", NET1).status == 201
        made = daemon.client.post("/v1/allocations", {"subnet": "net1", "owner": {"pod": "early"}})
        assert (made.status, made.body["cluster"]) == (201, "east")
    finally:
        daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)
