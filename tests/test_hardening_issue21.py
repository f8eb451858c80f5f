"""Issue 21, items 1, 4, 8, 12, 14, 15 and 16: what black-box probes found, each as a test.

Server cases run on the real app with aiohttp's test client (a middleware fakes a non-loopback peer
where the rule depends on it); faults (a killed daemon and its quantizer) use real processes.
Every refusal is a 4xx in the API's error shape and leaves the store as it was.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ollamalike.config import load_config
from ollamalike.errors import BadRequest, NotFound
from ollamalike.gguf_info import read_gguf_info
from ollamalike.hardware import planner
from ollamalike.scheduler import Scheduler
from ollamalike.server.app import make_app
from ollamalike.store import Store
from tests.fakes import gguf_info, resolved_model
from tests.gguf_bytes import gstr, kv_str, kv_u32, minimal, tensor_info
from tests.helpers import assert_api_error, assert_openai_error, store_snapshot

ARCH = kv_str("general.architecture", "llama")
F32 = 0


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _fake_peer(address: str) -> Callable[..., Any]:
    @web.middleware
    async def middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
        return await handler(request.clone(remote=address))

    return middleware


@pytest.fixture
async def client(aiohttp_client: Any) -> Any:
    return await aiohttp_client(make_app(load_config()))


@pytest.fixture
async def remote(aiohttp_client: Any) -> Any:
    """The real app, seen from a client on another machine (203.0.113.7, TEST-NET-3)."""
    return await aiohttp_client(make_app(load_config(), extra_middlewares=[_fake_peer("203.0.113.7")]))


async def _upload(client: Any, data: bytes) -> str:
    digest = _digest(data)
    resp = await client.post(f"/api/blobs/{digest}", data=data)
    assert resp.status in (200, 201), await resp.text()
    return digest


async def _create(client: Any, body: dict[str, Any]) -> tuple[int, bytes]:
    resp = await client.post("/api/create", json={"stream": False, **body})
    return resp.status, await resp.read()


# -- item 1: hyperparameters against the tensors; the planner off the loop ---------------------------------
def _layer_file(kvs: list[bytes], tensors: list[bytes] | None = None, data: bytes = b"\0" * 64) -> bytes:
    return minimal([ARCH, *kvs], tensors if tensors is not None else [tensor_info("blk.0.attn_q.weight", (8,), F32, 0)],
                   data)


def _kv_i32(key: str, value: int) -> bytes:
    import struct

    return gstr(key) + struct.pack("<Ii", 5, value)


HOSTILE_HYPERPARAMETERS: list[tuple[str, bytes, str]] = [
    ("block_count 2^26 with one layer", _layer_file([kv_u32("llama.block_count", 1 << 26)]), "block_count"),
    ("block_count 2 with one layer", _layer_file([kv_u32("llama.block_count", 2)]), "block_count"),
    ("block_count with no tensors", minimal([ARCH, kv_u32("llama.block_count", 32)], []), "block_count"),
    ("head_count 0 with attention", _layer_file([kv_u32("llama.block_count", 1), kv_u32("llama.attention.head_count", 0)]),
     "head_count"),
    ("head_count huge", _layer_file([kv_u32("llama.attention.head_count", 1 << 30)]), "head_count"),
    ("head_count_kv huge", _layer_file([kv_u32("llama.attention.head_count_kv", 1 << 30)]), "head_count_kv"),
    ("embedding_length 0", _layer_file([kv_u32("llama.embedding_length", 0)]), "embedding_length"),
    ("embedding_length negative", _layer_file([_kv_i32("llama.embedding_length", -4)]), "embedding_length"),
    ("context_length 0", _layer_file([kv_u32("llama.context_length", 0)]), "context_length"),
    ("key_length huge", _layer_file([kv_u32("llama.attention.key_length", 1 << 30)]), "key_length"),
    ("empty tensor dimension", _layer_file([], [tensor_info("blk.0.w", (8, 0), F32, 0)]), "empty dimension"),
    ("overlapping tensors", _layer_file([], [tensor_info("blk.0.a", (16,), F32, 0), tensor_info("blk.0.b", (16,), F32, 32)],
                                        b"\0" * 128), "overlaps"),
    ("tensor past the end", _layer_file([], [tensor_info("blk.0.a", (64,), F32, 0)], b"\0" * 32), "outside the file"),
]


@pytest.mark.parametrize(("label", "data", "contains"), HOSTILE_HYPERPARAMETERS, ids=[c[0] for c in HOSTILE_HYPERPARAMETERS])
def test_hostile_hyperparameters_are_invalid_gguf(tmp_path: Path, label: str, data: bytes, contains: str) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(data)
    assert len(data) < 2048
    with pytest.raises(BadRequest, match="invalid GGUF file") as e:
        read_gguf_info(path)
    assert contains in e.value.message


def test_consistent_hyperparameters_still_read(tmp_path: Path) -> None:
    """The checks refuse only lies: two layers of tensors and block_count 2 is fine (as are 0 heads without attention)."""
    tensors = [tensor_info("blk.0.ssm_a", (8,), F32, 0), tensor_info("blk.1.ssm_a", (8,), F32, 32)]
    path = tmp_path / "ok.gguf"
    path.write_bytes(_layer_file([kv_u32("llama.block_count", 2), kv_u32("llama.attention.head_count", 0)], tensors))
    info = read_gguf_info(path)
    assert info.block_count == 2 and len(info.layer_bytes) == 2


async def test_huge_block_count_gguf_gets_400_at_create(client: Any, models_dir: Path) -> None:
    """The probe's 1 KB file with block_count 2^26: refused at create, so no generate ever plans for it."""
    before = store_snapshot(models_dir)
    digest = await _upload(client, _layer_file([kv_u32("llama.block_count", 1 << 26)]))
    status, body = await _create(client, {"model": "huge", "files": {"m.gguf": digest}})
    assert_api_error(status, body, 400, "block_count is 67108864")
    assert store_snapshot(models_dir) == before  # the uploaded blob went with the failed create (item 15)
    resp = await client.get("/api/tags")
    assert resp.status == 200 and (await resp.json())["models"] == []


def test_estimate_is_bounded_by_the_tensors_present() -> None:
    """Whatever the metadata claims, the planner's work follows the tensors: 2^26 claimed, 2 planned."""
    info = gguf_info(architecture="llama", block_count=1 << 26, embedding_length=64, head_count=4, head_count_kv=4,
                     layer_bytes=[1000, 1000], non_layer_bytes=10, output_bytes=0, model_info={}, file_size=0)
    start = time.monotonic()
    est = planner.estimate(info, 4096)
    assert len(est.layers) == 2
    no_index = dataclasses.replace(info, layer_bytes=[], tensor_count=3)
    assert len(planner.estimate(no_index, 4096).layers) == 3
    assert time.monotonic() - start < 1.0


async def test_planner_runs_off_the_event_loop(tmp_path: Path) -> None:
    """A slow plan (hardware discovery, a big model) must not freeze every other request."""
    def slow_planner(model: Any, options: dict[str, Any], config: Any, embedding: bool = False) -> Any:
        time.sleep(1.0)
        raise BadRequest("planned")

    sched = Scheduler(load_config(), planner=slow_planner)
    model = resolved_model(name="m:latest", digest="sha256:" + "ab" * 32, model_path=tmp_path / "m")
    start = time.monotonic()
    acquire = asyncio.create_task(sched.acquire(model, {}, None))
    await asyncio.sleep(0.1)  # the acquire task runs the planner meanwhile: on the loop, this sleep takes 1 s
    lag = time.monotonic() - start
    with pytest.raises(BadRequest, match="planned"):
        await acquire
    assert lag < 0.5, f"the event loop was blocked for {lag:.2f}s by the planner"
    await sched.shutdown()


# -- item 4: server paths only for a local client ------------------------------------------------------------
async def test_remote_client_cannot_create_from_server_paths(remote: Any, tiny_chat_gguf: Path, models_dir: Path,
                                                             tmp_path: Path) -> None:
    """Legacy ``modelfile`` FROM/ADAPTER naming a server file, from a non-loopback client: one refusal, the
    same for a file that exists, one that does not, ``~`` and a device, so nothing is learnt about the disk."""
    before = store_snapshot(models_dir)
    (tmp_path / "dir.gguf").mkdir()
    specs = [str(tiny_chat_gguf), str(tmp_path / "missing.gguf"), "~/model.gguf", "/dev/zero", str(tmp_path / "dir.gguf"),
             "./rel.gguf", "/etc/passwd"]
    messages = set()
    for spec in specs:
        for modelfile in (f"FROM {spec}\n", f"FROM tiny\nADAPTER {spec}\n"):
            status, body = await _create(remote, {"model": "stolen", "modelfile": modelfile, "path": str(tmp_path / "M")})
            messages.add(assert_api_error(status, body, 400, "POST /api/blobs"))
    assert len(messages) == 1, messages
    assert str(tiny_chat_gguf) not in messages.pop()
    assert store_snapshot(models_dir) == before


async def test_remote_client_still_creates_from_uploaded_blobs(remote: Any, tiny_chat_gguf: Path) -> None:
    digest = await _upload(remote, tiny_chat_gguf.read_bytes())
    status, body = await _create(remote, {"model": "ok", "files": {"m.gguf": digest}})
    assert status == 200 and json.loads(body) == {"status": "success"}, body


async def test_loopback_client_creates_from_server_path(client: Any, tiny_chat_gguf: Path) -> None:
    status, body = await _create(client, {"model": "local", "modelfile": f"FROM {tiny_chat_gguf}\n"})
    assert status == 200 and json.loads(body) == {"status": "success"}, body


async def test_server_paths_need_the_admin_key_when_keys_are_on(aiohttp_client: Any, tiny_chat_gguf: Path) -> None:
    config = dataclasses.replace(load_config(), api_keys=("user-key",), admin_keys=())
    c = await aiohttp_client(make_app(config))
    body = {"model": "k", "modelfile": f"FROM {tiny_chat_gguf}\n", "stream": False}
    resp = await c.post("/api/create", json=body, headers={"Authorization": "Bearer user-key"})
    assert_api_error(resp.status, await resp.read(), 400, "with the admin key")
    config = dataclasses.replace(load_config(), api_keys=("user-key",), admin_keys=("admin-key",))
    c = await aiohttp_client(make_app(config))
    resp = await c.post("/api/create", json=body, headers={"Authorization": "Bearer admin-key"})
    assert resp.status == 200, await resp.text()


async def test_local_path_errors_do_not_tell_what_exists(client: Any, tmp_path: Path) -> None:
    """Missing, a directory, a FIFO, unreadable: one text (for create and for /api/import)."""
    (tmp_path / "dir.gguf").mkdir()
    os.mkfifo(tmp_path / "fifo.gguf")
    secret = tmp_path / "secret.gguf"
    secret.write_bytes(b"x")
    secret.chmod(0)
    texts = set()
    for name in ("missing.gguf", "dir.gguf", "fifo.gguf") + (("secret.gguf",) if os.geteuid() != 0 else ()):
        path = tmp_path / name
        status, body = await asyncio.wait_for(_create(client, {"model": "x", "modelfile": f"FROM {path}\n"}), 10)
        texts.add(assert_api_error(status, body, 400).replace(str(path), "<path>"))
    assert len(texts) == 1, texts
    texts = set()
    (tmp_path / "plain").mkdir()
    for path in (tmp_path / "missing", secret, tmp_path / "plain", tmp_path / ("x" * 5000)):
        resp = await client.post("/api/import", json={"path": str(path), "stream": False})
        texts.add(assert_api_error(resp.status, await resp.read(), 400).replace(str(path)[:300], "<path>"))
    assert len(texts) == 1, texts


# -- item 8: the quantizer dies with the daemon; stray temp files go at start-up ----------------------------
PARENT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from ollamalike.library.quantize import quantize_model
    from ollamalike.store import Store
    store = Store(sys.argv[1])
    async def main():
        with store.pin() as pins:
            await quantize_model(store, pins, Path(sys.argv[2]), "Q8_0")
    asyncio.run(main())
""")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(x) for x in text.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_quantizer_dies_with_a_killed_daemon_and_its_temp_file_goes(tmp_path: Path, models_dir: Path) -> None:
    """kill -9 of the process that started a quantize: the quantizer (blocked reading a FIFO, standing in
    for a long quantize) goes too, and the next start-up removes the temp file it was writing."""
    fifo = tmp_path / "source.gguf"
    os.mkfifo(fifo)  # llama.cpp blocks opening it: a quantize that would never end
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(models_dir), str(fifo)], env=os.environ.copy())
    quantizer = 0
    try:
        deadline = time.monotonic() + 60
        while not quantizer:
            assert parent.poll() is None, "the parent exited early"
            assert time.monotonic() < deadline, "the quantizer never started"
            quantizer = next(iter(_children(parent.pid)), 0)
            time.sleep(0.05)
        blobs = models_dir / "blobs"
        temps = [p for p in blobs.iterdir() if p.name.startswith(".tmp-")]
        assert len(temps) == 1 and f".tmp-{parent.pid}-quantize-" in temps[0].name, temps
        # Let the quantizer get as far as llama.cpp (importing it takes a moment), then kill its parent.
        deadline = time.monotonic() + 60
        while "llama" not in Path(f"/proc/{quantizer}/maps").read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _alive(quantizer) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(quantizer), "the quantizer outlived the daemon"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if quantizer and _alive(quantizer):
            os.kill(quantizer, signal.SIGKILL)
    store = Store(models_dir)
    assert store.remove_stale_temps() == 1
    assert [p.name for p in (models_dir / "blobs").iterdir()] == []


def test_startup_removes_temp_files_of_dead_writers_only(models_dir: Path) -> None:
    """Fresh temp files of a dead writer go (not only those over an hour old); a live writer's and partials stay."""
    store = Store(models_dir)
    blobs = models_dir / "blobs"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stray = [blobs / f".tmp-{dead_pid}-abc", blobs / f".tmp-{dead_pid}-quantize-xyz"]
    mine = blobs / f".tmp-{os.getpid()}-live"
    for p in (*stray, mine):
        p.write_bytes(b"half")
    part = store.partial("sha256:" + "3" * 64, 100)
    part.write_at(0, b"x" * 10)
    with store.blobs.temp_file("quantize") as tmp:
        assert tmp.name.startswith(f".tmp-{os.getpid()}-quantize-")
        assert Store(models_dir).remove_stale_temps() == 2
        assert tmp.exists()
    assert not any(p.exists() for p in stray) and mine.exists() and part.path.exists()


def test_startup_cleanup_runs_with_noprune(models_dir: Path, tmp_path: Path) -> None:
    from ollamalike.server.state import AppState

    blobs = models_dir / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    stray = blobs / ".tmp-999999999-dead"
    stray.write_bytes(b"x")
    config = dataclasses.replace(load_config(), noprune=True)
    state = AppState.create(config)
    try:
        assert not stray.exists()
    finally:
        state.store.close()


# -- item 12: 500s that should be 4xx --------------------------------------------------------------------------
DEEP = b'{"model":"x","options":' + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b"}"
DEEP_LIST = b'{"model":"x","messages":' + b"[" * 10000 + b"]" * 10000 + b"}"
BIG_INT = b'{"model":"x","options":{"seed":' + b"9" * 4301 + b"}}"
SURROGATE_NAME = b'{"model":"\\ud800"}'
SURROGATE_PROMPT = b'{"model":"x","prompt":"a\\udfffb"}'
SURROGATE_MESSAGE = b'{"model":"x","messages":[{"role":"user","content":"\\ud83d"}]}'
SURROGATE_KEY = b'{"model":"x","options":{"\\udc00":1}}'

BAD_BODIES: list[tuple[str, bytes, str]] = [
    ("nested 10000 objects", DEEP, "nested"),
    ("nested 10000 lists", DEEP_LIST, "nested"),
    ("4301-digit integer", BIG_INT, "digits"),
    ("lone surrogate in the name", SURROGATE_NAME, "surrogate"),
    ("lone surrogate in the prompt", SURROGATE_PROMPT, "surrogate"),
    ("lone surrogate in a message", SURROGATE_MESSAGE, "surrogate"),
    ("lone surrogate in a key", SURROGATE_KEY, "surrogate"),
]
NATIVE_ROUTES = ["/api/show", "/api/generate", "/api/chat", "/api/embed", "/api/create", "/api/pull", "/api/copy"]


@pytest.mark.parametrize(("label", "body", "contains"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES])
async def test_hostile_json_is_400_on_every_route(client: Any, label: str, body: bytes, contains: str) -> None:
    for route in NATIVE_ROUTES:
        resp = await client.post(route, data=body, headers={"Content-Type": "application/json"})
        assert_api_error(resp.status, await resp.read(), 400, contains)
    resp = await client.delete("/api/delete", data=body, headers={"Content-Type": "application/json"})
    assert_api_error(resp.status, await resp.read(), 400, contains)
    for route in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
        resp = await client.post(route, data=body, headers={"Content-Type": "application/json"})
        assert_openai_error(resp.status, await resp.read(), 400, contains)


async def test_moderate_nesting_and_long_integers_are_accepted(client: Any) -> None:
    """The limits are far above real bodies: 100 levels and a 4300-digit integer parse (and fail later, as 404)."""
    body = b'{"model":"ghost","options":' + b'{"a":' * 100 + b"9" * 4300 + b"}" * 100 + b"}"
    resp = await client.post("/api/show", data=body, headers={"Content-Type": "application/json"})
    assert_api_error(resp.status, await resp.read(), 404, "not found")


LONG = "a" * 5000
LONG_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("long model name", "/api/show", {"model": LONG}),
    ("long host", "/api/show", {"model": "h" * 300 + "/ns/m"}),
    ("long create name", "/api/create", {"model": "h" * 300 + "/ns/m", "from": "x"}),
    ("long FROM path", "/api/create", {"model": "x", "modelfile": f"FROM /{LONG}.gguf"}),
    ("long FROM path component", "/api/create", {"model": "x", "modelfile": "FROM /tmp/" + "b" * 300 + ".gguf"}),
    ("long ADAPTER path", "/api/create", {"model": "x", "modelfile": f"FROM x\nADAPTER /{LONG}"}),
    ("long request path", "/api/create", {"model": "x", "modelfile": "FROM ./m.gguf", "path": f"/{LONG}/Modelfile"}),
    ("long import path", "/api/import", {"path": f"/{LONG}"}),
    ("long copy destination", "/api/copy", {"source": "x", "destination": "h" * 300 + "/n/m"}),
]


@pytest.mark.parametrize(("label", "route", "body"), LONG_CASES, ids=[c[0] for c in LONG_CASES])
async def test_enametoolong_is_a_4xx(client: Any, models_dir: Path, label: str, route: str, body: dict[str, Any]) -> None:
    before = store_snapshot(models_dir)
    resp = await client.post(route, json={"stream": False, **body})
    raw = await resp.read()
    assert 400 <= resp.status < 500, (resp.status, raw)
    assert_api_error(resp.status, raw, resp.status)
    assert store_snapshot(models_dir) == before


def test_manifest_without_a_model_layer_is_refused_at_put(models_dir: Path) -> None:
    """A pulled manifest with ``layers: []`` used to be tagged and then 500 on every use."""
    from ollamalike.store.manifest import (
        CONFIG_MEDIA_TYPE,
        MEDIA_SYSTEM,
        Descriptor,
        build_config,
        build_manifest,
    )

    store = Store(models_dir)
    config, _ = store.add_blob_bytes(build_config(model_family="llama", model_type="1M", file_type="F32", diff_ids=[]))
    size = store.blob_size(config)
    before = store_snapshot(models_dir)
    for layers in ([], [Descriptor(MEDIA_SYSTEM, *store.add_blob_bytes(b"sys"))]):
        before = store_snapshot(models_dir)
        with pytest.raises(BadRequest, match="no model layer"):
            store.put_manifest("empty", build_manifest(Descriptor(CONFIG_MEDIA_TYPE, config, size), layers))
        assert store_snapshot(models_dir) == before


# -- item 14: non-regular files and non-GGUF magic, refused before reading further -----------------------------
class _NoUploads:
    """A client that must not be used: the CLI refuses the file before talking to the daemon about it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the CLI called client.{name} for a file it should have refused")


def _build_in_thread(modelfile: Path) -> BaseException | None:
    from ollamalike.cli.models import build_create_request

    result: list[BaseException | None] = []

    def run() -> None:
        try:
            build_create_request(_NoUploads(), "x", modelfile)  # type: ignore[arg-type]
            result.append(None)
        except BaseException as e:
            result.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(15)
    assert not t.is_alive(), f"the CLI hung on {modelfile.read_text()!r}"
    return result[0]


@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom", "fifo", "dir.gguf", "junk.gguf", "bad-version.gguf",
                                    "short.gguf"])
def test_cli_create_refuses_devices_fifos_and_non_gguf_at_once(tmp_path: Path, source: str) -> None:
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir.gguf").mkdir()
    (tmp_path / "junk.gguf").write_bytes(b"not a gguf" * 1000)
    (tmp_path / "bad-version.gguf").write_bytes(b"GGUF" + (99).to_bytes(4, "little") + b"\0" * 64)
    (tmp_path / "short.gguf").write_bytes(b"GGUF\x03\0\0\0")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {source if source.startswith('/') else tmp_path / source}\n")
    error = _build_in_thread(modelfile)
    assert isinstance(error, BadRequest), error
    assert any(w in error.message for w in ("not a regular file", "directory", "not a GGUF file", "unsupported version"))


def test_cli_adapter_fifo_is_refused_too(tmp_path: Path, tiny_chat_gguf: Path) -> None:
    os.mkfifo(tmp_path / "adapter.gguf")
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text("FROM llama3\nADAPTER ./adapter.gguf\n")
    error = _build_in_thread(modelfile)
    assert isinstance(error, BadRequest) and "not a regular file" in error.message


@pytest.mark.parametrize("source", ["/dev/zero", "/dev/urandom", "fifo"])
async def test_daemon_create_refuses_devices_and_fifos_at_once(client: Any, tmp_path: Path, models_dir: Path,
                                                              source: str) -> None:
    os.mkfifo(tmp_path / "fifo")
    path = source if source.startswith("/") else str(tmp_path / source)
    before = store_snapshot(models_dir)
    status, body = await asyncio.wait_for(_create(client, {"model": "x", "modelfile": f"FROM {path}\n"}), 10)
    assert_api_error(status, body, 400, "not a readable regular file")
    assert store_snapshot(models_dir) == before


# -- item 15: a failed create leaves no blob --------------------------------------------------------------------
async def test_failed_create_drops_the_blob_uploaded_for_it(client: Any, models_dir: Path, tiny_chat_gguf: Path) -> None:
    before = store_snapshot(models_dir)
    for data, body, contains in [
        (b"not a gguf" * 100, {}, "GGUF"),
        (_layer_file([kv_u32("llama.block_count", 9)]), {}, "block_count"),
        (tiny_chat_gguf.read_bytes(), {"template": "{{ if .System }"}, "template"),
    ]:
        digest = await _upload(client, data)
        assert (models_dir / "blobs" / digest.replace(":", "-")).exists()
        status, raw = await _create(client, {"model": "x", "files": {"m.gguf": digest}, **body})
        assert_api_error(status, raw, 400, contains)
        assert store_snapshot(models_dir) == before, contains


async def test_failed_create_keeps_a_blob_another_model_uses(client: Any, models_dir: Path, tiny_chat_gguf: Path) -> None:
    digest = await _upload(client, tiny_chat_gguf.read_bytes())
    status, raw = await _create(client, {"model": "good", "files": {"m.gguf": digest}})
    assert status == 200, raw
    again = await _upload(client, tiny_chat_gguf.read_bytes())  # already there: not "received" again
    status, raw = await _create(client, {"model": "bad", "files": {"m.gguf": again}, "template": "{{ if .System }"})
    assert_api_error(status, raw, 400)
    assert (models_dir / "blobs" / digest.replace(":", "-")).exists()
    resp = await client.post("/api/show", json={"model": "good"})
    assert resp.status == 200


def test_cli_refuses_a_non_gguf_file_before_uploading(tmp_path: Path) -> None:
    junk = tmp_path / "model.gguf"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 4096)  # a zip, named .gguf
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {junk}\n")
    error = _build_in_thread(modelfile)  # _NoUploads: nothing is hashed for or sent to the daemon
    assert isinstance(error, BadRequest) and "not a GGUF file" in error.message


# -- item 16: exact names and digests; symlinks in blobs/ never followed -----------------------------------------
async def test_names_and_digests_with_whitespace_are_400(client: Any, tiny_chat_gguf: Path, models_dir: Path) -> None:
    digest = await _upload(client, tiny_chat_gguf.read_bytes())
    status, raw = await _create(client, {"model": "keep", "files": {"m.gguf": digest}})
    assert status == 200, raw
    before = store_snapshot(models_dir)
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("POST", "/api/show", {"model": "keep\n"}),
        ("POST", "/api/show", {"model": " keep"}),
        ("DELETE", "/api/delete", {"model": "keep\n"}),
        ("DELETE", "/api/delete", {"model": "keep:latest\t"}),
        ("POST", "/api/copy", {"source": "keep\n", "destination": "other"}),
        ("POST", "/api/copy", {"source": "keep", "destination": "other\n"}),
        ("POST", "/api/create", {"model": "x\n", "from": "keep"}),
        ("POST", "/api/create", {"model": "x", "from": "keep\n"}),
        ("POST", "/api/create", {"model": "x", "files": {"m.gguf": digest + "\n"}}),
        ("POST", "/api/create", {"model": "x", "files": {"m.gguf": " " + digest}}),
        ("POST", "/api/generate", {"model": "keep\n", "prompt": "hi"}),
    ]
    for method, path, body in cases:
        resp = await client.request(method, path, json={"stream": False, **body})
        assert_api_error(resp.status, await resp.read(), 400)
        assert store_snapshot(models_dir) == before, body
    for suffix in ("%0A", "%20", "%09"):
        resp = await client.head(f"/api/blobs/{digest}{suffix}")
        assert resp.status in (400, 404), suffix  # never 200: the blob it would have been stripped to exists
        resp = await client.post(f"/api/blobs/{digest}{suffix}", data=b"x")
        raw = await resp.read()
        assert resp.status in (400, 404), (suffix, raw)
        assert_api_error(resp.status, raw, resp.status)


async def test_symlinked_blob_is_missing_never_followed(client: Any, models_dir: Path, tmp_path: Path,
                                                        tiny_chat_gguf: Path) -> None:
    """A symlink planted under a blob's name is not the blob: HEAD says 404, create says not found, a
    model whose layer became a symlink fails clearly (404), and an upload replaces the link with the file."""
    outside = tmp_path / "outside.gguf"
    outside.write_bytes(tiny_chat_gguf.read_bytes())
    digest = _digest(outside.read_bytes())
    link = models_dir / "blobs" / digest.replace(":", "-")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    resp = await client.head(f"/api/blobs/{digest}")
    assert resp.status == 404
    status, raw = await _create(client, {"model": "x", "files": {"m.gguf": digest}})
    assert_api_error(status, raw, 400, "not found")
    store = Store(models_dir)
    with pytest.raises(NotFound, match="not a regular file"):
        store.read_blob(digest)
    with pytest.raises(NotFound, match="not a regular file"):
        store.blob_path(digest)
    assert store.blobs.digests() == []
    # The real upload replaces the link; the file it pointed at is untouched.
    await _upload(client, outside.read_bytes())
    assert not link.is_symlink() and link.is_file() and outside.exists()
    status, raw = await _create(client, {"model": "m", "files": {"m.gguf": digest}})
    assert status == 200, raw
    # Now the model's layer is swapped for a symlink (to the same bytes): every use refuses it.
    link.unlink()
    link.symlink_to(outside)
    for route, body in (("/api/show", {"model": "m", "verbose": True}), ("/api/generate", {"model": "m", "prompt": "x"})):
        resp = await client.post(route, json={"stream": False, **body})
        raw = await resp.read()
        assert 400 <= resp.status < 500, (route, resp.status, raw)
        assert_api_error(resp.status, raw, resp.status, "not a regular file")


# -- the same against the real daemon (loopback client, the CLI) ---------------------------------------------------
@pytest.mark.e2e
def test_real_daemon_loopback_paths_cli_devices_and_hostile_gguf(daemon: Any, tiny_chat_gguf: Path, tmp_path: Path) -> None:
    # Item 4: a loopback client may still name a server file in a legacy Modelfile.
    status, body = daemon.request("POST", "/api/create", {"model": "local", "modelfile": f"FROM {tiny_chat_gguf}\n",
                                                         "stream": False})
    assert status == 200 and body == {"status": "success"}, body
    before = store_snapshot(daemon.models_dir)
    # Item 14: the CLI refuses devices and FIFOs at once (it used to hash /dev/zero forever).
    os.mkfifo(tmp_path / "fifo.gguf")
    for source in ("/dev/zero", "/dev/urandom", str(tmp_path / "fifo.gguf")):
        (tmp_path / "Modelfile").write_text(f"FROM {source}\n")
        started = time.monotonic()
        result = daemon.cli("create", "dev", "-f", str(tmp_path / "Modelfile"), timeout=60)
        assert result.returncode != 0 and "not a regular file" in result.stderr, (result.stdout, result.stderr)
        assert time.monotonic() - started < 30
    # Item 1: the 1 KB file claiming 2^26 layers is a 400 at create, and the daemon keeps answering.
    data = _layer_file([kv_u32("llama.block_count", 1 << 26)])
    digest = _digest(data)
    req = urllib.request.Request(f"{daemon.base_url}/api/blobs/{digest}", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.status in (200, 201)
    started = time.monotonic()
    status, body = daemon.request("POST", "/api/create", {"model": "huge", "files": {"m.gguf": digest}, "stream": False})
    assert status == 400 and "block_count" in body["error"], body
    assert time.monotonic() - started < 10
    status, _ = daemon.request("GET", "/api/tags", timeout=5)
    assert status == 200
    assert store_snapshot(daemon.models_dir) == before
