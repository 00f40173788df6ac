"""Daemon settings: flags, with environment variables as defaults (docs/cli.md)."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from dataclasses import dataclass

from ipamd.core import identity
from ipamd.core.allocation import DEFAULT_CLUSTER
from ipamd.core.history import parse_duration
from ipamd.errors import InvalidInput
from ipamd.metrics import DEFAULT_REFRESH_SECONDS

DEFAULT_SOCKET = "/run/ipamd/ipamd.sock"
DEFAULT_DATABASE_URL = "sqlite+aiosqlite:////var/lib/ipamd/ipamd.db"


@dataclass(frozen=True)
class Settings:
    socket: str
    socket_group: str | None
    database_url: str
    migrate: bool
    listen: str | None
    token_file: str | None
    config_file: str | None
    kubernetes: bool
    kubeconfig: str | None
    node_name: str
    reconcile_interval: float
    release_grace: float
    log_format: str
    log_level: str
    shutdown_timeout: float = 10.0
    insecure_read_only: bool = False
    metrics_interval: float = DEFAULT_REFRESH_SECONDS
    adopt_annotations: bool = False
    # None: not given as a flag or in the environment; the --config file's clusterName, else
    # DEFAULT_CLUSTER (see cluster_name).
    cluster_name: str | None = None
    # Seconds; None: not given, so the --config file's history.retention or the default.
    history_retention: float | None = None


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--socket", default=env("IPAMD_SOCKET", DEFAULT_SOCKET), help="Unix socket path")
    parser.add_argument("--socket-group", default=env("IPAMD_SOCKET_GROUP"), help="group owning the socket (mode 0660)")
    parser.add_argument(
        "--database-url", default=env("IPAMD_DATABASE_URL", DEFAULT_DATABASE_URL), help="SQLAlchemy database URL"
    )
    parser.add_argument("--no-migrate", action="store_true", help="do not run migrations at start")
    parser.add_argument("--listen", default=env("IPAMD_LISTEN"), help="HOST:PORT of the TCP listener (off by default)")
    parser.add_argument("--token-file", default=env("IPAMD_TOKEN_FILE"), help="bearer tokens for the TCP listener")
    parser.add_argument(
        "--insecure-read-only",
        action="store_true",
        default=env("IPAMD_INSECURE_READ_ONLY", "") in ("1", "true"),
        help="allow --listen without --token-file: every read open to anyone who reaches HOST:PORT, no writes",
    )
    parser.add_argument(
        "--config", dest="config_file", default=env("IPAMD_CONFIG"), help="declarative YAML configuration"
    )
    parser.add_argument(
        "--kubernetes",
        action="store_true",
        default=env("IPAMD_KUBERNETES", "") in ("1", "true"),
        help="Kubernetes mode",
    )
    parser.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="kubeconfig (default: in-cluster)")
    parser.add_argument("--node-name", default=env("NODE_NAME", socket.gethostname()), help="this node's name")
    parser.add_argument(
        "--cluster-name",
        default=env("IPAMD_CLUSTER_NAME"),
        help=f"the Kubernetes cluster this daemon serves, part of every attachment's identity (default: the --config "
        f"file's clusterName, else {DEFAULT_CLUSTER!r}); clusters sharing one PostgreSQL need different names",
    )
    parser.add_argument("--reconcile-interval", type=float, default=300.0, help="seconds between reconciler runs")
    parser.add_argument("--release-grace", type=float, default=60.0, help="seconds a gone pod keeps its address")
    parser.add_argument(
        "--adopt-annotations",
        action="store_true",
        default=env("IPAMD_ADOPT_ANNOTATIONS", "") in ("1", "true"),
        help="Kubernetes mode: before serving, adopt the Kube-OVN result annotations of this node's running pods",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default=env("IPAMD_LOG_FORMAT", "text"))
    parser.add_argument("--log-level", default=env("IPAMD_LOG_LEVEL", "info"))
    parser.add_argument(
        "--metrics-interval",
        type=float,
        default=env("IPAMD_METRICS_INTERVAL", f"{DEFAULT_REFRESH_SECONDS:g}"),
        help="seconds between refreshes of the usage gauges of /metrics, while it is scraped",
    )
    parser.add_argument(
        "--history-retention",
        default=env("IPAMD_HISTORY_RETENTION"),
        metavar="DURATION",
        help="delete audit history older than this: 30d, 12h, 15m, 90s; 0 keeps everything (default: the --config file's "
        "history.retention, else 30d)",
    )
    parser.add_argument(
        "--shutdown-timeout", type=float, default=10.0, help="seconds in-flight requests get on SIGTERM"
    )


def settings_from(args: argparse.Namespace) -> Settings:
    return Settings(
        socket=args.socket,
        socket_group=args.socket_group,
        database_url=args.database_url,
        migrate=not args.no_migrate,
        listen=args.listen,
        token_file=args.token_file,
        config_file=args.config_file,
        kubernetes=args.kubernetes,
        kubeconfig=args.kubeconfig,
        node_name=args.node_name,
        reconcile_interval=args.reconcile_interval,
        release_grace=args.release_grace,
        log_format=args.log_format,
        log_level=args.log_level,
        shutdown_timeout=args.shutdown_timeout,
        insecure_read_only=args.insecure_read_only,
        metrics_interval=args.metrics_interval,
        adopt_annotations=args.adopt_annotations,
        cluster_name=args.cluster_name,
        history_retention=None
        if args.history_retention is None
        else parse_duration(args.history_retention, field="history-retention"),
    )


def parse_listen(value: str) -> tuple[str, int]:
    """Returns (host, port) of a ``--listen`` value, which must name its host.

    A bare port (or ``:PORT``) would bind every address of the node: an operator who
    wants that says so with ``0.0.0.0`` or ``[::]``.
    """
    host, colon, port = value.strip().rpartition(":")
    if not colon or not host:
        example = port if port.isascii() and port.isdigit() else "9733"
        raise InvalidInput(
            f"--listen {value!r} needs an explicit host: 127.0.0.1:{example} (this node only), "
            f"0.0.0.0:{example} (every IPv4 address) or [::]:{example} (every address)",
            field="listen",
        )
    if host.startswith("[") or host.endswith("]"):
        inner = host[1:-1] if host.startswith("[") and host.endswith("]") else ""
        try:
            ipaddress.IPv6Address(inner)
        except ValueError:
            raise InvalidInput(
                f"--listen {value!r}: expected an IPv6 address in brackets, such as [::1]:PORT", field="listen"
            ) from None
        host = inner
    elif ":" in host:
        raise InvalidInput(f"--listen {value!r}: an IPv6 host goes in brackets, such as [{host}]:PORT", field="listen")
    elif any(c.isspace() for c in host):
        raise InvalidInput(f"--listen {value!r}: the host may not contain spaces", field="listen")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise InvalidInput(f"--listen {value!r}: expected HOST:PORT with a port from 1 to 65535", field="listen")
    return host, int(port)


def cluster_name(settings: Settings, *, from_file: str | None) -> str:
    """Returns the daemon's cluster name: the flag (or environment), else the one the
    ``--config`` file declares (``from_file``), else the default; two that differ are refused."""
    if settings.cluster_name is not None:
        name = identity.cluster_name(settings.cluster_name)
        if from_file is not None and from_file != name:
            raise InvalidInput(
                f"the flag says {name} but {settings.config_file} says clusterName {from_file}: give the name in one place",
                field="cluster-name",
            )
        return name
    return from_file if from_file is not None else DEFAULT_CLUSTER


def check_metrics_interval(settings: Settings) -> None:
    # NaN fails both comparisons too.
    if not 0.1 <= settings.metrics_interval <= 3600:
        raise InvalidInput(
            f"--metrics-interval {settings.metrics_interval:g}: expected 0.1 to 3600 seconds", field="metrics-interval"
        )


def check_listener(settings: Settings) -> tuple[str, int] | None:
    """Validates the TCP listener flags; returns (host, port), or None without a listener."""
    if not settings.listen:
        if settings.insecure_read_only:
            raise InvalidInput(
                "--insecure-read-only only applies to a TCP listener: give --listen HOST:PORT too",
                field="insecure-read-only",
            )
        return None
    address = parse_listen(settings.listen)
    if not settings.token_file and not settings.insecure_read_only:
        raise InvalidInput(
            f"--listen {settings.listen} without --token-file would answer every read (allocations, pods, container ids, "
            "MACs) to anyone who reaches it, and no write: give --token-file FILE, or --insecure-read-only to accept that",
            field="listen",
        )
    return address
