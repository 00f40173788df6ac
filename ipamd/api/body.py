"""Strict request bodies and query parameters: anything malformed is a 400 naming the problem."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from ipamd.errors import InvalidInput, PayloadTooLarge

MAX_BODY_BYTES = 1024 * 1024

# Set on a request whose connection must close after the answer (its body stream broke).
CLOSE_AFTER: web.RequestKey[bool] = web.RequestKey("close_after", bool)
BODY_TIMEOUT_SECONDS = 10.0


async def json_object(request: web.Request) -> dict[str, Any]:
    """Returns the request body as a JSON object."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body of {request.content_length} bytes is over the limit of {MAX_BODY_BYTES}")
    try:
        raw = await _read_body(request)
    except web.HTTPRequestEntityTooLarge as e:
        raise PayloadTooLarge(f"request body is over the limit of {MAX_BODY_BYTES} bytes") from e
    except TimeoutError as e:
        raise InvalidInput(f"the request body did not arrive within {BODY_TIMEOUT_SECONDS:g} s") from e
    except (HttpProcessingError, RequestPayloadError) as e:
        # A body that does not decode as its Content-Encoding says (gzip, deflate, br), or
        # chunked framing that breaks off: the client's fault, not ours. The rest of the
        # stream cannot be trusted: end it here (aiohttp would read it again after the
        # answer and log the error as its own) and close the connection after the answer.
        request.content.feed_eof()
        request[CLOSE_AFTER] = True
        raise InvalidInput(f"the request body could not be decoded: {_payload_message(e)}") from e
    except ConnectionError as e:
        # The client hung up mid-body: nobody reads this answer, but it is not our fault (no 500).
        raise InvalidInput("the client closed the connection before sending the whole body") from e
    if not raw:
        raise InvalidInput("the request needs a JSON object body")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"the body is not valid UTF-8 (byte {e.start})") from e
    try:
        if text.startswith("\ufeff"):
            # What json.loads says of it (_DECODER, being no json.loads, would not).
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        value = _DECODER.decode(text)
    except RecursionError as e:
        raise InvalidInput("the JSON body is nested too deeply") from e
    except ValueError as e:
        # JSONDecodeError, NaN/Infinity, and ints with more digits than Python will convert.
        raise InvalidInput(f"the body is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise InvalidInput(f"expected a JSON object, got {type(value).__name__}")
    # PostgreSQL cannot store or compare text holding a NUL character.
    if "\\u0000" in text:
        reject_nul(value)
    # "\ud800" is valid JSON but an unpaired surrogate is no character: no database (nor
    # UTF-8) can store it, so refuse it here rather than fail deep inside a transaction.
    if "\\u" in text and _has_lone_surrogate(value):
        raise InvalidInput("the body contains an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)")
    return value


async def _read_body(request: web.Request) -> bytes:
    if request.content.is_eof():
        # The whole body came with the headers (the plugin's do): reading it cannot wait.
        return await request.read()
    # A client trickling its body would hold a handler (and its connection) forever.
    async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
        return await request.read()


def _payload_message(error: Exception) -> str:
    message = getattr(error, "message", None) or str(error)
    # aiohttp's messages start with the status ("400, message:\n  ...").
    return " ".join(message.split("message:", 1)[-1].split()) or type(error).__name__


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# Made once: json.loads and json.dumps with options build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def reject_nul(value: Any, where: str = "") -> None:
    """Raises InvalidInput naming the first field whose key or text holds a NUL character."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput("strings may not contain NUL characters", field=where or None)
    elif isinstance(value, dict):
        for key, item in value.items():
            reject_nul(key, where)
            reject_nul(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            reject_nul(item, f"{where}[{index}]")


def query_flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no", ""):
        return False
    raise InvalidInput(f"expected true or false, got {value!r}", field=name)


# Ids are 32-bit integer columns: a larger one cannot exist, and PostgreSQL refuses to compare with it.
MAX_ID = 2**31 - 1


def path_int(request: web.Request, name: str) -> int:
    text = request.match_info[name]
    # isascii: str.isdigit() also accepts digits int() refuses, such as '¹'.
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > MAX_ID:
        raise InvalidInput(f"expected a numeric id of at most {MAX_ID}, got {text!r}", field=name)
    return int(text)


def json_response(data: Any, *, status: int = 200) -> web.Response:
    return web.Response(body=_ENCODER.encode(data).encode(), status=status, content_type="application/json")
