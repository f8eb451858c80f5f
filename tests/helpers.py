"""Helpers shared by the tests. ``assert_api_error`` pins the one JSON error shape of each API."""

from __future__ import annotations

import json
from typing import Any


def assert_api_error(status: int, body: bytes | str | dict[str, Any], expected_status: int, contains: str = "") -> str:
    """The native API's error: exactly ``{"error": "<non-empty message>"}`` with the expected status."""
    data = body if isinstance(body, dict) else json.loads(body)
    assert status == expected_status, f"expected HTTP {expected_status}, got {status}: {data}"
    assert set(data) == {"error"}, f"error body must be exactly {{'error': ...}}, got {data}"
    message = data["error"]
    assert isinstance(message, str) and message.strip(), f"empty error message: {data}"
    assert contains.lower() in message.lower(), f"{contains!r} not in error {message!r}"
    return message


ANY_PARAM: Any = object()


def assert_openai_error(
    status: int, body: bytes | str | dict[str, Any], expected_status: int, contains: str = "", param: Any = ANY_PARAM
) -> str:
    """OpenAI's error object: ``{"error": {"message", "type", "param", "code"}}``; ``param`` checked when given."""
    data = body if isinstance(body, dict) else json.loads(body)
    assert status == expected_status, f"expected HTTP {expected_status}, got {status}: {data}"
    assert set(data) == {"error"}, data
    err = data["error"]
    assert {"message", "type", "param", "code"} <= set(err), err
    assert isinstance(err["message"], str) and err["message"].strip(), err
    assert contains.lower() in err["message"].lower(), f"{contains!r} not in {err['message']!r}"
    if param is not ANY_PARAM:
        assert err["param"] == param, f"param {err['param']!r}, expected {param!r}"
    return str(err["message"])


def store_snapshot(models_dir: Any) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Every file under the models dir and every catalog row: compare before/after a bad request."""
    import sqlite3
    from pathlib import Path

    root = Path(models_dir)
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and not p.name.startswith("catalog.db"))
    rows: list[tuple[Any, ...]] = []
    db = root / "catalog.db"
    if db.exists():
        con = sqlite3.connect(db)
        try:
            tables = [r[0] for r in con.execute("select name from sqlite_master where type='table' and name not like '\\_%' escape '\\' and name not like 'sqlite\\_%' escape '\\'")]
            for t in sorted(tables):
                rows.extend((t, *r) for r in con.execute(f"select * from [{t}] order by 1"))
        finally:
            con.close()
    return files, rows


ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def assert_anthropic_error(status: int, body: bytes | str | dict[str, Any], expected_status: int,
                           contains: str = "") -> str:
    """Anthropic's error: exactly ``{"type": "error", "error": {"type", "message"}}``, its type the
    one Anthropic gives that status."""
    data = body if isinstance(body, dict) else json.loads(body)
    assert status == expected_status, f"expected HTTP {expected_status}, got {status}: {data}"
    assert set(data) == {"type", "error"} and data["type"] == "error", data
    err = data["error"]
    assert set(err) == {"type", "message"}, err
    assert err["type"] == ANTHROPIC_ERROR_TYPES[expected_status], f"type {err['type']!r} for {expected_status}"
    assert isinstance(err["message"], str) and err["message"].strip(), err
    assert contains.lower() in err["message"].lower(), f"{contains!r} not in {err['message']!r}"
    return str(err["message"])
