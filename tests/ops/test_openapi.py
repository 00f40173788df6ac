"""/openapi.json stays true: schemathesis drives every operation of a live daemon over TCP.

Requests are generated from the document (valid and invalid ones, and sequences that
follow its links); every answer must be documented (status code, content type, body
schema) and none may be a server error.

schemathesis runs as its command line: its pytest plugin does not load under pytest 9.
``SCHEMATHESIS_SEED`` and ``SCHEMATHESIS_MAX_EXAMPLES`` widen or replay a run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.ops.support import ADMIN_TOKEN, TcpDaemon, tcp_get

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
SEED = os.environ.get("SCHEMATHESIS_SEED", "20261121")
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25")


def seed_objects(tcp_daemon: TcpDaemon) -> None:
    """Objects for generated requests to find: random names rarely hit one."""
    client = tcp_daemon.daemon.client
    assert (
        client.post(
            "/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.0/24,2001:db8:1::/64", "provider": "p"}
        ).status
        == 201
    )
    assert client.post("/v1/pools", {"name": "db", "subnet": "net1", "ips": ["192.0.2.50..192.0.2.59"]}).status == 201
    assert client.post("/v1/reservations", {"subnet": "net1", "address": "192.0.2.7"}).status == 201
    assert client.post("/v1/allocations", {"subnet": "net1", "owner": {"pod": "a"}}).status == 201


def test_every_answer_matches_the_document(tcp_daemon: TcpDaemon, tmp_path: Path) -> None:
    seed_objects(tcp_daemon)
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{tcp_daemon.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--warnings",
        "off",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, (
        f"schemathesis found problems:\n{result.stdout[-20000:]}\n{result.stderr[-4000:]}\n{tcp_daemon.daemon.log()[-8000:]}"
    )
    assert "Traceback" not in tcp_daemon.daemon.log()


def test_document_is_served_without_a_token(tcp_daemon: TcpDaemon) -> None:
    status, body, content_type = tcp_get(tcp_daemon.port, "/openapi.json")
    assert (status, content_type) == (200, "application/json")
    document = json.loads(body)
    assert document["openapi"] == "3.1.0"
    assert {"/healthz", "/readyz", "/metrics", "/openapi.json", "/v1/cni/add", "/v1/ips/{address}"} <= set(
        document["paths"]
    )


def test_every_route_is_documented() -> None:
    """Each route the application serves appears in the document with the same methods."""
    from ipamd.api.app import create_app
    from ipamd.api.openapi import document

    class NoService:
        listeners: list[object] = []
        cluster = "default"

        async def usage(self) -> None:
            raise AssertionError("not read: nothing scrapes")

    app = create_app(NoService())  # type: ignore[arg-type]
    served = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "OPTIONS")
    }
    documented = {(path, method) for path, operations in document()["paths"].items() for method in operations}
    assert served == documented
