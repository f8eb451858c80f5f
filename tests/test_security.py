"""Auth, admin key, CORS, Host check and request limits on the real app (aiohttp test client),
plus the bind check of ``ollamalike serve`` and the real daemon with a key."""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ollamalike.client import Client, client_for
from ollamalike.config import load_config
from ollamalike.errors import BadRequest, Forbidden, Unauthorized
from ollamalike.server import security
from ollamalike.server.app import make_app
from tests.daemon import Daemon, daemon_env, free_port
from tests.helpers import assert_api_error, assert_openai_error, store_snapshot

KEY = "s3cret-key"
ADMIN = "admin-key-xyz"


def app_for(env: dict[str, str]) -> Any:
    return make_app(load_config({"OLLAMALIKE_HOME": env.pop("HOME_DIR"), **env}))


@pytest.fixture
def make_client(aiohttp_client: Any, tmp_path: Path) -> Callable[..., Any]:
    async def make(**env: str) -> Any:
        return await aiohttp_client(app_for({"HOME_DIR": str(tmp_path / "home"), **env}))

    return make


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- bearer auth ---------------------------------------------------------------------------------
async def test_no_key_configured_everything_is_open(make_client: Any) -> None:
    client = await make_client()
    assert (await client.get("/api/tags")).status == 200
    assert (await client.get("/v1/models")).status == 200


async def test_key_required_everywhere_except_root(make_client: Any) -> None:
    client = await make_client(OLLAMALIKE_API_KEY=KEY)
    assert (await client.get("/")).status == 200
    assert (await client.head("/")).status == 200
    for method, path in [("GET", "/api/tags"), ("GET", "/api/version"), ("GET", "/api/ps"), ("POST", "/api/show"),
                         ("POST", "/api/generate"), ("GET", "/metrics"), ("GET", "/api/nope"), ("POST", "/")]:
        resp = await client.request(method, path, json={})
        assert_api_error(resp.status, await resp.read(), 401, "unauthorized")
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    resp = await client.get("/api/tags", headers=bearer("wrong"))
    assert_api_error(resp.status, await resp.read(), 401, "invalid API key")
    resp = await client.get("/api/tags", headers={"Authorization": f"Basic {KEY}"})
    assert resp.status == 401
    resp = await client.get("/api/tags", headers={"Authorization": f"bearer   {KEY}"})
    assert resp.status == 200
    assert (await client.get("/metrics", headers=bearer(KEY))).status == 200


async def test_x_api_key_header_is_a_key_too(make_client: Any) -> None:
    """Anthropic's clients send the key as ``x-api-key``: accepted on every API, admin routes included."""
    from tests.helpers import assert_anthropic_error

    client = await make_client(OLLAMALIKE_API_KEY=KEY, OLLAMALIKE_ADMIN_KEY=ADMIN)
    assert (await client.get("/api/tags", headers={"x-api-key": KEY})).status == 200
    assert (await client.get("/v1/models", headers={"x-api-key": KEY})).status == 200
    resp = await client.get("/api/tags", headers={"x-api-key": "wrong"})
    assert_api_error(resp.status, await resp.read(), 401, "invalid API key")
    resp = await client.post("/api/copy", json={"source": "a", "destination": "b"}, headers={"x-api-key": KEY})
    assert_api_error(resp.status, await resp.read(), 403, "admin key")
    resp = await client.post("/api/copy", json={"source": "a", "destination": "b"}, headers={"x-api-key": ADMIN})
    assert resp.status != 401 and resp.status != 403
    resp = await client.post("/v1/messages", json={"model": "x", "max_tokens": 1, "messages": []})
    assert_anthropic_error(resp.status, await resp.read(), 401, "unauthorized")
    # A bearer token wins over x-api-key when both are sent.
    resp = await client.get("/api/tags", headers={"x-api-key": KEY, **bearer("wrong")})
    assert resp.status == 401


async def test_openai_paths_get_openai_shaped_401(make_client: Any) -> None:
    client = await make_client(OLLAMALIKE_API_KEY=KEY)
    resp = await client.post("/v1/chat/completions", json={"model": "x", "messages": []})
    body = await resp.json()
    assert_openai_error(resp.status, body, 401, "unauthorized")
    assert body["error"]["type"] == "authentication_error"
    resp = await client.get("/v1/models", headers=bearer(KEY))
    assert resp.status == 200


async def test_several_keys_and_a_key_file(make_client: Any, tmp_path: Path) -> None:
    client = await make_client(OLLAMALIKE_API_KEY="k1, k2 ,k3")
    for key in ("k1", "k2", "k3"):
        assert (await client.get("/api/tags", headers=bearer(key))).status == 200
    assert (await client.get("/api/tags", headers=bearer("k1,k2"))).status == 401
    keyfile = tmp_path / "keys"
    keyfile.write_text("# comment\nfile-key-1\n\nfile-key-2\n")
    client = await make_client(OLLAMALIKE_API_KEY=f"@{keyfile}")
    assert (await client.get("/api/tags", headers=bearer("file-key-2"))).status == 200
    assert (await client.get("/api/tags", headers=bearer("# comment"))).status == 401


def test_key_comparison() -> None:
    assert security.key_matches("abc", ("x", "abc"))
    assert not security.key_matches("ab", ("abc",))
    assert not security.key_matches("abcd", ("abc",))
    assert not security.key_matches("", ("abc",))
    assert not security.key_matches("é", ("e",))


async def test_admin_key_guards_model_changes(make_client: Any) -> None:
    client = await make_client(OLLAMALIKE_API_KEY=KEY, OLLAMALIKE_ADMIN_KEY=ADMIN)
    digest = "sha256:" + "0" * 64
    admin_calls = [("POST", "/api/create", {"model": "m", "from": "x"}), ("DELETE", "/api/delete", {"model": "m"}),
                   ("POST", "/api/pull", {"model": "m"}), ("POST", "/api/push", {"model": "m"}),
                   ("POST", "/api/copy", {"source": "a", "destination": "b"}), ("POST", "/api/import", {"path": "/x"}),
                   ("HEAD", f"/api/blobs/{digest}", None), ("POST", f"/api/blobs/{digest}", None)]
    for method, path, body in admin_calls:
        resp = await client.request(method, path, json=body)
        assert resp.status == 401, (method, path)
        resp = await client.request(method, path, json=body, headers=bearer(KEY))
        assert resp.status == 403, (method, path)
        if method != "HEAD":
            assert_api_error(resp.status, await resp.read(), 403, "admin key")
        resp = await client.request(method, path, json=body, headers=bearer("nope"))
        assert resp.status == 401, (method, path)
    # The admin key passes the gate (the requests then fail on their own merits, not on auth).
    resp = await client.head(f"/api/blobs/{digest}", headers=bearer(ADMIN))
    assert resp.status == 404
    resp = await client.delete("/api/delete", json={"model": "m"}, headers=bearer(ADMIN))
    assert_api_error(resp.status, await resp.read(), 404, "not found")
    # ... and is accepted on ordinary endpoints too; the user key still reads.
    assert (await client.get("/api/tags", headers=bearer(ADMIN))).status == 200
    assert (await client.get("/api/tags", headers=bearer(KEY))).status == 200
    assert (await client.post("/api/show", json={"model": "m"}, headers=bearer(KEY))).status == 404


async def test_admin_key_alone_leaves_reads_open(make_client: Any) -> None:
    client = await make_client(OLLAMALIKE_ADMIN_KEY=ADMIN)
    assert (await client.get("/api/tags")).status == 200
    assert (await client.post("/api/copy", json={"source": "a", "destination": "b"})).status == 401
    resp = await client.post("/api/copy", json={"source": "a", "destination": "b"}, headers=bearer(ADMIN))
    assert_api_error(resp.status, await resp.read(), 404)


def test_cli_client_sends_the_admin_key_when_it_has_one() -> None:
    both = load_config({"OLLAMALIKE_API_KEY": "user", "OLLAMALIKE_ADMIN_KEY": "admin"})
    assert client_for(both)._api_key == "admin"
    assert client_for(load_config({"OLLAMALIKE_API_KEY": "user"}))._api_key == "user"
    assert client_for(load_config({}))._api_key is None


# -- CORS ----------------------------------------------------------------------------------------
async def test_cors_default_allow_list(make_client: Any) -> None:
    client = await make_client()
    for origin in ("http://localhost", "http://localhost:3000", "https://127.0.0.1:8443", "app://obsidian.md",
                   "tauri://localhost", "vscode-webview://abc", "http://0.0.0.0:5173"):
        resp = await client.get("/api/version", headers={"Origin": origin})
        assert resp.status == 200, origin
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        assert "Origin" in resp.headers.getall("Vary")
    for origin in ("https://evil.example", "http://localhost.evil.example", "http://127.0.0.1.nip.io", "null"):
        resp = await client.get("/api/version", headers={"Origin": origin})
        assert_api_error(resp.status, await resp.read(), 403, "origin not allowed")
        assert "Access-Control-Allow-Origin" not in resp.headers
    # No Origin (curl, SDKs): no CORS headers, served.
    resp = await client.get("/api/version")
    assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers


async def test_cors_configured_origins_and_wildcards(make_client: Any) -> None:
    client = await make_client(OLLAMA_ORIGINS="https://*.example.com, https://app.test")
    for origin in ("https://chat.example.com", "https://app.test", "http://localhost:1"):
        assert (await client.get("/api/version", headers={"Origin": origin})).status == 200, origin
    for origin in ("http://chat.example.com", "https://example.org", "https://app.test.evil"):
        assert (await client.get("/api/version", headers={"Origin": origin})).status == 403, origin
    client = await make_client(OLLAMALIKE_ORIGINS="*")
    assert (await client.get("/api/version", headers={"Origin": "https://anything.example"})).status == 200


async def test_preflight_needs_no_key_and_errors_carry_cors_headers(make_client: Any) -> None:
    client = await make_client(OLLAMALIKE_API_KEY=KEY)
    origin = "http://localhost:8080"
    resp = await client.options("/api/chat", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os"})
    assert resp.status == 204
    assert resp.headers["Access-Control-Allow-Origin"] == origin
    assert "POST" in resp.headers["Access-Control-Allow-Methods"]
    assert "authorization" in resp.headers["Access-Control-Allow-Headers"]
    resp = await client.options("/api/chat", headers={"Origin": "https://evil.example",
                                                     "Access-Control-Request-Method": "POST"})
    assert_api_error(resp.status, await resp.read(), 403, "origin not allowed")
    resp = await client.options("/api/chat", headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                                     "Access-Control-Request-Headers": "x-evil"})
    assert_api_error(resp.status, await resp.read(), 403, "headers not allowed")
    # The browser can read the 401 (it has the CORS headers) and the real request works with the key.
    resp = await client.get("/api/tags", headers={"Origin": origin})
    assert resp.status == 401 and resp.headers["Access-Control-Allow-Origin"] == origin
    resp = await client.get("/api/tags", headers={"Origin": origin, **bearer(KEY)})
    assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == origin


# -- Host header (DNS rebinding) -----------------------------------------------------------------
@pytest.mark.parametrize(("bind", "host", "allowed"), [
    ("127.0.0.1", "localhost:11434", True),
    ("127.0.0.1", "LOCALHOST", True),
    ("127.0.0.1", "127.0.0.1:11434", True),
    ("127.0.0.1", "127.1.2.3", True),
    ("127.0.0.1", "[::1]:11434", True),
    ("127.0.0.1", "app.localhost", True),
    ("127.0.0.1", "evil.example", False),
    ("127.0.0.1", "evil.example:11434", False),
    ("127.0.0.1", "192.168.1.10", False),
    ("127.0.0.1", "localhost.evil.example", False),
    ("192.168.1.10", "192.168.1.10:11434", True),
    ("192.168.1.10", "192.168.1.11", False),
    ("0.0.0.0", "10.0.0.7:11434", True),
    ("0.0.0.0", "[fe80::1]:11434", True),
    ("0.0.0.0", "evil.example", False),
    ("0.0.0.0", "host.docker.internal:11434", True),
    ("0.0.0.0", "mybox.local", True),
    ("127.0.0.1", "host.docker.internal", False),
    ("::", "203.0.113.5", True),
])
def test_host_allowed_table(bind: str, host: str, allowed: bool) -> None:
    assert security.host_allowed(host, load_config({"OLLAMALIKE_HOST": bind})) is allowed


def test_host_allowed_machine_name_and_configured_names() -> None:
    import socket

    name = socket.gethostname()
    assert security.host_allowed(f"{name}:11434", load_config({"OLLAMALIKE_HOST": "0.0.0.0"}))
    config = load_config({"OLLAMALIKE_ALLOWED_HOSTS": "my.box.lan, other"})
    assert security.host_allowed("My.Box.Lan:11434", config)
    assert not security.host_allowed("evil.example", config)


async def test_rebound_host_is_refused_by_the_app(make_client: Any) -> None:
    client = await make_client()
    resp = await client.get("/api/tags", headers={"Host": "attacker.example:11434"})
    assert_api_error(resp.status, await resp.read(), 403, "host not allowed")
    resp = await client.post("/v1/chat/completions", json={}, headers={"Host": "attacker.example"})
    assert_openai_error(resp.status, await resp.read(), 403, "host not allowed")
    assert (await client.get("/api/tags", headers={"Host": "localhost:11434"})).status == 200


# -- limits --------------------------------------------------------------------------------------
async def test_oversized_and_compressed_bodies(make_client: Any, tmp_path: Path) -> None:
    client = await make_client(OLLAMALIKE_MAX_BODY_BYTES="4096")
    before = store_snapshot(tmp_path / "home" / "models")
    big = json.dumps({"model": "m", "prompt": "x" * 10_000})
    resp = await client.post("/api/generate", data=big, headers={"Content-Type": "application/json"})
    assert_api_error(resp.status, await resp.read(), 413, "too large")

    async def chunks() -> Any:
        for _ in range(10):
            yield b" " * 1000

    resp = await client.post("/api/show", data=chunks())  # chunked: no Content-Length
    assert_api_error(resp.status, await resp.read(), 413, "too large")
    resp = await client.post("/v1/completions", data=big, headers={"Content-Type": "application/json"})
    assert_openai_error(resp.status, await resp.read(), 413, "too large")
    # A zip bomb: 100 KB of gzip inflates to 100 MB.
    inflated = b"{" + b" " * 100_000_000 + b"}"
    bombs = {"gzip": gzip.compress(inflated, compresslevel=9), "deflate": zlib.compress(inflated, 9),
             "x-custom": b"{}"}
    for encoding, bomb in bombs.items():
        resp = await client.post("/api/show", data=bomb, headers={"Content-Encoding": encoding})
        assert_api_error(resp.status, await resp.read(), 415, "Content-Encoding")
    # Blob uploads are model files: the JSON body limit does not apply to them.
    data = b"G" * 10_000
    import hashlib

    resp = await client.post(f"/api/blobs/sha256:{hashlib.sha256(data).hexdigest()}", data=data)
    assert resp.status == 201
    assert (await client.get("/api/version")).status == 200
    after = store_snapshot(tmp_path / "home" / "models")
    assert len(after[0]) == len(before[0]) + 1  # only the blob


async def test_concurrent_pull_limit_is_a_clear_503(make_client: Any) -> None:
    from ollamalike.server.native_registry import _limit

    client = await make_client(OLLAMALIKE_MAX_CONCURRENT_PULLS="1")
    state = client.server.app["state"]
    sem = _limit(state)
    async with sem:  # one pull in flight
        resp = await client.post("/api/pull", json={"model": "some/model"})
        assert_api_error(resp.status, await resp.read(), 503, "too many concurrent pulls")
    # Once it is done, a pull is attempted again (and fails on the unreachable registry, not the limit).
    resp = await client.post("/api/pull", json={"model": "localhost:1/some/model", "stream": False, "insecure": True})
    assert resp.status != 503


# -- serve's bind check --------------------------------------------------------------------------
def test_check_bind() -> None:
    from ollamalike.cli.serve import check_bind

    assert load_config({}).host == "127.0.0.1"  # loopback unless told otherwise
    check_bind(load_config({}), False)
    check_bind(load_config({"OLLAMALIKE_HOST": "127.0.0.1"}), False)
    check_bind(load_config({"OLLAMALIKE_HOST": "localhost:9000"}), False)
    check_bind(load_config({"OLLAMALIKE_HOST": "[::1]:9000"}), False)
    check_bind(load_config({"OLLAMALIKE_HOST": "0.0.0.0", "OLLAMALIKE_API_KEY": "k"}), False)
    check_bind(load_config({"OLLAMALIKE_HOST": "0.0.0.0"}), True)
    check_bind(load_config({"OLLAMALIKE_HOST": "0.0.0.0", "OLLAMALIKE_INSECURE_NO_AUTH": "1"}), False)
    for host in ("0.0.0.0", "::", "192.168.1.5", "myhost.lan"):
        with pytest.raises(BadRequest, match="--insecure-no-auth"):
            check_bind(load_config({"OLLAMALIKE_HOST": host}), False)
    # An admin key alone would leave inference open to the network.
    with pytest.raises(BadRequest):
        check_bind(load_config({"OLLAMALIKE_HOST": "0.0.0.0", "OLLAMALIKE_ADMIN_KEY": "a"}), False)


def test_serve_refuses_a_public_bind_without_a_key(tmp_path: Path) -> None:
    env = daemon_env(tmp_path, free_port(), {"OLLAMALIKE_HOST": f"0.0.0.0:{free_port()}"})
    env.pop("OLLAMALIKE_API_KEY", None)
    env.pop("OLLAMALIKE_INSECURE_NO_AUTH", None)
    result = subprocess.run([sys.executable, "-m", "ollamalike", "serve"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: refusing to listen on 0.0.0.0"), result.stderr
    assert "OLLAMALIKE_API_KEY" in lines[0] and "--insecure-no-auth" in lines[0]


# -- the real daemon with a key ------------------------------------------------------------------
@pytest.mark.e2e
def test_daemon_with_key_and_cli(daemon_factory: Callable[..., Daemon], tiny_chat_gguf: Path, tmp_path: Path) -> None:
    d = daemon_factory({"OLLAMALIKE_API_KEY": KEY, "OLLAMALIKE_ADMIN_KEY": ADMIN})
    status, body = d.request("GET", "/api/tags")
    assert_api_error(status, body, 401, "unauthorized")
    assert d.request("GET", "/")[0] == 200
    # The CLI picks the key up from the environment (it has the admin key, so create works).
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {tiny_chat_gguf}\n")
    result = d.cli("create", "tiny", "-f", str(modelfile))
    assert result.returncode == 0, result.stderr
    result = d.cli("list")
    assert result.returncode == 0 and "tiny" in result.stdout
    # With only the user key the CLI reads, but cannot delete.
    env = {"OLLAMALIKE_ADMIN_KEY": ""}  # empty: no admin key on the client side
    result = d.cli("rm", "tiny", env=env)
    assert result.returncode != 0 and result.stderr.strip().splitlines()[-1].startswith("Error: forbidden")
    result = d.cli("list", env={**env, "OLLAMALIKE_API_KEY": "wrong"})
    assert result.returncode != 0 and "unauthorized" in result.stderr
    client = Client(d.base_url, api_key=KEY)
    assert [m["name"] for m in client.json("GET", "/api/tags", None)["models"]] == ["tiny:latest"]
    with pytest.raises(Forbidden):
        client.json("DELETE", "/api/delete", {"model": "tiny"})
    with pytest.raises(Unauthorized):
        Client(d.base_url, api_key="nope").json("GET", "/api/tags", None)

    # Real clients: Ollama's Python client with a header, the OpenAI SDK with its api_key.
    import ollama
    import openai

    listed = ollama.Client(host=d.base_url, headers={"Authorization": f"Bearer {KEY}"}).list()
    assert [m.model for m in listed.models] == ["tiny:latest"]
    with pytest.raises(ollama.ResponseError) as err:
        ollama.Client(host=d.base_url).list()
    assert err.value.status_code == 401
    sdk = openai.OpenAI(base_url=d.base_url + "/v1", api_key=KEY, max_retries=0)
    assert [m.id for m in sdk.models.list()] == ["tiny:latest"]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=d.base_url + "/v1", api_key="wrong", max_retries=0).models.list()


@pytest.mark.e2e
def test_daemon_refuses_a_pull_beyond_the_limit(daemon_factory: Callable[..., Daemon]) -> None:
    """A registry that holds the first pull's manifest request: a second pull meanwhile gets 503."""
    import asyncio
    import threading
    import urllib.request

    from aiohttp import web

    from tests.registry_server import ThreadedServer

    arrived, release = threading.Event(), threading.Event()

    async def registry(request: web.Request) -> web.Response:
        if "/manifests/" in request.path:
            arrived.set()
            await asyncio.get_running_loop().run_in_executor(None, release.wait, 60)
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]}, status=404)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", registry)
    server = ThreadedServer(app)
    server.start()
    d = daemon_factory({"OLLAMALIKE_MAX_CONCURRENT_PULLS": "1"})
    name = f"127.0.0.1:{server.port}/ns/model:tag"
    first: list[tuple[int, Any]] = []
    try:
        worker = threading.Thread(target=lambda: first.append(
            d.request("POST", "/api/pull", {"model": name, "insecure": True, "stream": False})))
        worker.start()
        assert arrived.wait(30), "the first pull never reached the registry"
        status, body = d.request("POST", "/api/pull", {"model": name, "insecure": True})
        assert_api_error(status, body, 503, "too many concurrent pulls (limit 1")
        with urllib.request.urlopen(d.base_url + "/metrics", timeout=30) as resp:
            assert 'ollamalike_http_requests_total{endpoint="/api/pull",method="POST",status="503"} 1.0' in \
                resp.read().decode()
        release.set()
        worker.join(60)
        # The registry's answer (no such manifest), not the limit.
        assert first and first[0][0] != 503 and "file does not exist" in first[0][1]["error"], first
        status, body = d.request("POST", "/api/pull", {"model": name, "insecure": True, "stream": False})
        assert status != 503 and "file does not exist" in body["error"], body  # the slot is free again
    finally:
        release.set()
        server.stop()


@pytest.mark.e2e
def test_daemon_on_all_interfaces_with_a_key(tmp_path: Path) -> None:
    import socket

    from tests.daemon import start_daemon

    port = free_port()
    d = start_daemon(tmp_path / "home", {"OLLAMALIKE_HOST": f"0.0.0.0:{port}", "OLLAMALIKE_API_KEY": KEY}, port=port)
    try:
        def get(host: str, key: str | None = KEY) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            try:
                conn.request("GET", "/api/tags", headers={"Host": host, **(bearer(key) if key else {})})
                resp = conn.getresponse()
                return resp.status, resp.read()
            finally:
                conn.close()

        assert get(f"{socket.gethostname()}:{port}")[0] == 200
        assert get(f"10.1.2.3:{port}")[0] == 200
        assert get(f"127.0.0.1:{port}", key=None)[0] == 401
        status, body = get("rebound.attacker.example")
        assert_api_error(status, body, 403, "host not allowed")
        assert "listening on 0.0.0.0" in d.logs() and "auth=on" in d.logs()
    finally:
        d.stop()
