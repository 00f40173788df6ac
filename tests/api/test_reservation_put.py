"""``PUT /v1/reservations/{id}`` and ``ipamctl apply`` of a changed reservation, on SQLite and
PostgreSQL: the reservation's MAC, owner and note are rewritten in place, in one transaction,
so its address is never free meanwhile (a DELETE then a POST left it free for a static ADD, a
pool member or the released queue, and missing when interrupted), and it keeps its id, origin
and creation time. Another subnet or address, an unknown id or a bad body are refused as every
other route refuses them, and change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from ipamd.api.app import create_app
from ipamd.api.auth import TokenTable
from ipamd.api.body import MAX_BODY_BYTES
from ipamd.ctl.client import Client
from ipamd.service import Ipam
from tests.ops.support import Ctl, reload_and_wait
from tests.support.daemon import Daemon
from tests.support.inprocess import Rest
from tests.support.inprocess import ipam as ipam
from tests.support.inprocess import rest as rest

ROUTER = "192.0.2.254"
LAB = {"name": "lab", "cidrBlock": "192.0.2.0/24,2001:db8:1::/64", "gateway": "192.0.2.1", "provider": "lab.default"}
OTHER = {"name": "other", "cidrBlock": "198.51.100.0/24", "provider": "other.default"}
RESERVATION = {
    "subnet": "lab",
    "address": ROUTER,
    "mac": "02:00:00:00:00:fe",
    "owner": "infra/router-a",
    "note": "lab router",
}


async def lab_with_router(rest: Rest) -> dict[str, Any]:
    """The lab subnet (and another) with the router's reservation; returns the reservation."""
    await rest.ok("POST", "/v1/subnets", LAB)
    await rest.ok("POST", "/v1/subnets", OTHER)
    status, created, _ = await rest.call("POST", "/v1/reservations", RESERVATION)
    assert status == 201, created
    return dict(created)


async def send_raw(rest: Rest, method: str, path: str, data: bytes) -> tuple[int, Any]:
    """A request whose body is sent as given (``Rest.call`` encodes JSON itself)."""
    async with rest.session.request(
        method, f"http://ipamd{path}", data=data, headers={"Content-Type": "application/json"}
    ) as reply:
        return reply.status, await reply.json()


async def reserved_count(rest: Rest) -> int:
    return int((await rest.ok("GET", "/v1/subnets/lab"))["usage"]["v4"]["reserved"])


# ---------------------------------------------------------------------------- the route


async def test_put_rewrites_the_fields_and_keeps_id_origin_and_creation(rest: Rest) -> None:
    created = await lab_with_router(rest)
    path = f"/v1/reservations/{created['id']}"

    # The whole body, as for a create; a field left out (note) becomes null, a MAC is canonical.
    status, answer, headers = await rest.call(
        "PUT", path, {"subnet": "lab", "address": ROUTER, "mac": "02-00-00-00-00-AA", "owner": "infra/router-b"}
    )
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "application/json")
    assert answer == {
        **created,
        "mac": "02:00:00:00:00:aa",
        "owner": "infra/router-b",
        "note": None,
    }
    # The same wire form as GET, and what GET now says.
    assert await rest.ok("GET", path) == answer

    # Subnet and address may be left out: they name the reservation.
    answer = await rest.ok("PUT", path, {"owner": "infra/router-c", "note": "spare"})
    assert answer == {**created, "mac": None, "owner": "infra/router-c", "note": "spare"}
    assert (answer["id"], answer["createdAt"], answer["origin"]) == (created["id"], created["createdAt"], "api")

    # Still the one reservation, still reserving its address.
    assert (await rest.ok("GET", "/v1/reservations"))["items"] == [answer]
    assert await reserved_count(rest) == 1


async def test_put_accepts_the_reservations_own_address_in_any_spelling(rest: Rest) -> None:
    await lab_with_router(rest)
    status, created, _ = await rest.call("POST", "/v1/reservations", {"subnet": "lab", "address": "2001:db8:1::fe"})
    assert status == 201, created
    answer = await rest.ok(
        "PUT", f"/v1/reservations/{created['id']}", {"subnet": "lab", "address": "2001:DB8:1:0:0:0:0:FE", "owner": "x"}
    )
    assert answer == {**created, "owner": "x"}
    assert answer["address"] == "2001:db8:1::fe"


@pytest.mark.parametrize(
    "body, field, says",
    [
        pytest.param({**RESERVATION, "subnet": "other"}, "subnet", "is in subnet lab", id="another-subnet"),
        pytest.param({**RESERVATION, "subnet": "nosuch"}, "subnet", "is in subnet lab", id="unknown-subnet"),
        pytest.param({**RESERVATION, "address": "192.0.2.253"}, "address", f"reserves {ROUTER}", id="another-address"),
        pytest.param({"address": "192.0.2.253", "owner": "x"}, "address", f"reserves {ROUTER}", id="address-alone"),
        pytest.param({"address": "2001:db8:1::fe"}, "address", f"reserves {ROUTER}", id="another-family"),
        pytest.param({**RESERVATION, "address": "192.0.2.999"}, "address", "", id="not-an-address"),
    ],
)
async def test_put_refuses_another_subnet_or_address_and_changes_nothing(
    rest: Rest, body: dict[str, Any], field: str, says: str
) -> None:
    created = await lab_with_router(rest)
    path = f"/v1/reservations/{created['id']}"
    status, answer, _ = await rest.call("PUT", path, {**body, "owner": "intruder/pod"})
    assert status == 400, answer
    error = answer["error"]
    assert (error["code"], error["details"], error["cniCode"]) == ("invalid_input", {"field": field}, 7)
    assert error["message"].startswith(f"{field}: ")
    assert says in error["message"]
    if says:
        # Says what to do instead.
        assert "delete it and create another" in error["message"]
    assert await rest.ok("GET", path) == created
    assert (await rest.ok("GET", "/v1/reservations"))["items"] == [created]
    assert await reserved_count(rest) == 1


async def test_put_of_an_unknown_id_is_not_found_and_a_bad_id_refused(rest: Rest) -> None:
    created = await lab_with_router(rest)
    status, answer, _ = await rest.call("PUT", f"/v1/reservations/{created['id'] + 1}", RESERVATION)
    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert answer["error"]["message"] == f"reservation {created['id'] + 1} not found"
    # Deleted: its id is unknown now, and a PUT does not bring it back.
    await rest.ok("DELETE", f"/v1/reservations/{created['id']}")
    status, answer, _ = await rest.call("PUT", f"/v1/reservations/{created['id']}", RESERVATION)
    assert (status, answer["error"]["code"]) == (404, "not_found")
    assert (await rest.ok("GET", "/v1/reservations"))["items"] == []

    for bad in ("abc", str(2**31)):
        status, answer, _ = await rest.call("PUT", f"/v1/reservations/{bad}", RESERVATION)
        assert (status, answer["error"]["code"], answer["error"]["details"]) == (400, "invalid_input", {"field": "id"})


@pytest.mark.parametrize(
    "data, says",
    [
        pytest.param(b'{"owner": "x",', "the body is not valid JSON", id="malformed"),
        pytest.param(b"", "the request needs a JSON object body", id="empty"),
        pytest.param(b'["owner"]', "expected a JSON object, got list", id="not-an-object"),
        pytest.param(b'{"owner": "x", "vlan": 3}', "vlan", id="unknown-field"),
        pytest.param(b'{"owner": 5}', "owner: expected a string", id="wrong-type"),
        pytest.param(b'{"mac": "not-a-mac"}', "mac: ", id="bad-mac"),
    ],
)
async def test_put_refuses_a_bad_body_and_changes_nothing(rest: Rest, data: bytes, says: str) -> None:
    created = await lab_with_router(rest)
    path = f"/v1/reservations/{created['id']}"
    status, answer = await send_raw(rest, "PUT", path, data)
    assert (status, answer["error"]["code"]) == (400, "invalid_input"), answer
    assert says in answer["error"]["message"]
    assert await rest.ok("GET", path) == created


async def test_put_over_the_body_limit_is_refused(rest: Rest) -> None:
    created = await lab_with_router(rest)
    path = f"/v1/reservations/{created['id']}"
    status, answer = await send_raw(rest, "PUT", path, b'{"note": "' + b"x" * MAX_BODY_BYTES + b'"}')
    assert (status, answer["error"]["code"]) == (413, "payload_too_large")
    assert await rest.ok("GET", path) == created


ADMIN_TOKEN = "admin-token-for-reservation-put-1"
READONLY_TOKEN = "readonly-token-for-reservation-1"


@asynccontextmanager
async def tcp_listener(ipam: Ipam) -> AsyncIterator[str]:
    """The application with an admin and a read-only token on a TCP port; yields its URL."""
    tokens = TokenTable((("admin", ADMIN_TOKEN.encode()), ("readonly", READONLY_TOKEN.encode())))
    runner = web.AppRunner(create_app(ipam, tokens=tokens))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def test_put_on_the_tcp_listener_needs_an_admin_token(rest: Rest, ipam: Ipam) -> None:
    created = await lab_with_router(rest)
    path = f"/v1/reservations/{created['id']}"
    async with tcp_listener(ipam) as url, aiohttp.ClientSession() as session:

        async def put(token: str | None) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with session.put(f"{url}{path}", json={"owner": "x"}, headers=headers) as reply:
                return reply.status, await reply.json()

        status, answer = await put(None)
        assert (status, answer["error"]["code"]) == (401, "unauthorized")
        status, answer = await put(READONLY_TOKEN)
        assert (status, answer["error"]["code"]) == (403, "forbidden")
        assert await rest.ok("GET", path) == created
        assert await put(ADMIN_TOKEN) == (200, {**created, "mac": None, "owner": "x", "note": None})


# ---------------------------------------------------------------------------- ipamctl apply

MANIFEST = """\
apiVersion: ipamd.io/v1
kind: Subnet
metadata: {name: lab}
spec: {cidrBlock: 192.0.2.0/24, gateway: 192.0.2.1, provider: lab.default}
---
apiVersion: ipamd.io/v1
kind: Reservation
spec: {subnet: lab, address: 192.0.2.254, mac: "02:00:00:00:00:fe", owner: infra/router-a, note: lab router}
"""


@pytest.fixture
def ctl(daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> Ctl:
    return Ctl(capsys, ["--socket", daemon.socket])


class Requests:
    """Every request ipamctl sends (method, path). Once ``guarding``, after each one a pod the
    reservation does not name asks for the router's address, and must be refused: the
    address is never free between two requests of ipamctl."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.guarding = False
        self.taken: list[tuple[tuple[str, str], Any]] = []

    def writes(self) -> list[tuple[str, str]]:
        return [(method, path) for method, path in self.sent if method != "GET"]


@pytest.fixture
def requests(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> Iterator[Requests]:
    seen = Requests()
    exchange = Client.exchange

    def recording(self: Client, method: str, path: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return exchange(self, method, path, *args, **kwargs)
        finally:
            seen.sent.append((method, path))
            if seen.guarding:
                grab = daemon.client.post(
                    "/v1/allocations",
                    {"subnet": "lab", "owner": {"namespace": "apps", "pod": "web-1"}, "address": ROUTER},
                )
                if grab.status != 409:
                    seen.taken.append(((method, path), grab.body))

    monkeypatch.setattr(Client, "exchange", recording)
    yield seen
    assert seen.taken == [], f"the router's address was taken after a request of ipamctl apply: {seen.taken}"


def the_router(daemon: Daemon) -> dict[str, Any]:
    [reservation] = [r for r in daemon.client.get("/v1/reservations").body["items"] if r["address"] == ROUTER]
    return dict(reservation)


def test_apply_rewrites_a_changed_reservation_with_one_put(
    daemon: Daemon, ctl: Ctl, tmp_path: Path, requests: Requests
) -> None:
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(MANIFEST)
    assert ctl.ok("apply", "-f", str(manifest)).out.splitlines() == [
        "subnet/lab created",
        "reservation/lab/192.0.2.254 created",
    ]
    before = the_router(daemon)

    manifest.write_text(MANIFEST.replace("infra/router-a", "infra/router-b").replace(", note: lab router", ""))
    requests.sent.clear()
    requests.guarding = True
    run = ctl.ok("apply", "-f", str(manifest))
    requests.guarding = False
    assert (run.out.splitlines(), run.err) == (
        ["subnet/lab unchanged", "reservation/lab/192.0.2.254 configured"],
        "",
    )
    # One PUT, no DELETE and POST; and (the fixture checks) the address never free meanwhile.
    assert requests.writes() == [("PUT", f"/v1/reservations/{before['id']}")]
    assert requests.sent[-1] == ("PUT", f"/v1/reservations/{before['id']}")

    after = the_router(daemon)
    assert after == {**before, "owner": "infra/router-b", "note": None}
    assert len(daemon.client.get("/v1/reservations").body["items"]) == 1
    # The new owner may take its address; the old one no longer may.
    old = daemon.client.post(
        "/v1/allocations", {"subnet": "lab", "owner": {"namespace": "infra", "pod": "router-a"}, "address": ROUTER}
    )
    assert old.status == 409, old.body
    new = daemon.client.post(
        "/v1/allocations", {"subnet": "lab", "owner": {"namespace": "infra", "pod": "router-b"}, "address": ROUTER}
    )
    assert new.status == 201, new.body

    # Applied again: nothing to do.
    requests.sent.clear()
    assert ctl.ok("apply", "-f", str(manifest)).out.splitlines() == [
        "subnet/lab unchanged",
        "reservation/lab/192.0.2.254 unchanged",
    ]
    assert requests.writes() == []


def test_apply_of_another_address_creates_that_reservation_and_keeps_the_old(
    daemon: Daemon, ctl: Ctl, tmp_path: Path
) -> None:
    manifest = tmp_path / "lab.yaml"
    manifest.write_text(MANIFEST)
    ctl.ok("apply", "-f", str(manifest))
    before = the_router(daemon)
    manifest.write_text(MANIFEST.replace("192.0.2.254", "192.0.2.253"))
    assert ctl.ok("apply", "-f", str(manifest)).out.splitlines() == [
        "subnet/lab unchanged",
        "reservation/lab/192.0.2.253 created",
    ]
    held = {r["address"]: r for r in daemon.client.get("/v1/reservations").body["items"]}
    assert sorted(held) == ["192.0.2.253", ROUTER]
    assert held[ROUTER] == before


def test_apply_over_the_config_files_reservation_keeps_it_the_files(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    declared = yaml.safe_load_all(MANIFEST)
    subnet, reservation = (document["spec"] for document in declared)
    config = tmp_path / "ipamd.yaml"
    config.write_text(yaml.safe_dump({"subnets": [{"name": "lab", **subnet}], "reservations": [reservation]}))
    daemon = Daemon(tmp_path, database_url, extra_args=("--config", str(config))).start()
    try:
        before = the_router(daemon)
        assert before["origin"] == "config"
        manifest = tmp_path / "router.yaml"
        manifest.write_text(MANIFEST.split("---\n")[1].replace("infra/router-a", "infra/router-b"))
        run = Ctl(capsys, ["--socket", daemon.socket]).ok("apply", "-f", str(manifest))
        assert run.out.splitlines() == ["reservation/lab/192.0.2.254 configured"]
        assert run.err.splitlines() == [
            "warning: reservation/lab/192.0.2.254 is declared in the daemon's --config file;"
            " its next reload undoes this change"
        ]
        assert the_router(daemon) == {**before, "owner": "infra/router-b"}
        # What the warning promises: the reload edits it back, in place again.
        assert "reservation of 192.0.2.254 in subnet lab updated" in reload_and_wait(daemon)
        assert the_router(daemon) == before
    finally:
        daemon.stop()


def test_the_daemon_process_serves_the_put(daemon: Daemon) -> None:
    """The daemon process (not only the in-process application) serves the route."""
    assert daemon.client.post("/v1/subnets", LAB).status == 201
    created = daemon.client.post("/v1/reservations", RESERVATION).body
    reply = daemon.client.request("PUT", f"/v1/reservations/{created['id']}", {**RESERVATION, "note": None})
    assert (reply.status, reply.body) == (200, {**created, "note": None})


# Re-exported fixtures (tests/support/inprocess.py): listed so linters see them used.
__all__ = ["ipam", "rest"]
