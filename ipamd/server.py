"""Running the daemon: engine, migrations, the Unix socket and TCP listeners, signals."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import grp
import logging
import os
import signal
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import URL

from ipamd import declarative, retention
from ipamd.api.app import create_app
from ipamd.api.auth import TokenTable, load_tokens
from ipamd.api.connections import IDLE_TIMEOUT_SECONDS, ConnectionGuard
from ipamd.config import Settings, check_listener, check_metrics_interval, cluster_name
from ipamd.errors import InvalidInput, Unavailable
from ipamd.lifecycle import Lifetime, cancel
from ipamd.metrics import Metrics
from ipamd.policy import AttachmentPolicy
from ipamd.service import Ipam
from ipamd.store.database import Database, open_database, try_upgrade
from ipamd.store.engine import normalize_url, safe_url

log = logging.getLogger("ipamd.server")

# How long aiohttp keeps reading and discarding a body the handler did not read (after a
# 413 or a body deadline) before it closes the connection.
LINGER_SECONDS = 2.0


def socket_group_id(group: str | None) -> int | None:
    """Returns the gid of ``--socket-group``, checked before the socket exists."""
    if not group:
        return None
    if group.isascii() and group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise InvalidInput(f"--socket-group {group!r}: no such group on this node", field="socket-group") from None


def claim_socket_path(path: str) -> int:
    """Takes the lock beside the socket path for this daemon's lifetime; returns its fd.

    Two daemons starting at once would otherwise both find no live socket, and the
    second would remove the first's between its bind() and its listen().
    """
    lock_path = f"{path}.lock"
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise InvalidInput(
            f"cannot create the lock file {lock_path} of unix socket {path}: {e.strerror or e}", field="socket"
        ) from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InvalidInput(
            f"another ipamd holds {lock_path}: it is serving on {path} or starting to; refusing to take the socket over "
            "(stop it first, or give this daemon another --socket)",
            field="socket",
        ) from None
    prepare_socket(path)
    return fd


def prepare_socket(path: str) -> None:
    """Removes a stale socket file left by a crash; refuses a socket somebody answers on.

    A live socket is not stale: another daemon serves there (a rollout starting the new
    pod before the old one stopped, or a daemon of a version without the lock file).
    Taking it over would leave that daemon serving nobody and, when it exits, unlinking
    the new daemon's socket.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as e:
        raise InvalidInput(f"cannot inspect unix socket {path}: {e.strerror or e}", field="socket") from e
    if not stat.S_ISSOCK(info.st_mode):
        raise InvalidInput(f"{path} exists and is not a socket; refusing to replace it", field="socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(2.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        pass  # nobody listens: left by a daemon that died
    except OSError as e:
        # EAGAIN (a full backlog) or a timeout: somebody listens, too busy to accept.
        raise InvalidInput(
            f"{path} belongs to a process that is alive but does not answer ({e.strerror or e}); refusing to take it over",
            field="socket",
        ) from e
    else:
        raise InvalidInput(
            f"another process is serving on {path}; refusing to take its socket over "
            "(stop it first, or give this daemon another --socket)",
            field="socket",
        )
    finally:
        probe.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@dataclass(frozen=True)
class OwnSocket:
    """The socket file this daemon bound: only that very inode is ever unlinked by it."""

    path: str
    device: int
    inode: int

    @classmethod
    def of(cls, path: str) -> OwnSocket:
        info = os.lstat(path)
        return cls(path, info.st_dev, info.st_ino)

    def unlink(self) -> bool:
        """Unlinks the path if it is still our socket; returns whether it did."""
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return False
        if (info.st_dev, info.st_ino) != (self.device, self.inode):
            log.warning(
                "not removing %s: it is no longer this daemon's socket (another daemon took the path)", self.path
            )
            return False
        os.unlink(self.path)
        return True


@dataclass
class SocketPath:
    """The socket path this daemon claimed: the lock beside it and, once bound, the socket."""

    path: str
    lock: int
    """The descriptor of the lock file (:func:`claim_socket_path`)."""
    bound: OwnSocket | None = None

    def release(self) -> None:
        """Removes the socket if it is still ours, then lets the lock go."""
        try:
            if self.bound is not None:
                self.bound.unlink()
        finally:
            os.close(self.lock)


async def bind_socket(runner: web.AppRunner, path: str, gid: int | None) -> OwnSocket:
    """Binds the Unix socket, mode 0660 and owned by ``gid``; on failure leaves no file behind.

    The socket is bound here rather than by asyncio, which would remove any socket file
    already at the path, live or not. :func:`claim_socket_path` cleared the path at start-up
    and its lock keeps other daemons off it; a file that appeared since makes bind() fail.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask keeps the socket private during the instant before chmod.
    old_umask = os.umask(0o117)
    try:
        sock.bind(path)
    except OSError as e:
        sock.close()
        raise InvalidInput(f"cannot listen on unix socket {path}: {e.strerror or e}", field="socket") from e
    finally:
        os.umask(old_umask)
    own = OwnSocket.of(path)
    try:
        os.chmod(path, 0o660)
        if gid is not None:
            os.chown(path, -1, gid)
        await web.SockSite(runner, sock).start()
    except OSError as e:
        sock.close()
        own.unlink()
        raise InvalidInput(f"cannot set up unix socket {path}: {e.strerror or e}", field="socket") from e
    return own


async def migrate_when_reachable(database: Database, url: URL) -> None:
    """Migrates, waiting for a database that is not reachable yet.

    A DaemonSet often starts before its database (or during an outage): exiting would only
    put the pod into crash-loop back-off, so wait here and keep saying why.
    """
    delay = 1.0
    while (reason := await try_upgrade(database, url)) is not None:
        log.warning("%s; retrying in %.0fs", reason, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 15.0)


async def join_when_reachable(ipam: Ipam) -> None:
    """Registers the daemon's cluster in the database once it answers with the newest
    schema: with ``--no-migrate`` another process (``ipamd db upgrade``) may still be
    migrating it, and the daemon serves meanwhile, refusing allocations."""
    delay = 1.0
    while True:
        ready, reason = await ipam.schema_ready()
        if ready:
            try:
                await ipam.join_cluster()
                return
            except Unavailable as e:
                reason = e.message
        log.warning("cannot register cluster %s yet (%s); retrying in %.0fs", ipam.cluster, reason, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 15.0)


async def serve(settings: Settings) -> None:
    """Runs the daemon until SIGTERM or SIGINT.

    Each resource's stop is registered as soon as it exists (``ipamd.lifecycle``): shutdown,
    and a start that fails half-way, stop them in the reverse order of start, logging a stop
    that fails. The order: the socket path, the database engine, cluster registration,
    Kubernetes mode, the configuration reloader, the HTTP server (its application stops the
    metrics refresh, the history pruner and the database watch) with its connection guard.
    """
    # Flags first: a refused listener must not wait for (or migrate) a database.
    listen_address = check_listener(settings)
    check_metrics_interval(settings)
    socket_gid = socket_group_id(settings.socket_group)
    if settings.adopt_annotations and not settings.kubernetes:
        raise InvalidInput("--adopt-annotations reads pods: it needs --kubernetes", field="adopt-annotations")
    declared = declarative.load(settings.config_file) if settings.config_file else None
    cluster = cluster_name(settings, from_file=declared.cluster_name if declared is not None else None)
    url = normalize_url(settings.database_url)
    tokens: TokenTable | None = load_tokens(settings.token_file) if settings.token_file else None
    async with Lifetime(log) as lifetime:
        # Before the database: a second daemon on a live socket gives up at once, changing nothing.
        socket_path = SocketPath(settings.socket, claim_socket_path(settings.socket))
        lifetime.on_stop("the unix socket", socket_path.release)
        database = open_database(url)
        lifetime.on_stop("the database engine", database.dispose)
        log.info("database %s", safe_url(url))
        if settings.migrate:
            await migrate_when_reachable(database, url)
        ipam = Ipam(database, node=settings.node_name, cluster=cluster)
        # Nothing is allocated before the database says this cluster may use it (SQLite refuses
        # a second one). Migrated, it answers now; without migrating, the daemon serves
        # meanwhile, as it does while the schema is not the newest.
        ipam.unregistered = f"cluster {cluster} is not registered in the database yet"
        joining = asyncio.create_task(join_when_reachable(ipam), name="cluster registration")
        lifetime.task(joining)
        if settings.migrate:
            await joining
        # Before Kubernetes mode: its reconciler counts into them.
        metrics = Metrics(cluster=cluster, read_usage=ipam.usage, refresh_interval=settings.metrics_interval)
        policy: AttachmentPolicy | None = None
        adopt: Callable[[], Awaitable[object]] | None = None
        if settings.kubernetes:
            # Imported here: a standalone daemon never loads kubernetes_asyncio.
            from ipamd.k8s import runtime as k8s_runtime

            # Stopped after the HTTP server: the in-flight requests' write-backs and Events
            # still need the client.
            kubernetes = await k8s_runtime.start(
                ipam, settings, lifetime, on_reconciler_released=metrics.reconciler_released
            )
            policy = kubernetes.policy
            if settings.adopt_annotations:
                adopt = kubernetes.adopt_annotations
        history_retention = (
            retention.DEFAULT_RETENTION if settings.history_retention is None else settings.history_retention
        )
        app = create_app(ipam, policy=policy, tokens=tokens, metrics=metrics, history_retention=history_retention)
        # The declared configuration goes in before the first request can see the subnets.
        stop_config = await declarative.start_hook(ipam, settings, app)
        if stop_config is not None:
            lifetime.on_stop("the configuration reloader", stop_config)
        if adopt is not None:
            # After the declared subnets exist, before the socket opens: no ADD can be served
            # an address a running pod still carries.
            await adopt()

        # Connections that do not finish a request are closed after a bounded time (idle, a
        # trickled head: the guard; a trickled body: api/body.py), then lingering ends quickly.
        guard = ConnectionGuard(idle_timeout=IDLE_TIMEOUT_SECONDS)
        app.middlewares.insert(0, guard.middleware)
        runner = web.AppRunner(
            app,
            shutdown_timeout=settings.shutdown_timeout,
            handle_signals=False,
            keepalive_timeout=IDLE_TIMEOUT_SECONDS,
            lingering_time=LINGER_SECONDS,
        )
        await runner.setup()
        # Finishes the in-flight requests, then the application's own background tasks.
        lifetime.on_stop("the HTTP server", runner.cleanup)
        assert runner.server is not None
        guard.start(runner.server)
        lifetime.on_stop("the connection guard", guard.stop)
        socket_path.bound = await bind_socket(runner, settings.socket, socket_gid)
        log.info("serving on unix:%s", settings.socket)
        if listen_address is not None:
            host, port = listen_address
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as e:
                raise InvalidInput(f"cannot listen on tcp:{settings.listen}: {e.strerror or e}", field="listen") from e
            if tokens is None:
                log.warning(
                    "serving on tcp:%s WITHOUT tokens (--insecure-read-only): every read is open to anyone who reaches "
                    "it; writes are refused",
                    settings.listen,
                )
            else:
                log.info("serving on tcp:%s (bearer tokens)", settings.listen)

        # What start-up built (modules, tables, the app) lives as long as the daemon: out of
        # the collector's way, a full collection no longer walks it (under allocation load,
        # the few full collections took longer than all the others together).
        gc.freeze()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        loop.add_signal_handler(signal.SIGINT, stopping.set)
        # A refused registration (another cluster's SQLite file) ends the daemon like a signal.
        joining.add_done_callback(lambda task: stopping.set() if not task.cancelled() and task.exception() else None)
        await stopping.wait()
        await cancel(joining)
        refused = None if joining.cancelled() else joining.exception()
        log.info("shutting down: finishing in-flight requests")
    if refused is not None:
        raise refused
    log.info("stopped")
