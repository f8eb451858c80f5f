"""Request parsing and response helpers shared by every route module.

``read_json`` and the typed getters turn bad input into ``BadRequest`` naming the field;
``stream_ndjson`` streams an async iterator of dicts as NDJSON and turns an error raised after
the headers were sent into a final ``{"error": ...}`` line (the status can no longer change).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import AsyncIterator

from aiohttp import web

from ollamalike.errors import BadRequest, PayloadTooLarge
from ollamalike.jsonfields import (
    get_bool,
    get_dict,
    get_int,
    get_list,
    get_number,
    get_str,
    model_field,
    type_name,
)
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.server import streaming
from ollamalike.server.streaming import close_quietly, dumps, encode_json

# The field getters are re-exported: route modules take them from here with the other request helpers.
__all__ = [
    "close_quietly",
    "collect_last",
    "dumps",
    "encode_json",
    "get_bool",
    "get_dict",
    "get_int",
    "get_list",
    "get_number",
    "get_str",
    "json_response",
    "model_field",
    "read_body",
    "read_json",
    "stream_ndjson",
]

log = logging.getLogger("ollamalike.server")


# Deeper request JSON is refused: real bodies (tool schemas included) nest a few dozen levels, and
# deeper ones would only exhaust the recursion of whatever walks them next.
MAX_JSON_DEPTH = 256


def json_response(obj: object, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=encode_json(obj), status=status, content_type="application/json", charset="utf-8", headers=headers
    )


def _max_body(request: web.Request) -> int:
    state = request.app.get("state")
    config = getattr(state, "config", None)
    return int(getattr(config, "max_body_bytes", 64 * 1024 * 1024))


async def read_body(request: web.Request) -> bytes:
    """The whole request body, refusing bodies over the configured limit without buffering them."""
    limit = _max_body(request)
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request body too large: {request.content_length} bytes (limit {limit})")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        total += len(chunk)
        if total > limit:
            raise PayloadTooLarge(f"request body too large (limit {limit} bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: web.Request, allow_empty: bool = False) -> JSONObject:
    """The body as a JSON object. ``allow_empty`` lets an empty body mean ``{}``."""
    raw = await read_body(request)
    if not raw.strip():
        if allow_empty:
            return {}
        raise BadRequest("missing request body")
    try:
        data: JSONValue = json.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("invalid JSON: body is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise BadRequest(f"invalid JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except RecursionError:
        raise BadRequest(f"invalid JSON: nested more than {MAX_JSON_DEPTH} levels deep") from None
    except ValueError:  # Python's limit on integer digits (sys.get_int_max_str_digits(), 4300)
        raise BadRequest(f"invalid JSON: an integer has more than {sys.get_int_max_str_digits()} digits") from None
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {type_name(data)}")
    check_json_value(data)
    return data


def check_json_value(data: object) -> None:
    """Refuse what JSON allows but nothing downstream can use: nesting beyond MAX_JSON_DEPTH, and lone
    UTF-16 surrogates ("\\ud800"), which are not text and cannot be written back out as UTF-8."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            if not value.isascii():
                try:
                    value.encode("utf-8")
                except UnicodeEncodeError:
                    raise BadRequest("invalid JSON: a string holds a lone UTF-16 surrogate (not valid Unicode)") from None
            continue
        if isinstance(value, dict):
            items: list[object] = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            items = value
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise BadRequest(f"invalid JSON: nested more than {MAX_JSON_DEPTH} levels deep")
        stack.extend((item, depth + 1) for item in items if isinstance(item, (str, dict, list)))


async def stream_ndjson(request: web.Request, chunks: AsyncIterator[streaming.Chunk]) -> web.StreamResponse:
    """Stream ``chunks`` as NDJSON (``server/streaming.py``: the one skeleton, errors and disconnects)."""
    return await streaming.stream(request, chunks, streaming.ndjson())


async def collect_last(chunks: AsyncIterator[streaming.Chunk]) -> streaming.Chunk:
    """For ``stream: false`` status streams: run to the end and return the final object."""
    last: streaming.Chunk = {}
    async for chunk in chunks:
        last = chunk
    return last
