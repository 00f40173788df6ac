"""CNI GC is scoped to its node and to CNI-made attachments (issue 17).

Two daemons, ``n1`` and ``n2``, share one PostgreSQL database, as the daemons of two nodes
do. Each gets attachments through the built plugin; a REST client allocates in the same
network. A CNI 1.1.0 GC sent to n1 with only n1's live attachment in
``cni.dev/valid-attachments`` releases n1's stale attachment and nothing else.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from shim_harness import run_shim

from tests.support.daemon import Daemon


@pytest.fixture
def two_nodes(postgres_url: str) -> Iterator[tuple[Daemon, Daemon]]:
    workdir = Path(tempfile.mkdtemp(prefix="ipamd-gc-", dir="/tmp"))
    daemons = [Daemon(workdir, postgres_url, name=node, extra_args=("--node-name", node)) for node in ("n1", "n2")]
    try:
        for daemon in daemons:
            daemon.start()
        yield daemons[0], daemons[1]
    finally:
        for daemon in daemons:
            daemon.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def config(daemon: Daemon, version: str = "1.0.0", **extra: object) -> dict[str, object]:
    return {"cniVersion": version, "name": "gc-net", "ipam": {"type": "ipamd", "server_socket": daemon.socket, "provider": "gc-net"}, **extra}


def test_gc_on_one_node_leaves_other_nodes_and_rest_allocations(two_nodes: tuple[Daemon, Daemon]):
    n1, n2 = two_nodes
    reply = n1.client.post("/v1/subnets", {"name": "gc-net", "cidrBlock": "198.18.70.0/24", "provider": "gc-net"})
    assert reply.status == 201, reply.body
    for daemon, container in ((n1, "live1"), (n1, "stale1"), (n2, "live2")):
        done = run_shim("ADD", config(daemon), container_id=container, cni_args=f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={container}")
        assert done.returncode == 0, done
    rest = n1.client.post("/v1/allocations", {"subnet": "gc-net", "owner": {"namespace": "lab", "pod": "router-a"}})
    assert rest.status == 201, rest.body

    def holders() -> set[str]:
        return {item["owner"]["pod"] for item in n2.client.get("/v1/allocations?subnet=gc-net").body["items"]}

    assert holders() == {"live1", "stale1", "live2", "router-a"}
    gc = config(n1, "1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "live1", "ifname": "net1"}]})
    done = run_shim("GC", gc, container_id=None, ifname=None, netns=None)
    assert (done.returncode, done.stdout) == (0, ""), done
    assert holders() == {"live1", "live2", "router-a"}

    # n2's own GC, with an empty list, collects only n2's attachment.
    done = run_shim("GC", config(n2, "1.1.0", **{"cni.dev/valid-attachments": []}), container_id=None, ifname=None, netns=None)
    assert done.returncode == 0, done
    assert holders() == {"live1", "router-a"}
