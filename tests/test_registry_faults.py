"""Registry faults from issue 21: manifests and tokens in pieces, stalls, a cut body with Range ignored,
a full catalog, and digest-pinned pulls, against a small misbehaving registry on 127.0.0.1.

``FakeRegistry`` serves one model (config + layer) and can misbehave: write the manifest in two
pieces or pad it, go silent, trickle a blob, ignore Range and cut the body short. Every test is
bounded in time (a stall timeout of a fraction of a second, ``asyncio.wait_for`` around pulls that
used to hang).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ollamalike.config import Config
from ollamalike.errors import BadRequest, InternalError, RegistryError
from ollamalike.registry import download, oci
from ollamalike.registry.pull import pull_model
from ollamalike.store import Store
from ollamalike.store.manifest import CONFIG_MEDIA_TYPE, MEDIA_MODEL, Descriptor, build_config, build_manifest
from tests.registry_server import free_port

STALL = 0.4  # seconds: the stall timeout these tests run with


@dataclass
class Fault:
    manifest_pieces: int = 1  # write the manifest body in this many writes, a pause between
    manifest_pad: int = 0  # spaces appended to the manifest (still the same JSON)
    manifest_chunked: bool = False  # no Content-Length on the manifest
    silent_manifest: bool = False  # never answer a manifest GET
    blob_stall_after: int | None = None  # send this many body bytes of the layer, then nothing
    blob_trickle: bool = False  # send the layer a byte at a time, slower than the stall rule allows
    chunked: bool = False  # layer bodies without Content-Length (read through aiohttp)
    ignore_range: bool = False
    cut_at: int | None = None  # close the layer's connection after this many bytes
    served_manifest: bytes | None = None  # answer every manifest GET with these bytes instead
    requests: list[tuple[str, str]] = field(default_factory=list)


class FakeRegistry:
    def __init__(self, layer: bytes, fault: Fault | None = None) -> None:
        self.layer = layer
        self.fault = fault or Fault()
        self.config = build_config(model_family="llama", file_type="F32", diff_ids=[self.digest(layer)])
        self.blobs = {self.digest(self.config): self.config, self.digest(layer): layer}
        self.manifest = build_manifest(
            Descriptor(CONFIG_MEDIA_TYPE, self.digest(self.config), len(self.config)),
            [Descriptor(MEDIA_MODEL, self.digest(layer), len(layer))],
        )
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    @staticmethod
    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    @property
    def layer_digest(self) -> str:
        return self.digest(self.layer)

    def name(self, tag: str = "v1") -> str:
        return f"127.0.0.1:{self.port}/ns/model:{tag}"

    async def __aenter__(self) -> FakeRegistry:
        app = web.Application()
        app.router.add_get("/v2/ns/model/manifests/{ref}", self._manifest)
        app.router.add_get("/v2/ns/model/blobs/{digest}", self._blob)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _manifest(self, request: web.Request) -> web.StreamResponse:
        f = self.fault
        f.requests.append(("manifest", request.match_info["ref"]))
        if f.silent_manifest:
            await asyncio.sleep(30)
        ref = request.match_info["ref"]
        body = f.served_manifest or self.manifest
        if ref.startswith("sha256:") and f.served_manifest is None and ref != self.digest(body):
            return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)
        body += b" " * f.manifest_pad
        resp = web.StreamResponse(headers={"Content-Type": oci.MANIFEST_V2})
        if not f.manifest_chunked:
            resp.content_length = len(body)
        await resp.prepare(request)
        step = -(-len(body) // f.manifest_pieces)
        for i in range(0, len(body), step):
            await resp.write(body[i : i + step])
            if f.manifest_pieces > 1:
                await asyncio.sleep(0.05)  # the next piece is a separate network read
        await resp.write_eof()
        return resp

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        f = self.fault
        digest = request.match_info["digest"]
        rng = request.headers.get("Range", "")
        f.requests.append(("blob", f"{digest[7:19]} {rng}"))
        data = self.blobs.get(digest)
        if data is None:
            return web.Response(status=404)
        start = 0
        status = 200
        headers = {"Content-Type": "application/octet-stream"}
        if rng.startswith("bytes=") and not f.ignore_range:
            first, _, last = rng[6:].partition("-")
            start, end = int(first), int(last) + 1 if last else len(data)
            data = data[start:end]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(self.blobs[digest])}"
        resp = web.StreamResponse(status=status, headers=headers)
        if not f.chunked:
            resp.content_length = len(data)
        await resp.prepare(request)
        is_layer = digest == self.layer_digest
        if is_layer and f.blob_trickle:
            for i in range(len(data)):
                await resp.write(data[i : i + 1])
                await asyncio.sleep(0.05)
        elif is_layer and f.blob_stall_after is not None:
            await resp.write(data[: max(0, f.blob_stall_after - start)])  # up to that byte of the blob
            await asyncio.sleep(30)  # silent; the test ends (and cancels this) long before
        elif is_layer and f.cut_at is not None:
            await resp.write(data[: f.cut_at])
            assert request.transport is not None
            request.transport.close()
            return resp
        else:
            await resp.write(data)
        await resp.write_eof()
        return resp


async def collect(chunks: AsyncIterator[dict[str, Any]], timeout: float = 30) -> list[dict[str, Any]]:
    async def go() -> list[dict[str, Any]]:
        return [c async for c in chunks]

    return await asyncio.wait_for(go(), timeout)


def fresh_store(tmp_path: Path, label: str = "dst") -> Store:
    return Store(tmp_path / label / "models")


def layer_bytes(n: int = 300_000) -> bytes:
    return os.urandom(n)


# --- item 7: manifest and token bodies read whole, to a bound ---------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault(manifest_pieces=2), Fault(manifest_pieces=3, manifest_chunked=True), Fault(manifest_pad=1_500_000)],
    ids=["two-writes", "chunked-pieces", "large"],
)
async def test_manifest_in_pieces_or_large_is_read_whole(tmp_path: Path, fault: Fault) -> None:
    async with FakeRegistry(layer_bytes(), fault) as reg:
        dst = fresh_store(tmp_path)
        lines = await collect(pull_model(dst, Config(), reg.name(), insecure=True))
        assert lines[-1] == {"status": "success"}
        assert dst.get_manifest(reg.name())[2] == reg.manifest + b" " * fault.manifest_pad


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_manifest_over_the_bound_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    monkeypatch.setattr(oci, "MAX_MANIFEST_BYTES", 64 * 1024)
    async with FakeRegistry(layer_bytes(), Fault(manifest_pad=100_000, manifest_pieces=4, manifest_chunked=chunked)) as reg:
        with pytest.raises(RegistryError, match=r"manifest is too large .*65536"):
            await collect(pull_model(fresh_store(tmp_path), Config(), reg.name(), insecure=True))


async def test_token_answer_in_two_writes_is_read_whole(tmp_path: Path) -> None:
    from ollamalike.registry import auth

    async def token(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        body = json.dumps({"token": "t" * 5000, "expires_in": 300}).encode()
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:10])
        await asyncio.sleep(0.05)
        await resp.write(body[10:])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/token", token)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        challenge = auth.parse_challenge(f'Bearer realm="http://127.0.0.1:{port}/token",service="x"')
        async with oci.new_session() as session:
            assert await auth.fetch_token(session, challenge, "repository:a/b:pull", None) == "t" * 5000
    finally:
        await runner.cleanup()


# --- item 9: stalls --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [Fault(blob_stall_after=100_000), Fault(blob_stall_after=100_000, chunked=True), Fault(blob_trickle=True),
     Fault(blob_trickle=True, chunked=True)],
    ids=["silent-socket-path", "silent-aiohttp-path", "slow-loris-socket-path", "slow-loris-aiohttp-path"],
)
async def test_stalled_blob_is_retried_then_fails_naming_the_stall_and_resumes(tmp_path: Path, fault: Fault) -> None:
    config = Config(pull_stall_timeout=STALL)
    layer = layer_bytes(1_000_000)
    async with FakeRegistry(layer, fault) as reg:
        dst = fresh_store(tmp_path)
        started = time.monotonic()
        with pytest.raises(RegistryError) as err:
            await collect(pull_model(dst, config, reg.name(), insecure=True))
        took = time.monotonic() - started
        assert "stalled" in err.value.message and "OLLAMALIKE_PULL_STALL_TIMEOUT" in err.value.message, err.value.message
        assert "pull again to resume" in err.value.message
        assert took < 15, took  # three stalls of STALL seconds and short pauses, not forever
        layer_gets = [r for kind, r in fault.requests if kind == "blob" and r.startswith(reg.layer_digest[7:19])]
        assert len(layer_gets) == download.STALL_ATTEMPTS  # retried, then gave up
        saved = dst.pulls()[f"blob:{reg.layer_digest}"]  # kept for resuming
        done = sum(d for _, _, d in saved["parts"])
        if fault.blob_stall_after is not None:
            assert done >= fault.blob_stall_after
        assert dst.list_tags() == [] and not dst.has_blob(reg.layer_digest)
        # The registry recovers: the next pull fetches only what is missing.
        fault.blob_stall_after, fault.blob_trickle = None, False
        fault.requests.clear()
        lines = await collect(pull_model(dst, config, reg.name(), insecure=True))
    assert lines[-1] == {"status": "success"} and dst.has_blob(reg.layer_digest)
    if done:
        assert any(f"bytes={done}-" in r for _, r in fault.requests), fault.requests


async def test_silent_registry_fails_naming_the_stall(tmp_path: Path) -> None:
    async with FakeRegistry(layer_bytes(), Fault(silent_manifest=True)) as reg:
        started = time.monotonic()
        with pytest.raises(RegistryError, match=r"stalled: no answer to GET .*manifests/v1 within 0.4 s"):
            await collect(pull_model(fresh_store(tmp_path), Config(pull_stall_timeout=STALL), reg.name(), insecure=True))
        assert time.monotonic() - started < 10


@pytest.mark.parametrize("what", ["headers", "manifest-body"])
async def test_trickled_headers_or_manifest_fail_naming_the_stall(tmp_path: Path, what: str) -> None:
    """A server that answers a byte every 50 ms: every read succeeds, so only the stall rule ends it."""
    body = b"{" + b" " * 4000 + b"}"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            slow, fast = (head + body, b"") if what == "headers" else (body, head)
            writer.write(fast)
            for i in range(len(slow)):
                writer.write(slow[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.05)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    started = time.monotonic()
    try:
        expected = r"stalled: no answer to GET .*manifests/v1" if what == "headers" else r"the manifest stalled: only \d+ bytes"
        with pytest.raises(RegistryError, match=expected):
            await collect(pull_model(fresh_store(tmp_path), Config(pull_stall_timeout=STALL), f"127.0.0.1:{port}/ns/model:v1", insecure=True))
    finally:
        server.close()
    assert time.monotonic() - started < 10


async def test_a_stalled_pull_frees_its_slot(aiohttp_client: Any, tmp_path: Path) -> None:
    from ollamalike.config import load_config
    from ollamalike.server.app import make_app

    env = {
        "OLLAMALIKE_HOME": str(tmp_path / "home"),
        "OLLAMALIKE_MAX_CONCURRENT_PULLS": "1",
        "OLLAMALIKE_PULL_STALL_TIMEOUT": f"{STALL}s",
    }
    client = await aiohttp_client(make_app(load_config(env)))
    async with FakeRegistry(layer_bytes(), Fault(blob_stall_after=1000)) as reg:
        for _ in range(2):  # the second would be a 503 if the first still held the only slot
            resp = await asyncio.wait_for(client.post("/api/pull", json={"model": reg.name(), "insecure": True}), 30)
            assert resp.status == 200
            lines = [json.loads(line) for line in (await asyncio.wait_for(resp.read(), 30)).splitlines()]
            assert "stalled" in lines[-1]["error"], lines[-1]


# --- item 10: clear errors for a cut body with Range ignored and for a full catalog ----------------


@pytest.mark.parametrize("chunked", [False, True], ids=["socket-path", "aiohttp-path"])
async def test_range_ignored_and_body_cut_short_is_a_clear_error(tmp_path: Path, chunked: bool) -> None:
    layer = layer_bytes(400_000)
    async with FakeRegistry(layer, Fault(ignore_range=True, cut_at=150_000, chunked=chunked)) as reg:
        dst = fresh_store(tmp_path)
        with pytest.raises(RegistryError) as err:
            await collect(pull_model(dst, Config(), reg.name(), insecure=True))
        message = err.value.message
        assert "ignores Range" in message and "cut the blob short (150000 of 400000 bytes)" in message, message
        assert not dst.has_blob(reg.layer_digest) and dst.list_tags() == []
        reg.fault.cut_at = None  # a whole answer now: the pull completes
        lines = await collect(pull_model(dst, Config(), reg.name(), insecure=True))
    assert lines[-1] == {"status": "success"}


@pytest.mark.parametrize("chunked", [False, True], ids=["socket-path", "aiohttp-path"])
async def test_full_catalog_midway_is_a_clear_error_and_the_pull_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunked: bool, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(download, "SAVE_EVERY", 64 * 1024)
    monkeypatch.setattr(download, "REPORT_EVERY", 64 * 1024)  # progress saved often on either read path
    monkeypatch.setattr(download, "WRITE_CHUNK", 64 * 1024)
    layer = layer_bytes(2_000_000)
    layer_key = "blob:" + FakeRegistry.digest(layer)
    dst = fresh_store(tmp_path)
    real_record = Store.record_pull
    saves: list[int] = []

    def record_pull(self: Store, key: str, state: dict[str, Any]) -> None:
        if key == layer_key:
            done = sum(d for _, _, d in state["parts"])
            if done and any(saves):  # the disk fills up after some progress was saved
                raise sqlite3.OperationalError("database or disk is full")
            saves.append(done)
        real_record(self, key, state)

    monkeypatch.setattr(Store, "record_pull", record_pull)
    async with FakeRegistry(layer, Fault(chunked=chunked)) as reg:
        with pytest.raises(InternalError) as err:
            await collect(pull_model(dst, Config(), reg.name(), insecure=True))
        message = err.value.message
        assert "model catalog: database or disk is full" in message and "kept" in message, message
        # The failed save ended the pull itself, not only a loop callback (which would log it and go on).
        assert not [r for r in caplog.records if r.name == "asyncio" and r.levelname == "ERROR"], caplog.text
        monkeypatch.setattr(Store, "record_pull", real_record)  # space was freed
        saved = dst.pulls().get(f"blob:{reg.layer_digest}")
        assert saved is not None and 0 < sum(d for _, _, d in saved["parts"]) < len(layer)
        stats: dict[str, int] = {}
        lines = await collect(pull_model(dst, Config(), reg.name(), insecure=True, stats=stats))
    assert lines[-1] == {"status": "success"} and dst.has_blob(reg.layer_digest)
    assert stats["transferred"] < len(layer)  # resumed, not fetched again


async def test_full_catalog_at_the_tag_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dst = fresh_store(tmp_path)
    real_put = Store.put_manifest

    def put_manifest(self: Store, *args: Any, **kwargs: Any) -> str:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "put_manifest", put_manifest)
    async with FakeRegistry(layer_bytes()) as reg:
        with pytest.raises(InternalError, match="cannot record .* in the model catalog: database or disk is full; its blobs are kept"):
            await collect(pull_model(dst, Config(), reg.name(), insecure=True))
        assert dst.has_blob(reg.layer_digest)
        monkeypatch.setattr(Store, "put_manifest", real_put)
        stats: dict[str, int] = {}
        lines = await collect(pull_model(dst, Config(), reg.name(), insecure=True, stats=stats))
    assert lines[-1] == {"status": "success"} and stats.get("transferred", 0) == 0


# --- item 11: digest references -------------------------------------------------------------------


async def test_pull_by_digest_fetches_exactly_that_manifest(tmp_path: Path) -> None:
    async with FakeRegistry(layer_bytes()) as reg:
        pin = reg.digest(reg.manifest)
        dst = fresh_store(tmp_path)
        lines = await collect(pull_model(dst, Config(), f"{reg.name()}@{pin}", insecure=True))
        assert lines[-1] == {"status": "success"}
        assert ("manifest", pin) in reg.fault.requests and ("manifest", "v1") not in reg.fault.requests
        assert dst.get_manifest(reg.name())[0] == pin

        # A pin the registry does not have.
        with pytest.raises(RegistryError, match="file does not exist"):
            await collect(pull_model(fresh_store(tmp_path, "missing"), Config(), f"{reg.name()}@sha256:{'0' * 64}", insecure=True))

        # A registry answering a pinned request with another manifest: refused, nothing written.
        other = json.loads(reg.manifest)
        other["layers"][0]["annotations"] = {"x": "y"}
        reg.fault.served_manifest = json.dumps(other).encode()
        bad = fresh_store(tmp_path, "bad")
        with pytest.raises(RegistryError, match="not the pinned manifest"):
            await collect(pull_model(bad, Config(), f"{reg.name()}@{pin}", insecure=True))
        assert bad.list_tags() == [] and not bad.has_blob(reg.layer_digest)


@pytest.mark.parametrize(
    "ref", ["hf.co/user/repo@sha256:" + "a" * 64], ids=["hugging-face"]
)
async def test_pull_by_digest_refused_where_it_cannot_be_honoured(tmp_path: Path, ref: str) -> None:
    with pytest.raises(BadRequest, match="cannot be pulled by digest"):
        await collect(pull_model(fresh_store(tmp_path), Config(), ref))
