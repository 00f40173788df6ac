"""Daemon settings: flags, with environment variables as defaults (docs/cli.md)."""

from __future__ import annotations

import argparse
import os
import socket
from dataclasses import dataclass

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


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    parser.add_argument("--socket", default=env("IPAMD_SOCKET", DEFAULT_SOCKET), help="Unix socket path")
    parser.add_argument("--socket-group", default=env("IPAMD_SOCKET_GROUP"), help="group owning the socket (mode 0660)")
    parser.add_argument("--database-url", default=env("IPAMD_DATABASE_URL", DEFAULT_DATABASE_URL), help="SQLAlchemy database URL")
    parser.add_argument("--no-migrate", action="store_true", help="do not run migrations at start")
    parser.add_argument("--listen", default=env("IPAMD_LISTEN"), help="HOST:PORT of the TCP listener (off by default)")
    parser.add_argument("--token-file", default=env("IPAMD_TOKEN_FILE"), help="bearer tokens for the TCP listener")
    parser.add_argument("--config", dest="config_file", default=env("IPAMD_CONFIG"), help="declarative YAML configuration")
    parser.add_argument("--kubernetes", action="store_true", default=env("IPAMD_KUBERNETES", "") in ("1", "true"), help="Kubernetes mode")
    parser.add_argument("--kubeconfig", default=env("KUBECONFIG"), help="kubeconfig (default: in-cluster)")
    parser.add_argument("--node-name", default=env("NODE_NAME", socket.gethostname()), help="this node's name")
    parser.add_argument("--reconcile-interval", type=float, default=300.0, help="seconds between reconciler runs")
    parser.add_argument("--release-grace", type=float, default=60.0, help="seconds a gone pod keeps its address")
    parser.add_argument("--log-format", choices=("text", "json"), default=env("IPAMD_LOG_FORMAT", "text"))
    parser.add_argument("--log-level", default=env("IPAMD_LOG_LEVEL", "info"))
    parser.add_argument("--shutdown-timeout", type=float, default=10.0, help="seconds in-flight requests get on SIGTERM")


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
    )
