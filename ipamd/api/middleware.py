"""The one place where errors become HTTP responses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ipamd.api.body import CLOSE_AFTER, MAX_BODY_BYTES, json_response
from ipamd.errors import InvalidInput, IpamError, NotFound, PayloadTooLarge

log = logging.getLogger("ipamd.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        # PostgreSQL cannot compare text holding a NUL character: refuse it in names and filters.
        if "\x00" in request.path or (
            request.query_string and any("\x00" in value for value in request.query.values())
        ):
            raise InvalidInput("the path and the query may not contain NUL characters")
        return await handler(request)
    except IpamError as e:
        response = error_response(e)
        if request.get(CLOSE_AFTER):
            response.force_close()
        return response
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLarge(f"request body is over the limit of {MAX_BODY_BYTES} bytes"))
    except web.HTTPNotFound:
        return error_response(NotFound(f"no route {request.method} {request.path}"))
    except web.HTTPMethodNotAllowed as e:
        response = json_response(
            {
                "error": {
                    "code": "method_not_allowed",
                    "message": f"{request.method} is not allowed on {request.path}",
                    "cniCode": 7,
                }
            },
            status=405,
        )
        response.headers["Allow"] = ",".join(sorted(e.allowed_methods))
        return response
    except web.HTTPException as e:
        if e.status >= 400:
            return (
                error_response(InvalidInput(e.reason))
                if e.status == 400
                else json_response(
                    {"error": {"code": "http_error", "message": e.reason, "cniCode": 7}}, status=e.status
                )
            )
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(IpamError("internal error; see the daemon log"))


def error_response(error: IpamError) -> web.Response:
    return json_response(error.to_body(), status=error.http_status)
