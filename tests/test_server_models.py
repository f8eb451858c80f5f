"""Model-management routes, middleware and HTTP helpers, on the real app with aiohttp's test client."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ollamalike import __version__
from ollamalike.config import load_config
from ollamalike.errors import BadRequest, ModelNotFound
from ollamalike.server.app import make_app
from ollamalike.server.http import get_bool, get_int, get_str, model_field, read_json, stream_ndjson
from tests.helpers import assert_api_error, assert_openai_error, store_snapshot


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(make_app(load_config()))


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- basics --------------------------------------------------------------------------------------
async def test_root_get_and_head(client: Any) -> None:
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/plain"
    assert await resp.text() == "Ollama is running"
    resp = await client.head("/")
    assert resp.status == 200


async def test_version(client: Any) -> None:
    resp = await client.get("/api/version")
    assert resp.status == 200
    assert await resp.json() == {"version": __version__}


async def test_unknown_route_is_json_404(client: Any) -> None:
    resp = await client.get("/api/nope")
    assert_api_error(resp.status, await resp.read(), 404, "404 page not found")


async def test_unknown_openai_route_uses_openai_shape(client: Any) -> None:
    resp = await client.post("/v1/nope", json={})
    assert_openai_error(resp.status, await resp.read(), 404, "not found")


async def test_wrong_method_is_json_405(client: Any) -> None:
    resp = await client.put("/api/version")
    assert_api_error(resp.status, await resp.read(), 405, "PUT")
    assert "GET" in resp.headers["Allow"]
    resp = await client.get("/api/delete")
    assert_api_error(resp.status, await resp.read(), 405)


# -- request parsing -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "method", "raw", "contains"),
    [
        ("/api/show", "POST", b"", "missing request body"),
        ("/api/show", "POST", b"{", "invalid JSON"),
        ("/api/show", "POST", b"\xff\xfe", "invalid JSON"),
        ("/api/show", "POST", b"[1, 2]", "must be a JSON object"),
        ("/api/show", "POST", b'"model"', "must be a JSON object"),
        ("/api/show", "POST", b"{}", "model is required"),
        ("/api/show", "POST", b'{"model": 3}', "invalid value for 'model': expected a string"),
        ("/api/show", "POST", b'{"model": "m", "verbose": "yes"}', "invalid value for 'verbose': expected a boolean"),
        ("/api/create", "POST", b'{"model": "m", "stream": 1}', "invalid value for 'stream'"),
        ("/api/create", "POST", b"{}", "model is required"),
        ("/api/copy", "POST", b'{"source": "a"}', "'destination' is required"),
        ("/api/copy", "POST", b'{"destination": "a"}', "'source' is required"),
        ("/api/copy", "POST", b'{"source": ["a"], "destination": "b"}', "invalid value for 'source'"),
        ("/api/delete", "DELETE", b"{}", "model is required"),
        ("/api/delete", "DELETE", b"null", "must be a JSON object"),
    ],
)
async def test_bad_bodies_are_400(client: Any, models_dir: Path, path: str, method: str, raw: bytes, contains: str) -> None:
    before = store_snapshot(models_dir)
    resp = await client.request(method, path, data=raw, headers={"Content-Type": "application/json"})
    assert_api_error(resp.status, await resp.read(), 400, contains)
    assert store_snapshot(models_dir) == before


async def test_body_over_limit_is_413(aiohttp_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMALIKE_MAX_BODY_BYTES", "2048")
    client = await aiohttp_client(make_app(load_config()))
    resp = await client.post("/api/show", data=b'{"model": "' + b"a" * 4096 + b'"}')
    assert_api_error(resp.status, await resp.read(), 413, "too large")


def test_field_getters() -> None:
    body = {"s": "x", "b": True, "i": 3, "f": 2.5, "n": None, "name": "alias"}
    assert get_str(body, "s") == "x"
    assert get_str(body, "n", "d") == "d"
    assert get_bool(body, "b") is True
    assert get_int(body, "i") == 3
    assert model_field(body) == "alias"
    assert model_field({"model": "m", "name": "other"}) == "m"
    with pytest.raises(BadRequest, match="'b': expected a string, got a boolean"):
        get_str(body, "b")
    with pytest.raises(BadRequest, match="'i': expected a boolean, got a number"):
        get_bool(body, "i")
    with pytest.raises(BadRequest, match="'f': expected an integer"):
        get_int(body, "f")
    with pytest.raises(BadRequest, match="'b': expected an integer"):
        get_int(body, "b")
    with pytest.raises(BadRequest, match="'s' is required"):
        get_str({}, "s", required=True)
    with pytest.raises(BadRequest, match="model is required"):
        model_field({})


# -- middleware and streaming --------------------------------------------------------------------
async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError("kaboom")


async def _not_found(request: web.Request) -> web.Response:
    raise ModelNotFound("ghost")


def _stream_app(events: list[str], fail_after: int | None = None, count: int = 3) -> web.Application:
    app = make_app(load_config())

    async def produce() -> AsyncIterator[dict[str, Any]]:
        try:
            for i in range(count):
                if fail_after is not None and i == fail_after:
                    raise BadRequest("went wrong midway")
                yield {"n": i}
                await asyncio.sleep(0)
            if fail_after is None and count == 0:
                return
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        finally:
            events.append("closed")

    async def handler(request: web.Request) -> web.StreamResponse:
        await read_json(request, allow_empty=True)
        return await stream_ndjson(request, produce())

    async def slow(request: web.Request) -> web.StreamResponse:
        async def forever() -> AsyncIterator[dict[str, Any]]:
            try:
                yield {"n": 0}
                while True:
                    await asyncio.sleep(0.01)
                    yield {"n": 1}
            except (asyncio.CancelledError, GeneratorExit):
                events.append("cancelled")
                raise

        return await stream_ndjson(request, forever())

    app.router.add_post("/test/stream", handler)
    app.router.add_post("/test/slow", slow)
    app.router.add_get("/test/boom", _boom)
    app.router.add_get("/v1/test/boom", _boom)
    app.router.add_get("/v1/test/missing", _not_found)
    return app


async def test_unexpected_exception_is_500_and_daemon_keeps_serving(aiohttp_client: Any) -> None:
    client = await aiohttp_client(_stream_app([]))
    resp = await client.get("/test/boom")
    message = assert_api_error(resp.status, await resp.read(), 500, "internal error")
    assert "kaboom" in message
    resp = await client.get("/v1/test/boom")
    body = await resp.json()
    assert_openai_error(resp.status, body, 500, "kaboom")
    assert body["error"]["type"] == "server_error"
    resp = await client.get("/v1/test/missing")
    assert_openai_error(resp.status, await resp.read(), 404, "model 'ghost' not found")
    resp = await client.get("/api/version")
    assert resp.status == 200


async def test_stream_ndjson_format(aiohttp_client: Any) -> None:
    events: list[str] = []
    client = await aiohttp_client(_stream_app(events))
    resp = await client.post("/test/stream")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    raw = await resp.text()
    assert raw == '{"n":0}\n{"n":1}\n{"n":2}\n'
    assert events == ["closed"]


async def test_error_before_first_chunk_is_a_status(aiohttp_client: Any) -> None:
    client = await aiohttp_client(_stream_app([], fail_after=0))
    resp = await client.post("/test/stream")
    assert_api_error(resp.status, await resp.read(), 400, "went wrong midway")


async def test_error_after_streaming_started_is_final_error_line(aiohttp_client: Any) -> None:
    client = await aiohttp_client(_stream_app([], fail_after=2))
    resp = await client.post("/test/stream")
    assert resp.status == 200
    lines = (await resp.text()).splitlines()
    assert [json.loads(line) for line in lines] == [{"n": 0}, {"n": 1}, {"error": "went wrong midway"}]


async def test_client_disconnect_cancels_the_iterator(aiohttp_client: Any) -> None:
    events: list[str] = []
    client = await aiohttp_client(_stream_app(events))
    resp = await client.post("/test/slow")
    assert resp.status == 200
    await resp.content.readline()
    resp.close()
    for _ in range(200):
        if "cancelled" in events:
            break
        await asyncio.sleep(0.01)
    assert events == ["cancelled"]


# -- blobs ---------------------------------------------------------------------------------------
async def test_blob_upload_head_and_idempotence(client: Any, models_dir: Path) -> None:
    data = b"GGUF" + bytes(range(256)) * 64
    digest = _digest(data)
    resp = await client.head(f"/api/blobs/{digest}")
    assert resp.status == 404
    resp = await client.post(f"/api/blobs/{digest}", data=data)
    assert resp.status == 201, await resp.text()
    resp = await client.head(f"/api/blobs/{digest}")
    assert resp.status == 200
    # the sha256-<hex> spelling names the same blob
    resp = await client.head(f"/api/blobs/{digest.replace(':', '-')}")
    assert resp.status == 200
    resp = await client.post(f"/api/blobs/{digest}", data=data)
    assert resp.status == 200
    stored = [p for p in (models_dir / "blobs").iterdir() if p.is_file()]
    assert [p.read_bytes() for p in stored] == [data]


async def test_blob_upload_chunked_body(client: Any) -> None:
    data = b"x" * 300_000

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), 65536):
            yield data[i : i + 65536]

    resp = await client.post(f"/api/blobs/{_digest(data)}", data=body())
    assert resp.status == 201, await resp.text()


async def test_blob_digest_mismatch_stores_nothing(client: Any, models_dir: Path) -> None:
    before = store_snapshot(models_dir)
    resp = await client.post(f"/api/blobs/{_digest(b'other')}", data=b"content")
    assert_api_error(resp.status, await resp.read(), 400, "digest mismatch")
    assert store_snapshot(models_dir) == before
    blobs = models_dir / "blobs"
    assert not blobs.exists() or not any(blobs.iterdir())


@pytest.mark.parametrize(
    "digest",
    [
        "sha256:abc",
        "sha256:" + "g" * 64,
        "sha256:" + "A" * 64,
        "md5:" + "a" * 32,
        "sha256:..%2F..%2F..%2Fetc%2Fpasswd",
        "..%2F..%2Fcatalog.db",
        "sha256-" + "a" * 63 + "%2F",
        "sha256:" + "a" * 64 + "%2F..%2Fx",
        "%2Fetc%2Fpasswd",
    ],
)
async def test_invalid_blob_digest_is_400(client: Any, models_dir: Path, digest: str) -> None:
    before = store_snapshot(models_dir)
    resp = await client.post(f"/api/blobs/{digest}", data=b"data")
    assert_api_error(resp.status, await resp.read(), 400, "invalid digest")
    resp = await client.head(f"/api/blobs/{digest}")
    assert resp.status == 400
    assert store_snapshot(models_dir) == before
