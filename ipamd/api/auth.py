"""Bearer tokens for the TCP listener. The Unix socket is guarded by its file mode instead."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from ipamd.api.keys import TOKENS
from ipamd.errors import Forbidden, InvalidInput, Unauthorized

ROLES = ("admin", "readonly")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Probes and scrapes must work without a token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


@dataclass(frozen=True)
class TokenTable:
    tokens: tuple[tuple[str, bytes], ...]

    def role_of(self, presented: str) -> str | None:
        """Returns the role of a token, comparing every entry in constant time."""
        found = None
        # surrogatepass: a header byte that is not UTF-8 arrives as a lone surrogate; it
        # matches no token, and must not make the comparison itself fail.
        candidate = presented.encode("utf-8", "surrogatepass")
        for role, token in self.tokens:
            if hmac.compare_digest(candidate, token):
                found = role
        return found


def load_tokens(path: str | Path) -> TokenTable:
    """Reads ``ROLE TOKEN`` lines; blank lines and ``#`` comments are skipped."""
    entries = []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        role, _, token = line.partition(" ")
        token = token.strip()
        if role not in ROLES or len(token) < 16:
            raise InvalidInput(
                f"line {number}: expected 'admin TOKEN' or 'readonly TOKEN' with a token of 16+ characters",
                field="token-file",
            )
        entries.append((role, token.encode()))
    if not entries:
        raise InvalidInput(f"{path} holds no token", field="token-file")
    return TokenTable(tuple(entries))


def is_unix(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and isinstance(transport.get_extra_info("sockname"), str)


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if is_unix(request) or request.path in OPEN_PATHS:
        return await handler(request)
    table = request.app[TOKENS]
    header = request.headers.get("Authorization", "")
    role = None
    if header.startswith("Bearer ") and table is not None:
        role = table.role_of(header[len("Bearer ") :].strip())
    if role is None:
        if table is None:
            if request.method in SAFE_METHODS:
                return await handler(request)
            raise Forbidden(
                "this TCP listener is read-only: the daemon runs without --token-file (--insecure-read-only), so no token "
                "can authorize a change; use the Unix socket, or restart the daemon with --token-file"
            )
        raise Unauthorized("a bearer token is required on the TCP listener (Authorization: Bearer TOKEN)")
    if request.method not in SAFE_METHODS and role != "admin":
        raise Forbidden("this token is read-only; state-changing requests need an admin token")
    return await handler(request)
