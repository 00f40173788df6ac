"""Property-based fuzzing of every endpoint of a live daemon (hypothesis).

Random JSON shapes, wrong types, huge and non-finite numbers, invalid UTF-8, random path
segments and query strings. Whatever arrives, the answer is a 2xx or a 4xx with the error
body (never a 5xx), the daemon stays up, and a refused request changes nothing: the
database rows (every table, audit included) are compared before and after each one.
"""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipamd.api.allocations import ALLOCATE_FIELDS
from ipamd.api.cni import ADD_FIELDS, CHECK_FIELDS, GC_FIELDS
from ipamd.core.nad import HOST_LOCAL_KEYS, WHEREABOUTS_KEYS
from ipamd.core.placement import RULE_FIELDS
from ipamd.core.pool import POOL_FIELDS, RESERVATION_FIELDS
from ipamd.core.subnet import SUBNET_FIELDS
from tests.cluster.clusterkit import postgres_snapshot, socket_dir, sqlite_snapshot
from tests.support.client import Reply, UnixClient
from tests.support.daemon import Daemon

MiB = 1024 * 1024

# ----------------------------------------------------------------------------- daemon

SEED_SUBNETS = (
    {"name": "net1", "cidrBlock": "192.0.2.0/24", "provider": "p1.ns", "excludeIps": ["192.0.2.2..192.0.2.9"]},
    {"name": "dual", "cidrBlock": "198.51.100.0/24,2001:db8:9::/64", "provider": "dual.ns"},
)
SEED_POOL = {"name": "pool1", "subnet": "net1", "ips": ["192.0.2.200..192.0.2.209"]}
SEED_RESERVATION = {"subnet": "net1", "address": "192.0.2.77", "owner": "lab/router", "note": "seed"}


class Target:
    """The daemon under test and a way to snapshot its whole database."""

    def __init__(self, daemon: Daemon, snapshot: Callable[[], Any]) -> None:
        self.daemon = daemon
        self.client = UnixClient(daemon.socket, timeout=30)
        self.snapshot = snapshot

    def seed(self) -> None:
        """(Re)creates the objects fuzzed requests aim at, if a fuzzed DELETE removed them."""
        existing = {s["name"]: s for s in self.client.get("/v1/subnets").body["items"]}
        for spec in SEED_SUBNETS:
            current = existing.get(spec["name"])
            if current is not None and (
                any(current.get(key) != value for key, value in spec.items())
                or any(current.get(key) is not None for key in RULE_FIELDS if key not in spec)
            ):
                # A fuzzed PATCH that was valid changed it (or gave it placement rules the
                # seed's ADDs would not meet): start that subnet over.
                assert self.client.delete(f"/v1/subnets/{spec['name']}?force=true").status == 200
                current = None
            if current is None:
                assert self.client.post("/v1/subnets", spec).status == 201
        if self.client.get("/v1/pools/pool1").status == 404:
            assert self.client.post("/v1/pools", SEED_POOL).status == 201
        if not any(r["address"] == "192.0.2.77" for r in self.client.get("/v1/reservations").body["items"]):
            assert self.client.post("/v1/reservations", SEED_RESERVATION).status == 201
        for i in range(3):
            for provider in ("p1.ns", "dual.ns"):
                body = {
                    "containerId": f"seed{i}",
                    "ifName": "net1",
                    "network": "n",
                    "podNamespace": "seed",
                    "podName": f"seed{i}",
                    "ipam": {"type": "ipamd", "provider": provider},
                }
                assert self.client.post("/v1/cni/add", body).status == 200

    def ids(self, kind: str) -> list[int]:
        return [item["id"] for item in self.client.get(f"/v1/{kind}").body["items"]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with socket_dir() as sockets:
        if request.param == "sqlite":
            path = tmp_path_factory.mktemp("fuzz") / "ipamd.db"
            daemon = Daemon(sockets, f"sqlite:///{path}").start()
            snapshot: Callable[[], Any] = lambda: sqlite_snapshot(path)  # noqa: E731
        else:
            from tests.support.postgres import create_database, drop_database

            admin = request.getfixturevalue("postgres_admin_url")
            url = create_database(admin)
            daemon = Daemon(sockets, url).start()
            snapshot = lambda: asyncio.run(postgres_snapshot(url))  # noqa: E731
        target = Target(daemon, snapshot)
        target.seed()
        try:
            yield target
        finally:
            assert daemon.process is not None and daemon.process.poll() is None, "the daemon died during fuzzing"
            log = daemon.log()
            daemon.stop()
            if request.param != "sqlite":
                drop_database(admin, url)
        # A 4xx is the client's fault: nothing about it belongs in the log as a traceback.
        assert "Traceback" not in log, log[-3000:]


def examples(target: Target, sqlite: int = 120, postgres: int = 30) -> Callable[[Any], Any]:
    """Hypothesis settings: fewer examples on PostgreSQL, where a snapshot costs more."""
    return settings(
        max_examples=sqlite if "sqlite" in target.daemon.database_url else postgres,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
        database=None,
    )


# ----------------------------------------------------------------------------- strategies

HUGE_INTS = st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**40, -(10**40), 2**128 + 1])
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", " ", "0", "-1", "1e400", "null", "\u0000", "\ud800", "x" * 300, "é" * 70]),
)
JSON = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
ADDRESSES = st.sampled_from(
    [
        "192.0.2.1",
        "192.0.2.0",
        "192.0.2.255",
        "192.0.2.10",
        "192.0.2.77",
        "192.0.2.201",
        "192.0.2.300",
        "192.0.2.5/24",
        "198.51.100.7",
        "2001:db8:9::1",
        "2001:db8:9::ffff:ffff:ffff:ffff",
        "2001:db8:9::/64",
        "203.0.113.5",
        "::ffff:192.0.2.1",
        "fe80::1%eth0",
        "198.51.100.7,2001:db8:9::7",
        "192.0.2.2..192.0.2.9",
        "192.0.2.9..192.0.2.2",
        "1.2.3",
        "",
        "x",
    ]
)
CIDRS = st.sampled_from(
    [
        "192.0.2.0/24",
        "192.0.2.0/25",
        "192.0.2.128/25",
        "203.0.113.0/24",
        "203.0.113.0/31",
        "203.0.113.7/32",
        "203.0.113.0/30",
        "198.18.0.0/15",
        "198.18.0.0/16",
        "2001:db8:a::/64",
        "2001:db8:a::/127",
        "2001:db8::/32",
        "2001:db8:b::/128",
        "203.0.113.0/24,2001:db8:c::/64",
        "203.0.113.0/24,198.18.0.0/16",
        "203.0.113.5/24",
        "203.0.113.0/²4",
        "203.0.113.0/24\u0000",
        "192.0.2.0/33",
        "2001:db8::/129",
        "garbage",
    ]
)
NAMES = st.one_of(
    st.sampled_from(["net1", "dual", "pool1", "new1", "p1.ns", "dual.ns", "seed0", "a" * 254]), st.text(max_size=20)
)


def plausible(field: str) -> st.SearchStrategy[Any]:
    """Values shaped like what a field expects, mixed with anything at all."""
    by_field: dict[str, st.SearchStrategy[Any]] = {
        "cidrBlock": CIDRS,
        "range": CIDRS,
        "subnet": st.one_of(NAMES, CIDRS),
        "gateway": ADDRESSES,
        "address": ADDRESSES,
        "rangeStart": ADDRESSES,
        "rangeEnd": ADDRESSES,
        "range_start": ADDRESSES,
        "range_end": ADDRESSES,
        "excludeIps": st.lists(st.one_of(ADDRESSES, CIDRS), max_size=4),
        "exclude": st.lists(st.one_of(ADDRESSES, CIDRS), max_size=3),
        "ips": st.lists(ADDRESSES, max_size=3),
        "name": NAMES,
        "provider": NAMES,
        "network": NAMES,
        "network_name": NAMES,
        "podName": NAMES,
        "podNamespace": NAMES,
        "containerId": NAMES,
        "ifName": st.sampled_from(["eth0", "net1", "", "x" * 70]),
        "priority": st.one_of(st.integers(-5, 5), HUGE_INTS),
        "mac": st.sampled_from(
            [
                "02:00:00:00:00:01",
                "02-00-00-00-00-02",
                "0200.0000.0003",
                "ff:ff:ff:ff:ff:ff",
                "01:00:5e:00:00:01",
                "zz",
                "",
            ]
        ),
        "routes": st.lists(
            st.fixed_dictionaries({}, optional={"dst": st.one_of(CIDRS, JSON), "gw": st.one_of(ADDRESSES, JSON)}),
            max_size=3,
        ),
        "dns": st.fixed_dictionaries(
            {},
            optional={"nameservers": st.lists(ADDRESSES, max_size=2), "domain": JSON, "search": JSON, "options": JSON},
        ),
        "owner": st.one_of(
            st.sampled_from(["lab/router", "router", "", "a/b/c"]),
            st.fixed_dictionaries({}, optional={"namespace": NAMES, "pod": NAMES, "interface": NAMES}),
        ),
        "ipam": ipam_sections(),
        "validAttachments": st.lists(
            st.fixed_dictionaries({}, optional={"containerId": NAMES, "ifName": NAMES}), max_size=3
        ),
        "prevResult": st.fixed_dictionaries(
            {}, optional={"ips": st.lists(st.fixed_dictionaries({}, optional={"address": ADDRESSES}), max_size=2)}
        ),
        "ipRanges": st.lists(
            st.fixed_dictionaries(
                {}, optional={"range": CIDRS, "range_start": ADDRESSES, "exclude": st.lists(ADDRESSES, max_size=2)}
            ),
            max_size=3,
        ),
        "ranges": st.lists(
            st.lists(
                st.fixed_dictionaries(
                    {}, optional={"subnet": CIDRS, "rangeStart": ADDRESSES, "rangeEnd": ADDRESSES, "gateway": ADDRESSES}
                ),
                max_size=2,
            ),
            max_size=2,
        ),
    }
    return st.one_of(by_field.get(field, JSON), JSON)


@st.composite
def ipam_sections(draw: st.DrawFn) -> Any:
    style = draw(st.sampled_from(["provider", "whereabouts", "host-local", "anything"]))
    if style == "provider":
        return {"type": "ipamd", "provider": draw(st.one_of(st.sampled_from(["p1.ns", "dual.ns", "nope.ns"]), JSON))}
    if style == "anything":
        return draw(JSON)
    keys = sorted(WHEREABOUTS_KEYS if style == "whereabouts" else HOST_LOCAL_KEYS)
    wanted = draw(st.lists(st.sampled_from(keys), max_size=5, unique=True))
    section = {"type": "ipamd", **{key: draw(plausible(key)) for key in wanted}}
    section.setdefault(
        "range" if style == "whereabouts" else "ranges",
        draw(plausible("range" if style == "whereabouts" else "ranges")),
    )
    return section


@st.composite
def bodies(draw: st.DrawFn, fields: frozenset[str]) -> bytes:
    """A request body: mostly objects with the endpoint's fields, sometimes anything at all."""
    shape = draw(st.sampled_from(["fields"] * 6 + ["extra", "json", "bytes", "text"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "text":
        return draw(
            st.sampled_from(
                [
                    b"",
                    b"{",
                    b"[]",
                    b"null",
                    b'{"a": NaN}',
                    b'{"priority": Infinity}',
                    b"\xff\xfe{}",
                    b'{"name": "\xed\xa0\x80"}',
                    b'{"x": ' + b"9" * 5000 + b"}",
                    b"[" * 5000 + b"]" * 5000,
                    b'{"name": "a"} trailing',
                    b'{"a": 1, "a": 2}',
                ]
            )
        )
    if shape == "json":
        return json.dumps(draw(JSON)).encode()
    chosen = draw(st.lists(st.sampled_from(sorted(fields)), max_size=len(fields), unique=True))
    body = {key: draw(plausible(key)) for key in chosen}
    if shape == "extra":
        body[draw(st.text(min_size=1, max_size=10))] = draw(JSON)
    return json.dumps(body).encode()


def segment() -> st.SearchStrategy[str]:
    """A path segment: existing names and ids, or anything, percent-encoded."""
    return st.one_of(
        st.sampled_from(
            [
                "net1",
                "dual",
                "pool1",
                "1",
                "2",
                "3",
                "0",
                "-1",
                "¹",
                "2147483648",
                "99999999999999999999",
                "192.0.2.77",
                "2001:db8:9::1",
                "\ud800",
            ]
        ),
        st.text(min_size=1, max_size=30),
    ).map(lambda text: urllib.parse.quote(text, safe="", errors="surrogatepass"))


def query() -> st.SearchStrategy[str]:
    pairs = st.lists(
        st.tuples(
            st.one_of(
                st.sampled_from(["subnet", "namespace", "pod", "provider", "node", "force"]), st.text(max_size=8)
            ),
            st.text(max_size=12),
        ),
        max_size=3,
    )
    return pairs.map(lambda items: urllib.parse.urlencode(items))


# ----------------------------------------------------------------------------- the property


def exchange(target: Target, method: str, url: str, body: bytes | None) -> Reply:
    reply = target.client.request(method, url, raw=body if body is not None else None)
    assert reply.status < 500, f"{method} {url} {body[:300] if body else b''!r} -> {reply.status} {reply.raw[:500]!r}"
    if reply.status >= 400:
        assert isinstance(reply.body, dict) and isinstance(reply.body.get("error", {}).get("code"), str), reply.raw[
            :300
        ]
    return reply


def check(target: Target, method: str, url: str, body: bytes | None) -> None:
    """One fuzzed request: never a 5xx; a 4xx leaves every table as it was."""
    before = target.snapshot() if method != "GET" else None
    reply = exchange(target, method, url, body)
    if before is not None and reply.status >= 400:
        after = target.snapshot()
        changed = [table for table in before if before[table] != after[table]]
        assert not changed, f"{method} {url} was refused ({reply.status} {reply.body}) but changed {changed}"


BODY_ENDPOINTS = [
    pytest.param("POST", "/v1/subnets", SUBNET_FIELDS, id="subnets-create"),
    pytest.param("PATCH", "/v1/subnets/{}", SUBNET_FIELDS, id="subnets-patch"),
    pytest.param("POST", "/v1/pools", POOL_FIELDS, id="pools-create"),
    pytest.param("POST", "/v1/reservations", RESERVATION_FIELDS, id="reservations-create"),
    pytest.param("POST", "/v1/allocations", ALLOCATE_FIELDS, id="allocations-create"),
    pytest.param("POST", "/v1/cni/add", ADD_FIELDS, id="cni-add"),
    pytest.param("POST", "/v1/cni/del", ADD_FIELDS, id="cni-del"),
    pytest.param("POST", "/v1/cni/check", CHECK_FIELDS, id="cni-check"),
    pytest.param("POST", "/v1/cni/gc", GC_FIELDS, id="cni-gc"),
]


@pytest.mark.parametrize(("method", "template", "fields"), BODY_ENDPOINTS)
def test_fuzzed_bodies(target: Target, method: str, template: str, fields: frozenset[str]) -> None:
    @examples(target)
    @given(body=bodies(fields), name=st.one_of(st.just("net1"), st.just("dual"), segment()))
    def run(body: bytes, name: str) -> None:
        check(target, method, template.format(name), body)

    run()
    target.seed()


@st.composite
def plugin_requests(draw: st.DrawFn) -> bytes:
    """What the CNI plugin sends (docs/api.md, "CNI wire protocol"), fuzzed: every verb,
    environments and configs of every shape, other wire versions."""
    shape = draw(st.sampled_from(["plugin"] * 8 + ["json", "bytes"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "json":
        return json.dumps(draw(JSON)).encode()
    env = {
        "CNI_COMMAND": draw(
            st.one_of(st.sampled_from(["ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"]), st.text(max_size=8))
        ),
        "CNI_CONTAINERID": draw(NAMES),
        "CNI_IFNAME": draw(plausible("ifName")),
        "CNI_NETNS": "/var/run/netns/fuzz",
        "CNI_ARGS": draw(
            st.one_of(st.just("IgnoreUnknown=1;K8S_POD_NAMESPACE=fuzz;K8S_POD_NAME=p1"), st.text(max_size=40))
        ),
    }
    env = {key: value for key, value in env.items() if draw(st.integers(0, 9))}  # now and then one is missing
    config: dict[str, Any] = {
        "cniVersion": draw(st.one_of(st.sampled_from(["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0", "9.9.9"]), JSON)),
        "name": draw(NAMES),
        "ipam": draw(ipam_sections()),
    }
    for key, strategy in (
        (
            "runtimeConfig",
            st.fixed_dictionaries({}, optional={"ips": st.lists(ADDRESSES, max_size=3), "mac": plausible("mac")}),
        ),
        (
            "args",
            st.fixed_dictionaries(
                {"cni": st.fixed_dictionaries({}, optional={"ips": st.lists(ADDRESSES, max_size=2)})}
            ),
        ),
        ("prevResult", plausible("prevResult")),
        (
            "cni.dev/valid-attachments",
            st.lists(st.fixed_dictionaries({}, optional={"containerID": NAMES, "ifname": NAMES}), max_size=2),
        ),
    ):
        if draw(st.booleans()):
            config[key] = draw(strategy)
    text = draw(st.one_of(st.just(json.dumps(config)), st.just(json.dumps(config)), st.text(max_size=40)))
    return json.dumps({"wire": draw(st.sampled_from([1, 1, 1, 2])), "env": env, "config": text}).encode()


def test_fuzzed_plugin_requests(target: Target) -> None:
    """Every CNI failure is a CNI error in a 200 answer, and it changes nothing."""

    @examples(target)
    @given(body=plugin_requests())
    def run(body: bytes) -> None:
        before = target.snapshot()
        reply = exchange(target, "POST", "/v1/cni/exec", body)
        if reply.status >= 400:
            assert target.snapshot() == before
            return
        assert set(reply.body) == {"exitCode", "stdout", "stderr"}, reply.body
        if reply.body["exitCode"] != 0:
            error = json.loads(reply.body["stdout"])
            assert isinstance(error["code"], int) and error["msg"], error
            assert reply.body["stderr"].count("\n") == 1, reply.body
            changed = [table for table, rows in target.snapshot().items() if before[table] != rows]
            assert not changed, f"a failed {body[:300]!r} changed {changed}: {error}"

    run()
    target.seed()


PATH_ENDPOINTS = [
    pytest.param("GET", "/v1/subnets/{seg}", id="subnets-get"),
    pytest.param("DELETE", "/v1/subnets/{seg}?{q}", id="subnets-delete"),
    pytest.param("GET", "/v1/pools/{seg}", id="pools-get"),
    pytest.param("DELETE", "/v1/pools/{seg}", id="pools-delete"),
    pytest.param("GET", "/v1/reservations/{seg}", id="reservations-get"),
    pytest.param("DELETE", "/v1/reservations/{seg}", id="reservations-delete"),
    pytest.param("GET", "/v1/allocations/{seg}", id="allocations-get"),
    pytest.param("DELETE", "/v1/allocations/{seg}", id="allocations-delete"),
    pytest.param("GET", "/v1/allocations?{q}", id="allocations-list"),
    pytest.param("GET", "/v1/ips/{seg}", id="ips-get"),
    pytest.param("GET", "/v1/cni/status?{q}", id="cni-status"),
    pytest.param("GET", "/v1/subnets?{q}", id="subnets-list"),
    pytest.param("GET", "/v1/pools?{q}", id="pools-list"),
    pytest.param("GET", "/v1/reservations?{q}", id="reservations-list"),
]


@pytest.mark.parametrize(("method", "template"), PATH_ENDPOINTS)
def test_fuzzed_paths_and_queries(target: Target, method: str, template: str) -> None:
    @examples(target, sqlite=100, postgres=25)
    @given(first=segment(), second=query())
    def run(first: str, second: str) -> None:
        url = template.format(seg=first, q=second)
        if method == "DELETE":
            # A DELETE may succeed (it hit a seeded object): seed again for the next example.
            target.seed()
        check(target, method, url, None)

    run()
    target.seed()


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "POST", "OPTIONS", "BREW"])
def test_wrong_methods_and_unknown_paths(target: Target, method: str) -> None:
    for path in (
        "/v1/subnets",
        "/v1/pools/pool1",
        "/v1/cni/add",
        "/v1/ips/192.0.2.1",
        "/v2/anything",
        "/",
        "/v1/subnets/net1/extra",
    ):
        head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n".encode()
        before = target.snapshot()
        status, data = raw_exchange(target.daemon.socket, head, iter([b"{}"]))
        assert 200 <= status < 500, (method, path, data[:300])
        if status >= 400:
            assert target.snapshot() == before, (method, path, data[:300])
    assert target.client.get("/healthz").status == 200


# ----------------------------------------------------------------------------- big bodies


def raw_exchange(socket_path: str, head: bytes, body_chunks: Iterator[bytes]) -> tuple[int, bytes]:
    """Sends a request as fast as the daemon takes it and returns (status, response)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(30)
        sock.connect(socket_path)
        sock.sendall(head)
        try:
            for chunk in body_chunks:
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon answered and closed before taking everything: expected
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass
    # aiohttp answers malformed HTTP itself (HTTP/1.0, text/plain); the API answers HTTP/1.1.
    assert data.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")), data[:200]
    return int(data.split()[1]), data


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/subnets"),
        ("PATCH", "/v1/subnets/net1"),
        ("POST", "/v1/pools"),
        ("POST", "/v1/reservations"),
        ("POST", "/v1/allocations"),
        ("POST", "/v1/cni/add"),
        ("POST", "/v1/cni/del"),
        ("POST", "/v1/cni/check"),
        ("POST", "/v1/cni/gc"),
        ("POST", "/v1/cni/exec"),
    ],
)
def test_bodies_over_one_mib_are_refused_with_413(target: Target, method: str, path: str) -> None:
    before = target.snapshot()
    size = MiB + 1
    # A valid-looking JSON object, padded past the limit.
    payload = b'{"name": "big", "pad": "' + b"x" * size + b'"}'
    # Declared length: refused from the header.
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
    status, data = raw_exchange(
        target.daemon.socket, head, iter([payload[i : i + 65536] for i in range(0, len(payload), 65536)])
    )
    assert status == 413 and b"payload_too_large" in data, data[:300]
    # Chunked, no length announced: refused once the limit is crossed while reading.
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
    chunks = [
        b"%x\r\n%s\r\n" % (len(payload[i : i + 65536]), payload[i : i + 65536]) for i in range(0, len(payload), 65536)
    ] + [b"0\r\n\r\n"]
    status, data = raw_exchange(target.daemon.socket, head, iter(chunks))
    assert status == 413 and b"payload_too_large" in data, data[:300]
    assert target.snapshot() == before
    assert target.client.get("/healthz").status == 200


def test_a_batch_of_refused_requests_changes_nothing(target: Target) -> None:
    """The brief's snapshot check through the API too: subnets and allocations as listed."""
    target.seed()

    def listed() -> tuple[object, ...]:
        return (
            target.client.get("/v1/subnets").body,
            target.client.get("/v1/allocations").body,
            target.client.get("/v1/pools").body,
        )

    before = listed()
    bad = [
        ("POST", "/v1/subnets", b'{"name": "net1", "cidrBlock": "203.0.113.0/24"}'),  # name taken
        ("POST", "/v1/subnets", b'{"name": "x", "cidrBlock": "192.0.2.0/25", "provider": "p1.ns"}'),  # overlap
        ("PATCH", "/v1/subnets/net1", b'{"cidrBlock": "203.0.113.0/24"}'),  # would orphan allocations
        ("PATCH", "/v1/subnets/net1", b'{"priority": "high"}'),
        ("DELETE", "/v1/subnets/net1", None),  # in use
        ("POST", "/v1/pools", b'{"name": "p2", "subnet": "net1", "ips": ["192.0.2.205"]}'),  # overlaps pool1
        ("POST", "/v1/reservations", b'{"subnet": "net1", "address": "192.0.2.77"}'),  # already reserved
        ("POST", "/v1/allocations", b'{"subnet": "net1", "owner": {"pod": "z"}, "address": "192.0.2.77"}'),  # reserved
        (
            "POST",
            "/v1/cni/add",
            b'{"containerId": "c", "ifName": "eth0", "network": "n", "ipam": {"provider": "p1.ns"}, "ips": ["192.0.2.1"]}',
        ),
        (
            "POST",
            "/v1/cni/add",
            b'{"containerId": "c", "ifName": "eth0", "network": "n", "ipam": {"provider": "p1.ns"}, "mac": "nope"}',
        ),
        ("POST", "/v1/cni/add", b"\xff\xfe\x00"),
        ("POST", "/v1/cni/gc", b'{"network": "n", "ipam": {"provider": "p1.ns"}, "validAttachments": "all"}'),
        ("DELETE", "/v1/allocations/abc", None),
        ("DELETE", "/v1/reservations/99999", None),
    ]
    for method, path, body in bad:
        reply = exchange(target, method, path, body)
        assert reply.status >= 400, (method, path, reply.body)
    assert listed() == before
