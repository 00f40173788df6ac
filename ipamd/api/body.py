"""Strict request bodies and query parameters: anything malformed is a 400 naming the problem."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ipamd.errors import InvalidInput, PayloadTooLarge

MAX_BODY_BYTES = 1024 * 1024


async def json_object(request: web.Request) -> dict[str, Any]:
    """Returns the request body as a JSON object."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes is over the limit of {MAX_BODY_BYTES}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(f"request body is over the limit of {MAX_BODY_BYTES} bytes") from e
    if not raw:
        raise InvalidInput("the request needs a JSON object body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"the body is not valid UTF-8 (byte {e.start})") from e
    try:
        value = json.loads(text)
    except RecursionError as e:
        raise InvalidInput("the JSON body is nested too deeply") from e
    except ValueError as e:
        # JSONDecodeError, and ints with more digits than Python will convert.
        raise InvalidInput(f"the body is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise InvalidInput(f"expected a JSON object, got {type(value).__name__}")
    return value


def query_flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise InvalidInput(f"expected true or false, got {value!r}", field=name)


def path_int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    if not text.isdigit() or len(text) > 18:
        raise InvalidInput(f"expected a numeric id, got {text!r}", field=name)
    return int(text)


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(), status=status, content_type="application/json"
    )
