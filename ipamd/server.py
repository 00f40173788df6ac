"""Running the daemon: engine, migrations, the Unix socket and TCP listeners, signals."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import signal
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import sqlalchemy as sa
from aiohttp import web

from ipamd import declarative
from ipamd.api.app import create_app
from ipamd.api.auth import TokenTable, load_tokens
from ipamd.api.connections import IDLE_TIMEOUT_SECONDS, ConnectionGuard
from ipamd.config import Settings, check_listener
from ipamd.errors import InvalidInput
from ipamd.policy import AttachmentPolicy
from ipamd.service import Ipam
from ipamd.store.database import Database, open_database
from ipamd.store.engine import normalize_url, safe_url

log = logging.getLogger("ipamd.server")

# How long aiohttp keeps reading and discarding a body the handler did not read (after a
# 413 or a body deadline) before it closes the connection.
LINGER_SECONDS = 2.0


def prepare_socket(path: str, group: str | None) -> None:
    """Creates the socket's directory and removes a stale socket file left by a crash."""
    socket_path = Path(path)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    if socket_path.exists() or socket_path.is_symlink():
        if not stat.S_ISSOCK(socket_path.lstat().st_mode):
            raise InvalidInput(f"{path} exists and is not a socket; refusing to replace it", field="socket")
        socket_path.unlink()


def secure_socket(path: str, group: str | None) -> None:
    os.chmod(path, 0o660)
    if group:
        try:
            gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError as e:
            raise InvalidInput(f"no such group {group!r}", field="socket-group") from e
        os.chown(path, -1, gid)


async def migrate_when_reachable(database: Database) -> None:
    """Migrates, waiting for a database that is not reachable yet.

    A DaemonSet often starts before its database (or during an outage): exiting would only
    put the pod into crash-loop back-off, so wait here and keep saying why.
    """
    delay = 1.0
    while True:
        try:
            await database.upgrade()
            return
        except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError, OSError, TimeoutError) as e:
            # The exception's text may carry the URL: name its type only.
            log.warning("database not reachable yet (%s); retrying in %.0fs", type(e).__name__, delay)
        except sa.exc.DBAPIError as e:
            if not e.connection_invalidated:
                raise
            log.warning("database connection lost during migration (%s); retrying in %.0fs", type(e.orig).__name__, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 15.0)


async def serve(settings: Settings) -> None:
    # Flags first: a refused listener must not wait for (or migrate) a database.
    listen_address = check_listener(settings)
    if settings.adopt_annotations and not settings.kubernetes:
        raise InvalidInput("--adopt-annotations reads pods: it needs --kubernetes", field="adopt-annotations")
    url = normalize_url(settings.database_url)
    database = open_database(url)
    log.info("database %s", safe_url(url))
    tokens: TokenTable | None = load_tokens(settings.token_file) if settings.token_file else None
    if settings.migrate:
        await migrate_when_reachable(database)
    ipam = Ipam(database, node=settings.node_name, release_on_del=not settings.kubernetes)
    policy: AttachmentPolicy | None = None
    stop_kubernetes: Callable[[], Awaitable[None]] | None = None
    adopt: Callable[[], Awaitable[object]] | None = None
    if settings.kubernetes:
        # Imported here: a standalone daemon never loads kubernetes_asyncio.
        from ipamd.k8s import runtime as k8s_runtime

        kubernetes = await k8s_runtime.start(ipam, settings)
        policy, stop_kubernetes = kubernetes.policy, kubernetes.stop
        if settings.adopt_annotations:
            adopt = kubernetes.adopt_annotations
    app = create_app(ipam, policy=policy, tokens=tokens)
    stops: list[Callable[[], Awaitable[None]]] = []
    # The declared configuration goes in before the first request can see the subnets.
    stop_config = await declarative.start_hook(ipam, settings, app)
    if stop_config is not None:
        stops.append(stop_config)
    if adopt is not None:
        # After the declared subnets exist, before the socket opens: no ADD can be served
        # an address a running pod still carries.
        await adopt()

    # Connections that do not finish a request are closed after a bounded time (idle, a
    # trickled head: the guard; a trickled body: api/body.py), then lingering ends quickly.
    guard = ConnectionGuard(idle_timeout=IDLE_TIMEOUT_SECONDS)
    app.middlewares.insert(0, guard.middleware)
    runner = web.AppRunner(
        app, shutdown_timeout=settings.shutdown_timeout, handle_signals=False,
        keepalive_timeout=IDLE_TIMEOUT_SECONDS, lingering_time=LINGER_SECONDS,
    )
    await runner.setup()
    assert runner.server is not None
    guard.start(runner.server)
    prepare_socket(settings.socket, settings.socket_group)
    # The umask keeps the socket private during the instant before chmod.
    old_umask = os.umask(0o117)
    try:
        await web.UnixSite(runner, settings.socket).start()
    finally:
        os.umask(old_umask)
    secure_socket(settings.socket, settings.socket_group)
    log.info("serving on unix:%s", settings.socket)
    if listen_address is not None:
        host, port = listen_address
        await web.TCPSite(runner, host, port).start()
        if tokens is None:
            log.warning(
                "serving on tcp:%s WITHOUT tokens (--insecure-read-only): every read is open to anyone who reaches it; "
                "writes are refused", settings.listen,
            )
        else:
            log.info("serving on tcp:%s (bearer tokens)", settings.listen)

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    loop.add_signal_handler(signal.SIGINT, stopping.set)
    await stopping.wait()
    log.info("shutting down: finishing in-flight requests")
    for stop in reversed(stops):
        with contextlib.suppress(Exception):
            await stop()
    await guard.stop()
    await runner.cleanup()
    if stop_kubernetes is not None:
        # After the in-flight requests: their write-backs and Events still need the client.
        await stop_kubernetes()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(settings.socket)
    await ipam.close()
    log.info("stopped")
