"""``GET /metrics`` and the middleware that measures allocating requests (``ipamd.metrics``
holds the counters and the usage gauges; docs/metrics.md is the contract)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from ipamd.api.keys import CNI_OUTCOME
from ipamd.errors import IpamError
from ipamd.metrics import CONTENT_TYPE, Metrics, gzip_joined

METRICS: web.AppKey[Metrics] = web.AppKey("metrics")

# The routes that allocate, by method and path, with their ``route`` label.
ALLOCATING_ROUTES = {("POST", "/v1/cni/add"): "/v1/cni/add", ("POST", "/v1/allocations"): "/v1/allocations"}
# The CNI plugin's endpoint (/v1/cni/exec) answers failures inside a 200; an ADD through it
# is counted as /v1/cni/add.
CNI_ADD_ROUTE = "/v1/cni/add"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def measuring_middleware(metrics: Metrics) -> Middleware:
    """Returns the middleware that times allocating routes and counts their outcome, and
    counts conflicts and database errors of any route."""

    @web.middleware
    async def measure(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = ALLOCATING_ROUTES.get((request.method, request.path))
        start = time.perf_counter()
        outcome = "ok"
        try:
            response = await handler(request)
            verb, error = request.get(CNI_OUTCOME, (None, None))
            if verb == "ADD":
                route = CNI_ADD_ROUTE
            if error is not None:
                outcome = metrics.request_failed(error, route_template(request))
            return response
        except IpamError as e:
            outcome = metrics.request_failed(e, route_template(request))
            raise
        except web.HTTPException as e:
            outcome = "http_error" if e.status >= 400 else "ok"
            raise
        except Exception:
            outcome = "internal"
            raise
        finally:
            if route is not None:
                metrics.request_answered(route, outcome, time.perf_counter() - start)

    return measure


def route_template(request: web.Request) -> str:
    """Returns the route template (``/v1/subnets/{name}``), never the raw path: labels stay few."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


async def scrape(request: web.Request) -> web.Response:
    """Renders the counters and appends the usage text the background task last rendered."""
    counters, usage, usage_deflated = await request.app[METRICS].exposition()
    if "gzip" not in request.headers.get("Accept-Encoding", "") or not usage:
        return web.Response(body=counters + usage, headers={"Content-Type": CONTENT_TYPE})
    # Prometheus asks for gzip: the usage text was compressed when it was rendered.
    body = gzip_joined(counters, usage, usage_deflated)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Content-Encoding": "gzip"})


def install(app: web.Application, metrics: Metrics) -> None:
    """Adds ``/metrics`` and the measuring middleware to ``app``; the usage refresh stops with it."""

    async def lifetime(_: web.Application) -> AsyncIterator[None]:
        yield
        await metrics.stop()

    app[METRICS] = metrics
    app.cleanup_ctx.append(lifetime)
    # Innermost: it sees the domain errors before the error middleware turns them into responses.
    app.middlewares.append(measuring_middleware(metrics))
    app.router.add_get("/metrics", scrape)
