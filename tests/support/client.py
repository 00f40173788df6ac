"""A small synchronous HTTP client over a Unix socket, for tests and benchmarks."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass
from typing import Any


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes

    @property
    def error_code(self) -> str | None:
        return self.body.get("error", {}).get("code") if isinstance(self.body, dict) else None

    @property
    def message(self) -> str:
        return self.body.get("error", {}).get("message", "") if isinstance(self.body, dict) else ""


class UnixClient:
    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.timeout = timeout

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        connection = UnixHTTPConnection(self.path, timeout=self.timeout)
        try:
            payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, url, body=payload, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return Reply(response.status, parsed, data)

    def get(self, url: str) -> Reply:
        return self.request("GET", url)

    def post(self, url: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.request("POST", url, body, **kwargs)

    def delete(self, url: str) -> Reply:
        return self.request("DELETE", url)

    def patch(self, url: str, body: Any) -> Reply:
        return self.request("PATCH", url, body)
