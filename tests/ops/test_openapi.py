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
from typing import Any

import pytest

from tests.ops.support import ADMIN_TOKEN, TcpDaemon, tcp_get
from tests.support.daemon import Daemon

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
    from collections.abc import Callable

    from ipamd.api.app import create_app
    from ipamd.api.openapi import document
    from ipamd.core.model import Event

    class NoService:
        listeners: list[Callable[[Event], None]] = []
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


def _valid(document: dict[str, Any], schema: str, body: object) -> bool:
    """Whether ``body`` is valid against one of the document's schemas."""
    from jsonschema import Draft202012Validator

    root = {"$ref": f"#/components/schemas/{schema}", "components": document["components"]}
    return Draft202012Validator(root).is_valid(body)


def _parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    (found,) = [p for p in document["paths"][path][method]["parameters"] if p["name"] == name]
    return found["schema"]


def test_ids_up_to_the_documented_maximum_are_looked_up_and_larger_ones_refused(daemon: Daemon) -> None:
    document = daemon.client.get("/openapi.json").body
    for path in ("/v1/allocations/{id}", "/v1/reservations/{id}"):
        for method in ("get", "delete"):
            schema = _parameter(document, path, method, "id")
            highest = schema["maximum"]
            assert highest == 2**31 - 1  # the id columns are 32-bit
            ask = getattr(daemon.client, method)
            # Valid by the document: looked up (on PostgreSQL too, which refuses to compare
            # an int4 column with a larger number), and not there.
            assert ask(path.replace("{id}", str(highest))).error_code == "not_found", (path, method)
            assert ask(path.replace("{id}", str(schema["minimum"]))).error_code == "not_found", (path, method)
            reply = ask(path.replace("{id}", str(highest + 1)))
            assert (reply.status, reply.error_code) == (400, "invalid_input"), (path, method)
            assert str(highest) in reply.message


def test_owner_names_at_the_documented_lengths_are_accepted_and_longer_ones_refused(daemon: Daemon) -> None:
    document = daemon.client.get("/openapi.json").body
    assert daemon.client.post("/v1/subnets", {"name": "net1", "cidrBlock": "192.0.2.0/24"}).status == 201
    owner = document["components"]["schemas"]["AllocationInput"]["properties"]["owner"]["properties"]
    longest = {
        "namespace": "n" * owner["namespace"]["maxLength"],
        # A DNS subdomain: labels of at most 63 characters joined by '.'.
        "pod": ".".join(["p" * 63] * 4)[: owner["pod"]["maxLength"]].rstrip("."),
        "interface": "i" * owner["interface"]["maxLength"],
    }
    assert len(longest["pod"]) == owner["pod"]["maxLength"]
    body = {"subnet": "net1", "owner": longest}
    assert _valid(document, "AllocationInput", body)
    reply = daemon.client.post("/v1/allocations", body)
    assert reply.status == 201, reply.body
    assert reply.body["owner"]["namespace"] == longest["namespace"]
    for key, value in longest.items():
        too_long = {"subnet": "net1", "owner": {**longest, key: value + "x"}}
        assert not _valid(document, "AllocationInput", too_long), key
        reply = daemon.client.post("/v1/allocations", too_long)
        assert (reply.status, reply.error_code) == (400, "invalid_input"), (key, reply.body)


def test_priority_and_reservation_texts_at_the_documented_bounds(daemon: Daemon) -> None:
    document = daemon.client.get("/openapi.json").body
    priority = document["components"]["schemas"]["SubnetInput"]["properties"]["priority"]
    for index, value in enumerate((priority["minimum"], priority["maximum"])):
        body = {"name": f"edge{index}", "cidrBlock": f"198.51.100.{index * 16}/28", "priority": value}
        assert _valid(document, "SubnetInput", body)
        reply = daemon.client.post("/v1/subnets", body)
        assert reply.status == 201, reply.body
        assert reply.body["priority"] == value
    for value in (priority["minimum"] - 1, priority["maximum"] + 1):
        body = {"name": "beyond", "cidrBlock": "198.51.100.64/28", "priority": value}
        assert not _valid(document, "SubnetInput", body)
        assert daemon.client.post("/v1/subnets", body).error_code == "invalid_input", value

    note = document["components"]["schemas"]["ReservationInput"]["properties"]["note"]["anyOf"][0]
    body = {"subnet": "edge0", "address": "198.51.100.5", "note": "n" * note["maxLength"]}
    assert _valid(document, "ReservationInput", body)
    assert daemon.client.post("/v1/reservations", body).status == 201
    body = {"subnet": "edge0", "address": "198.51.100.6", "note": "n" * (note["maxLength"] + 1)}
    assert not _valid(document, "ReservationInput", body)
    assert daemon.client.post("/v1/reservations", body).error_code == "invalid_input"


def test_a_name_the_document_refuses_is_refused(daemon: Daemon) -> None:
    document = daemon.client.get("/openapi.json").body
    # The pattern's '$' ends the input in ECMA-262, which JSON Schema follows; Python's '$'
    # (and so the jsonschema package) would also let a trailing newline through.
    assert document["components"]["schemas"]["SubnetInput"]["properties"]["name"]["pattern"].endswith("$")
    body = {"name": "net1\n", "cidrBlock": "192.0.2.0/24"}
    assert daemon.client.post("/v1/subnets", body).error_code == "invalid_input"
    body = {"name": "n" * 253, "cidrBlock": "192.0.2.0/24"}
    assert _valid(document, "SubnetInput", body)
    assert daemon.client.post("/v1/subnets", body).status == 201


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cni_gc_requires_valid_attachments_as_documented(daemon: Daemon) -> None:
    document = daemon.client.get("/openapi.json").body
    ipam = {"type": "ipamd", "provider": "gc.default"}
    without = {"network": "gc", "ipam": ipam}
    assert not _valid(document, "CniGcRequest", without)
    assert daemon.client.post("/v1/cni/gc", without).error_code == "invalid_input"
    assert not _valid(document, "CniGcRequest", {**without, "validAttachments": None})
    assert daemon.client.post("/v1/cni/gc", {**without, "validAttachments": None}).error_code == "invalid_input"
    empty = {**without, "validAttachments": []}
    assert _valid(document, "CniGcRequest", empty)
    reply = daemon.client.post("/v1/cni/gc", empty)
    assert (reply.status, reply.body) == (200, {"released": 0})
