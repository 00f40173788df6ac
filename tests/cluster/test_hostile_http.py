"""Hostile HTTP on the TCP listener, byte for byte: never a 500, never a smuggled request.

The red team's inputs (issue 18, D7, D10, D11), each pinned: bearer tokens that are not
UTF-8 or not ASCII, bodies compressed wrongly or hugely, Content-Length together with
Transfer-Encoding, pipelined requests, oversized bodies. And the listener's own rules:
no tokens means refusing to start unless ``--insecure-read-only`` says so, and the
listen address names its host.
"""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.daemon import Daemon, serve_refused
from tests.support.postgres import free_port
from tests.support.waiting import wait_for

ADMIN_TOKEN = "admin-Zq8Jx2Lw9Pt4Rk7N"
# A token that is not ASCII: the file is UTF-8, the header carries the same bytes.
UNICODE_TOKEN = "ключ-доступа-Ωμέγα-✓"
SUBNET = {"name": "h1", "cidrBlock": "203.0.113.0/24", "provider": "h1.ns"}


def exchange(port: int, data: bytes, *, replies: int = 1) -> list[tuple[int, bytes]]:
    """Writes raw bytes to the listener and returns up to ``replies`` (status, body) answers."""
    answers: list[tuple[int, bytes]] = []
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        buffer = b""
        while len(answers) < replies:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65536)
                if not chunk:
                    return answers
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split()[1])
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            while len(buffer) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
            answers.append((status, buffer[:length]))
            buffer = buffer[length:]
    return answers


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    headers: tuple[bytes, ...] = (),
    token: bytes | None = None,
    length: bool = True,
    close: bool = True,
) -> bytes:
    head = [f"{method} {path} HTTP/1.1".encode(), b"Host: ipamd"]
    if token is not None:
        head.append(b"Authorization: Bearer " + token)
    if body:
        head.append(b"Content-Type: application/json")
    if length:
        head.append(b"Content-Length: %d" % len(body))
    if close:
        head.append(b"Connection: close")
    head += headers
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def one(port: int, data: bytes) -> tuple[int, dict]:
    answers = exchange(port, data)
    assert answers, "the daemon closed the connection without an answer"
    status, body = answers[0]
    return status, (json.loads(body) if body.startswith(b"{") else {"raw": body.decode(errors="replace")})


def wait_listening(daemon: Daemon, port: int) -> None:
    def listening() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        except OSError:
            assert daemon.process is not None and daemon.process.poll() is None, daemon.log()
            return False

    wait_for(listening, timeout=30, what="the TCP listener")


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, int]]:
    directory = tmp_path_factory.mktemp("hostile")
    tokens = directory / "tokens"
    tokens.write_text(f"admin {ADMIN_TOKEN}\nadmin {UNICODE_TOKEN}\n", encoding="utf-8")
    port = free_port()
    daemon = Daemon(
        Path(directory),
        f"sqlite:///{directory / 'ipamd.db'}",
        extra_args=("--listen", f"127.0.0.1:{port}", "--token-file", str(tokens)),
    ).start()
    wait_listening(daemon, port)
    try:
        yield daemon, port
    finally:
        alive = daemon.process is not None and daemon.process.poll() is None
        daemon.stop()
        assert alive, "the daemon died"
        log = daemon.log()
        # Client mistakes are answered, not logged as our failures.
        assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]
        assert ADMIN_TOKEN not in log and UNICODE_TOKEN not in log


def subnets(port: int) -> list[str]:
    status, body = one(port, request_bytes("GET", "/v1/subnets", token=ADMIN_TOKEN.encode()))
    assert status == 200, body
    return sorted(item["name"] for item in body["items"])


@pytest.mark.parametrize(
    "token",
    [
        b"\xff\xfe\xfd-not-utf8-at-all-0000",
        b"\xc3\x28-broken-sequence-00000",
        b"admin-Zq8Jx2Lw9Pt4Rk7N\x80",
        "ключ-доступа-неверный".encode(),
        "🔑".encode() * 8,
    ],
    ids=["latin1", "bad-sequence", "valid-then-junk", "cyrillic-wrong", "emoji"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_tokens_that_are_not_ascii_get_401(listener: tuple[Daemon, int], token: bytes, method: str) -> None:
    _, port = listener
    body = json.dumps(SUBNET).encode() if method == "POST" else b""
    status, reply = one(port, request_bytes(method, "/v1/subnets", body, token=token))
    assert (status, reply.get("error", {}).get("code")) == (401, "unauthorized"), reply
    assert "h1" not in subnets(port)


def test_a_unicode_token_from_the_file_works(listener: tuple[Daemon, int]) -> None:
    _, port = listener
    body = json.dumps({**SUBNET, "name": "uni", "cidrBlock": "198.51.100.0/24", "provider": "uni.ns"}).encode()
    status, reply = one(port, request_bytes("POST", "/v1/subnets", body, token=UNICODE_TOKEN.encode()))
    assert status == 201, reply
    assert "uni" in subnets(port)


def _gzip_bomb() -> bytes:
    # 8 MiB of JSON-ish padding compresses to a few KiB: the limit applies to what it inflates to.
    return gzip.compress(b'{"name": "bomb", "pad": "' + b"x" * (8 * 1024 * 1024) + b'"}')


@pytest.mark.parametrize(
    ("encoding", "body", "expected"),
    [
        (b"deflate", b"this is not deflate data at all", 400),
        (b"deflate", zlib.compress(json.dumps(SUBNET).encode())[:-6], 400),  # cut short
        (b"gzip", b"\x1f\x8b\x08\x00garbage-after-the-magic", 400),
        (b"gzip", gzip.compress(json.dumps(SUBNET).encode())[:20], 400),
        (b"br", b"\x8b\x02\x80garbage", 400),
        (b"gzip", _gzip_bomb(), 413),
    ],
    ids=["deflate-garbage", "deflate-truncated", "gzip-garbage", "gzip-truncated", "brotli-garbage", "gzip-bomb"],
)
def test_bodies_that_do_not_decode_are_refused(
    listener: tuple[Daemon, int], encoding: bytes, body: bytes, expected: int
) -> None:
    _, port = listener
    status, reply = one(
        port,
        request_bytes(
            "POST", "/v1/subnets", body, token=ADMIN_TOKEN.encode(), headers=(b"Content-Encoding: " + encoding,)
        ),
    )
    assert status == expected, reply
    assert "h1" not in subnets(port) and "bomb" not in subnets(port)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_that_decode_are_served(listener: tuple[Daemon, int], encoding: str) -> None:
    _, port = listener
    name = f"z{encoding}"
    spec = json.dumps(
        {"name": name, "cidrBlock": f"198.18.{1 if encoding == 'gzip' else 2}.0/24", "provider": f"{name}.ns"}
    ).encode()
    body = gzip.compress(spec) if encoding == "gzip" else zlib.compress(spec)
    status, reply = one(
        port,
        request_bytes(
            "POST", "/v1/subnets", body, token=ADMIN_TOKEN.encode(), headers=(f"Content-Encoding: {encoding}".encode(),)
        ),
    )
    assert status == 201, reply
    assert name in subnets(port)


def test_content_length_with_transfer_encoding_is_refused_and_smuggles_nothing(listener: tuple[Daemon, int]) -> None:
    _, port = listener
    smuggled = request_bytes(
        "POST", "/v1/subnets", json.dumps({**SUBNET, "name": "smuggled"}).encode(), token=ADMIN_TOKEN.encode()
    )
    # CL covers the smuggled request; TE says the body ends at the first (empty) chunk.
    body = b"0\r\n\r\n" + smuggled
    data = request_bytes(
        "POST", "/v1/subnets", body, token=ADMIN_TOKEN.encode(), close=False, headers=(b"Transfer-Encoding: chunked",)
    )
    answers = exchange(port, data, replies=2)
    assert answers and answers[0][0] == 400, answers
    assert all(status < 500 for status, _ in answers), answers
    assert len(answers) == 1, "a second request was read out of the first one's body"
    # The other order, and a TE that is not chunked.
    for headers in (
        (b"Transfer-Encoding: gzip, chunked",),
        (b"Transfer-Encoding: identity",),
        (b"Transfer-Encoding: chunked, identity",),
    ):
        status, _ = one(port, request_bytes("POST", "/v1/subnets", body, token=ADMIN_TOKEN.encode(), headers=headers))
        assert status == 400 or 400 <= status < 500, (headers, status)
    # Two different Content-Lengths.
    status, _ = one(
        port,
        request_bytes(
            "POST",
            "/v1/subnets",
            json.dumps(SUBNET).encode(),
            token=ADMIN_TOKEN.encode(),
            headers=(b"Content-Length: 5",),
        ),
    )
    assert status == 400
    assert "smuggled" not in subnets(port) and "h1" not in subnets(port)


def test_pipelined_requests_are_answered_in_order(listener: tuple[Daemon, int]) -> None:
    _, port = listener
    token = ADMIN_TOKEN.encode()
    batch = (
        request_bytes("GET", "/healthz", close=False)
        + request_bytes(
            "POST",
            "/v1/subnets",
            json.dumps({**SUBNET, "name": "pipe", "provider": "pipe.ns"}).encode(),
            token=token,
            close=False,
        )
        + request_bytes("GET", "/v1/subnets/pipe", token=token, close=False)
        + request_bytes("POST", "/v1/subnets", b'{"broken', token=token, close=False)
        + request_bytes("GET", "/v1/subnets/nosuch", token=token, close=False)
        + request_bytes("DELETE", "/v1/subnets/pipe", token=token)
    )
    answers = exchange(port, batch, replies=6)
    assert [status for status, _ in answers] == [200, 201, 200, 400, 404, 200], answers
    assert json.loads(answers[2][1])["cidrBlock"] == "203.0.113.0/24"
    assert "pipe" not in subnets(port)


def test_oversized_bodies_and_heads_are_refused(listener: tuple[Daemon, int]) -> None:
    _, port = listener
    token = ADMIN_TOKEN.encode()
    big = b'{"name": "big", "pad": "' + b"x" * (1024 * 1024 + 1) + b'"}'
    status, reply = one(port, request_bytes("POST", "/v1/subnets", big, token=token))
    assert status == 413 and reply["error"]["code"] == "payload_too_large", reply
    # An announced length far beyond anything, with no body behind it.
    status, reply = one(
        port,
        request_bytes(
            "POST", "/v1/subnets", token=token, length=False, headers=(b"Content-Length: 99999999999999999999",)
        ),
    )
    assert 400 <= status < 500, reply
    # A header line of 64 KiB.
    status, _ = one(port, request_bytes("GET", "/v1/subnets", token=token, headers=(b"X-Pad: " + b"y" * 65536,)))
    assert 400 <= status < 500
    assert "big" not in subnets(port)


# ----------------------------------------------------------------------------- start-up rules


def _serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return serve_refused(str(tmp_path / "s.sock"), f"sqlite:///{tmp_path / 'ipamd.db'}", *args)


def test_listen_without_tokens_is_refused(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--listen", f"127.0.0.1:{free_port()}")
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "without --token-file" in lines[0] and "--insecure-read-only" in lines[0], result.stderr
    # Refused before anything was created.
    assert not (tmp_path / "s.sock").exists() and not (tmp_path / "ipamd.db").exists()


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        (":8080", "needs an explicit host"),
        ("8080", "needs an explicit host"),
        ("127.0.0.1:", "port from 1 to 65535"),
        ("127.0.0.1:99999", "port from 1 to 65535"),
        ("::1:8080", "in brackets"),
        ("[nonsense]:8080", "IPv6 address in brackets"),
        ("127.0.0.1:８０", "port from 1 to 65535"),
    ],
)
def test_listen_needs_an_explicit_host_and_port(tmp_path: Path, listen: str, expected: str) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"admin {ADMIN_TOKEN}\n")
    result = _serve(tmp_path, "--listen", listen, "--token-file", str(tokens))
    assert result.returncode == 2 and expected in result.stderr, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_insecure_read_only_needs_a_listener(tmp_path: Path) -> None:
    result = _serve(tmp_path, "--insecure-read-only")
    assert result.returncode == 2 and "--listen" in result.stderr, result


def test_insecure_read_only_serves_reads_warns_and_refuses_writes(tmp_path: Path) -> None:
    port = free_port()
    daemon = Daemon(
        tmp_path,
        f"sqlite:///{tmp_path / 'ipamd.db'}",
        extra_args=("--listen", f"127.0.0.1:{port}", "--insecure-read-only"),
    ).start()
    try:
        wait_listening(daemon, port)
        assert daemon.client.post("/v1/subnets", SUBNET).status == 201  # the socket still writes
        status, body = one(port, request_bytes("GET", "/v1/subnets"))
        assert status == 200 and [s["name"] for s in body["items"]] == ["h1"]
        for token in (None, ADMIN_TOKEN.encode()):
            status, body = one(port, request_bytes("DELETE", "/v1/subnets/h1", token=token))
            assert status == 403, body
            assert "read-only" in body["error"]["message"] and "--token-file" in body["error"]["message"]
        assert daemon.client.get("/v1/subnets/h1").status == 200
        warnings = [line for line in daemon.log().splitlines() if "WITHOUT tokens" in line]
        assert len(warnings) == 1 and "WARNING" in warnings[0].upper(), daemon.log()
    finally:
        daemon.stop()
