"""The aiohttp application factory."""

from __future__ import annotations

from aiohttp import web

from ipamd import retention
from ipamd.api import allocations, cni, health, ips, openapi, pools, reservations, subnets
from ipamd.api import metrics as metrics_route
from ipamd.api.auth import TokenTable, auth_middleware
from ipamd.api.body import MAX_BODY_BYTES
from ipamd.api.keys import IPAM, POLICY, TOKENS
from ipamd.api.middleware import errors_middleware
from ipamd.metrics import Metrics
from ipamd.policy import AttachmentPolicy, StandalonePolicy
from ipamd.service import Ipam

RESOURCE_ROUTES = (
    health.routes,
    cni.routes,
    subnets.routes,
    pools.routes,
    reservations.routes,
    allocations.routes,
    ips.routes,
    openapi.routes,
)


def create_app(
    ipam: Ipam,
    *,
    policy: AttachmentPolicy | None = None,
    tokens: TokenTable | None = None,
    metrics: Metrics | None = None,
    history_retention: float | None = None,
) -> web.Application:
    """Returns the application serving the REST API and the CNI endpoints; with
    ``history_retention`` (seconds, 0: keep everything) it prunes the history while it runs.

    ``metrics`` are the application's own, refreshed every DEFAULT_REFRESH_SECONDS, unless
    given (the daemon makes them first, with its --metrics-interval, for the Kubernetes
    reconciler to count into)."""
    app = web.Application(middlewares=[errors_middleware, auth_middleware], client_max_size=MAX_BODY_BYTES)
    app[IPAM] = ipam
    app[POLICY] = policy or StandalonePolicy()
    app[TOKENS] = tokens
    for table in RESOURCE_ROUTES:
        app.add_routes(table)
    if metrics is None:
        metrics = Metrics(cluster=ipam.cluster, read_usage=ipam.usage)
    ipam.listeners.append(metrics.on_event)
    metrics_route.install(app, metrics)
    app.cleanup_ctx.append(health.watch_database)
    if history_retention is not None:
        retention.install(app, ipam, retention=history_retention)
    return app
