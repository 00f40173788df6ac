"""The ipamd REST API over the Unix socket or TCP, with the standard library only.

Every failure leaves as ``CtlError`` carrying one line for the operator: the daemon's own
error message, or what went wrong reaching it and how to point ipamctl elsewhere.
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from typing import Any

DEFAULT_TIMEOUT_SECONDS = 30.0


class CtlError(Exception):
    """An error to print as one line on stderr."""

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def segment(value: object) -> str:
    """Returns one path segment, escaped (names, ids and IPv6 addresses are safe in a URL)."""
    return urllib.parse.quote(str(value), safe="")


class Client:
    """Sends requests to one daemon and returns the decoded JSON answers."""

    def __init__(
        self,
        *,
        socket_path: str,
        server: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self.socket_path = socket_path
        self.token = token
        self.timeout = timeout
        self.server = None
        if server:
            parsed = urllib.parse.urlsplit(server if "://" in server else f"http://{server}")
            if parsed.scheme not in ("http", "https") or not parsed.hostname:
                raise CtlError(f"--server {server!r}: expected http://HOST:PORT or https://HOST:PORT")
            self.server = parsed

    @property
    def where(self) -> str:
        if self.server is not None:
            return urllib.parse.urlunsplit((self.server.scheme, self.server.netloc, "", "", ""))
        return f"unix:{self.socket_path}"

    def _connection(self) -> http.client.HTTPConnection:
        if self.server is None:
            return _UnixConnection(self.socket_path, self.timeout)
        if self.server.scheme == "https":
            return http.client.HTTPSConnection(self.server.hostname or "", self.server.port, timeout=self.timeout)
        return http.client.HTTPConnection(self.server.hostname or "", self.server.port, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Returns the decoded answer of a 2xx response; raises CtlError otherwise."""
        return self.exchange(method, path, body, query=query, headers=headers)[0]

    def exchange(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[Any, http.client.HTTPMessage]:
        """Returns the decoded answer of a 2xx response and its headers; raises CtlError otherwise."""
        if query:
            path = f"{path}?{urllib.parse.urlencode(query)}"
        if self.server is not None and self.server.path.rstrip("/"):
            path = self.server.path.rstrip("/") + path
        headers = {"Accept": "application/json", **(headers or {})}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        connection = self._connection()
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except TimeoutError as e:
            raise CtlError(f"ipamd at {self.where} did not answer within {self.timeout:g}s") from e
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise CtlError(
                f"cannot reach ipamd at {self.where}: {e.strerror or e} (is the daemon running? {self._hint()})"
            ) from e
        except PermissionError as e:
            raise CtlError(
                f"cannot open {self.where}: permission denied (run as a member of the socket's group, or use --server)"
            ) from e
        except (OSError, http.client.HTTPException) as e:
            raise CtlError(
                f"cannot talk to ipamd at {self.where}: {getattr(e, 'strerror', None) or e or type(e).__name__}"
            ) from e
        finally:
            connection.close()
        return self._decode(response.status, data), response.headers

    def _hint(self) -> str:
        if self.server is not None:
            return "check --server or IPAMCTL_SERVER"
        return "check --socket or IPAMD_SOCKET, or use --server"

    def _decode(self, status: int, data: bytes) -> Any:
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            decoded = None
        if 200 <= status < 300:
            if decoded is None and data:
                raise CtlError(f"ipamd at {self.where} answered {status} with a body that is not JSON")
            return decoded
        if isinstance(decoded, dict) and isinstance(decoded.get("error"), dict):
            error = decoded["error"]
            raise CtlError(str(error.get("message") or error.get("code")), status=status, code=error.get("code"))
        raise CtlError(f"ipamd at {self.where} answered HTTP {status}", status=status)

    def get(self, path: str, *, query: dict[str, str] | None = None) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str, *, query: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Any:
        return self.request("DELETE", path, query=query, headers=headers)

    def find(self, path: str) -> Any | None:
        """Returns the object at ``path``, or None when the daemon answers 404."""
        try:
            return self.get(path)
        except CtlError as e:
            if e.status == 404:
                return None
            raise
