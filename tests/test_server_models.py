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

from ollamalike import OLLAMA_VERSION, __version__
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
    # Clients compare this with Ollama releases (feature gates), so it is the Ollama version we match.
    assert await resp.json() == {"version": OLLAMA_VERSION}
    assert tuple(int(p) for p in OLLAMA_VERSION.split(".")) >= (0, 12, 0)
    assert resp.headers["X-Ollamalike-Version"] == __version__


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
        # The inference routes: the body is checked to be an object once, here at the edge
        # (the request parsers take a JSONObject and no longer check it again).
        ("/api/generate", "POST", b"[]", "must be a JSON object, got an array"),
        ("/api/chat", "POST", b'"hi"', "must be a JSON object, got a string"),
        ("/api/embed", "POST", b"null", "must be a JSON object"),
        ("/api/embeddings", "POST", b"3", "must be a JSON object, got a number"),
        ("/api/generate", "POST", b'{"model": "bad name!"}', "invalid model name"),
        ("/api/chat", "POST", b'{"model": " m"}', "whitespace"),
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


# -- model management over the real library and store ------------------------------------------
TEMPLATE = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n"


async def _upload(client: Any, path: Path) -> str:
    data = path.read_bytes()
    digest = _digest(data)
    resp = await client.post(f"/api/blobs/{digest}", data=data)
    assert resp.status in (200, 201), await resp.text()
    return digest


async def _create(client: Any, body: dict[str, Any]) -> list[dict[str, Any]]:
    resp = await client.post("/api/create", json=body)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in (await resp.text()).splitlines()]


async def test_create_tags_show_copy_delete(client: Any, tiny_chat_gguf: Path, models_dir: Path) -> None:
    digest = await _upload(client, tiny_chat_gguf)
    statuses = await _create(
        client,
        {
            "model": "tiny",
            "files": {"tiny-chat.gguf": digest},
            "template": TEMPLATE,
            "system": "Be brief.",
            "parameters": {"temperature": 0.5, "stop": ["<|im_end|>"]},
            "license": ["MIT"],
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
        },
    )
    assert statuses[-1] == {"status": "success"}
    assert {"status": "writing manifest"} in statuses
    # stream: false answers one object; ``name`` is accepted for ``model``
    resp = await client.post("/api/create", json={"name": "tiny2", "from": "tiny", "stream": False})
    assert resp.status == 200
    assert resp.content_type == "application/json"
    assert await resp.json() == {"status": "success"}

    resp = await client.get("/api/tags")
    assert resp.status == 200
    models = (await resp.json())["models"]
    assert sorted(m["name"] for m in models) == ["tiny2:latest", "tiny:latest"]
    entry = next(m for m in models if m["name"] == "tiny:latest")
    assert entry["model"] == "tiny:latest"
    assert len(entry["digest"]) == 64 and entry["size"] > tiny_chat_gguf.stat().st_size
    assert entry["details"]["format"] == "gguf" and entry["details"]["family"] == "llama"
    assert "T" in entry["modified_at"]

    resp = await client.post("/api/show", json={"model": "tiny"})
    assert resp.status == 200
    shown = await resp.json()
    assert shown["template"] == TEMPLATE
    assert shown["system"] == "Be brief."
    assert shown["license"] == "MIT"
    assert "temperature" in shown["parameters"]
    assert shown["model_info"]["general.architecture"] == "llama"
    assert shown["messages"] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    assert shown["model_info"]["tokenizer.ggml.tokens"] is None  # the vocabulary only when verbose
    resp = await client.post("/api/show", json={"name": "tiny", "verbose": True})
    assert resp.status == 200
    tokens = (await resp.json())["model_info"]["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list) and len(tokens) > 1000 and "<s>" in tokens

    resp = await client.post("/api/copy", json={"source": "tiny", "destination": "other/tiny:v2"})
    assert resp.status == 200
    resp = await client.post("/api/show", json={"model": "other/tiny:v2"})
    assert (await resp.json())["system"] == "Be brief."

    for name in ("tiny", "tiny2", "other/tiny:v2"):
        resp = await client.delete("/api/delete", json={"model": name})
        assert resp.status == 200, await resp.text()
    resp = await client.get("/api/tags")
    assert (await resp.json()) == {"models": []}
    # deleting the last reference collects the blobs
    assert not [p for p in (models_dir / "blobs").iterdir() if p.is_file()]


async def test_model_route_errors_leave_store_unchanged(client: Any, tiny_chat_gguf: Path, models_dir: Path, tmp_path: Path) -> None:
    digest = await _upload(client, tiny_chat_gguf)
    await _create(client, {"model": "keep", "files": {"w.gguf": digest}})
    before = store_snapshot(models_dir)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a gguf file" * 50)
    junk_digest = await _upload(client, junk)
    cases: list[tuple[str, str, dict[str, Any], int, str]] = [
        # First: the failed create drops the blob uploaded for it (issue 21 item 15; it used to stay).
        ("POST", "/api/create", {"model": "x", "files": {"junk.gguf": junk_digest}}, 400, "GGUF"),
        ("POST", "/api/show", {"model": "ghost"}, 404, "model 'ghost' not found"),
        ("POST", "/api/show", {"model": "bad name!"}, 400, "invalid model name"),
        ("DELETE", "/api/delete", {"model": "ghost"}, 404, "not found"),
        ("DELETE", "/api/delete", {"model": "../../etc"}, 400, "invalid model name"),
        ("POST", "/api/copy", {"source": "ghost", "destination": "x"}, 404, "not found"),
        ("POST", "/api/copy", {"source": "keep", "destination": "a/b/c/d"}, 400, "invalid model name"),
        ("POST", "/api/create", {"model": "x"}, 400, ""),  # neither from nor files
        ("POST", "/api/create", {"model": "bad/na/me/x", "from": "keep"}, 400, "invalid model name"),
        ("POST", "/api/create", {"model": "x", "files": {"w.gguf": "sha256:" + "0" * 64}}, 400, ""),
        ("POST", "/api/create", {"model": "x", "files": {"w.gguf": "sha256:../x"}}, 400, ""),
        ("POST", "/api/create", {"model": "x", "files": ["w.gguf"]}, 400, "files"),
        ("POST", "/api/create", {"model": "x", "from": "keep", "parameters": {"temperature": "hot"}}, 400, "temperature"),
        ("POST", "/api/create", {"model": "x", "from": "keep", "parameters": {"no_such_option": 1}}, 400, "no_such_option"),
        ("POST", "/api/create", {"model": "x", "from": "keep", "template": "{{ .Prompt "}, 400, "template"),
        ("POST", "/api/create", {"model": "x", "from": "keep", "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ("POST", "/api/create", {"model": "x", "from": "keep", "license": 5}, 400, "license"),
        ("POST", "/api/create", {"model": "x", "modelfile": "FROM keep\nBOGUS x\n"}, 400, "line 2"),
        ("POST", "/api/create", {"model": "x", "modelfile": "SYSTEM hi\n"}, 400, "FROM"),
        ("POST", "/api/create", {"model": "x", "from": "keep", "stream": False, "system": 7}, 400, "system"),
    ]
    for method, path, body, status, contains in cases:
        resp = await client.request(method, path, json=body)
        raw = await resp.read()
        assert resp.status != 200, (body, raw)
        assert_api_error(resp.status, raw, status, contains)
        assert store_snapshot(models_dir) == before, (path, body)


@pytest.mark.parametrize(
    "raw_path",
    ["/api/blobs/sha256:../../../etc/passwd", "/api/blobs/../../../etc/passwd", "/api/blobs/sha256-..%2f..%2fcatalog.db"],
)
async def test_raw_traversal_paths_never_reach_the_filesystem(client: Any, models_dir: Path, raw_path: str) -> None:
    """Sent byte for byte (no client-side path normalisation)."""
    before = store_snapshot(models_dir)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        f"POST {raw_path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\nConnection: close\r\n\r\ndata".encode()
    )
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert status in (400, 404), response
    assert_api_error(status, body, status)
    assert store_snapshot(models_dir) == before


async def test_interrupted_blob_upload_leaves_nothing(client: Any, models_dir: Path) -> None:
    data = b"y" * 1_000_000
    digest = _digest(data)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len(data)}\r\n\r\n".encode())
    writer.write(data[:100_000])
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.transport.abort()
    blobs = models_dir / "blobs"
    for _ in range(200):
        leftovers = [p.name for p in blobs.iterdir()] if blobs.exists() else []
        if not leftovers:
            break
        await asyncio.sleep(0.02)
    assert leftovers == []
    resp = await client.head(f"/api/blobs/{digest}")
    assert resp.status == 404
    # and the daemon is fine: the full upload works afterwards
    resp = await client.post(f"/api/blobs/{digest}", data=data)
    assert resp.status == 201
