"""Pull and push against a REAL docker-registry (Debian's), directly through the registry package.

A proxy in front of the registry misbehaves on purpose (corrupted and oversized blobs, ignored
Range, redirects, 503s, Bearer token auth) to check that verification, fallbacks, retries and the
credential rules hold, and that a failed pull leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from ollamalike.config import Config, Proxies
from ollamalike.errors import InternalError, RegistryError
from ollamalike.registry import download, parts, rawbody
from ollamalike.registry.pull import pull_model
from ollamalike.registry.push import push_model
from ollamalike.store import Store
from tests.helpers import store_snapshot
from tests.registry_server import (
    DockerRegistry,
    ProxyBehaviour,
    RegistryProxy,
    free_port,
    make_model,
    registry_available,
)

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry"),
]

BIG = 6 * 1024 * 1024  # split into several parts with the small part size below


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small parts so a few MiB exercise the parallel ranged path.
    monkeypatch.setattr(parts, "MIN_PART", 1024 * 1024)
    monkeypatch.setattr(download, "SAVE_EVERY", 256 * 1024)


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return os.urandom(BIG)


@pytest.fixture(scope="module")
def pushed(registry: DockerRegistry, model_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A model pushed once to the registry, shared by the pull tests (pushing is its own test)."""
    import asyncio

    store = Store(tmp_path_factory.mktemp("src") / "models")
    name = f"{registry.host}/shared/model:v1"
    digest = make_model(store, name, model_bytes=model_bytes)

    async def go() -> None:
        async for _ in push_model(store, Config(), name, insecure=True):
            pass

    asyncio.run(go())
    _, manifest, body = store.get_manifest(name)
    return {"name": name, "digest": digest, "manifest": manifest, "body": body}


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c async for c in chunks]


async def reader_threads_gone(timeout: float = 5.0) -> bool:
    """Whether every blob reader thread has ended (they end soon after their pump stops)."""
    deadline = time.monotonic() + timeout
    while any(t.name.startswith("blob-reader") for t in threading.enumerate()):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


def fresh_store(tmp_path: Path, label: str = "dst") -> Store:
    return Store(tmp_path / label / "models")


async def pull_through_proxy(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path, behaviour: ProxyBehaviour
) -> Store:
    """Pull the shared model through a proxy behaving so into a fresh store; it must succeed whole."""
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    dst = fresh_store(tmp_path)
    try:
        name = pushed["name"].replace(registry.host, proxy.host)
        lines = await collect(pull_model(dst, Config(), name, insecure=True))
    finally:
        await proxy.stop()
    assert lines[-1] == {"status": "success"}
    assert dst.get_manifest(name)[2] == pushed["body"]
    return dst


async def test_push_then_pull_round_trip_identical(registry: DockerRegistry, tmp_path: Path, model_bytes: bytes) -> None:
    src = fresh_store(tmp_path, "src")
    name = f"{registry.host}/ns/roundtrip:tag"
    digest = make_model(src, name, model_bytes=model_bytes)
    pushed = await collect(push_model(src, Config(), name, insecure=True))
    statuses = [c["status"] for c in pushed]
    assert statuses[0] == "retrieving manifest" and statuses[-2:] == ["pushing manifest", "success"]
    layer_lines = [c for c in pushed if c["status"].startswith("pushing ") and "digest" in c]
    assert all(c["status"] == f"pushing {c['digest'][7:19]}" for c in layer_lines)
    assert {c["digest"] for c in layer_lines} == {d["digest"] for d in src.get_manifest(name)[1]["layers"]} | {
        src.get_manifest(name)[1]["config"]["digest"]
    }

    dst = fresh_store(tmp_path)
    stats: dict[str, int] = {}
    lines = await collect(pull_model(dst, Config(), name, insecure=True, stats=stats))
    statuses = [c["status"] for c in lines]
    assert statuses[0] == "pulling manifest"
    assert statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"]
    got_digest, manifest, body = dst.get_manifest(name)
    assert got_digest == digest
    assert body == src.get_manifest(name)[2]
    for desc in [manifest["config"], *manifest["layers"]]:
        assert hashlib.sha256(dst.read_blob(desc["digest"])).hexdigest() == desc["digest"][7:]
    assert stats["transferred"] == sum(d["size"] for d in [manifest["config"], *manifest["layers"]])
    finals = [c for c in lines if c.get("digest") == manifest["layers"][0]["digest"]]
    assert finals[-1]["completed"] == finals[-1]["total"] == BIG
    assert dst.pulls() == {}

    # Pulling again transfers nothing.
    stats = {}
    await collect(pull_model(dst, Config(), name, insecure=True, stats=stats))
    assert stats.get("transferred", 0) == 0


MIB = 1024 * 1024
CHUNKED_SIZE = 3 * MIB + MIB // 2


def chunk_ranges(*starts: int) -> list[str]:
    """Content-Range headers of 1 MiB upload chunks starting at these offsets."""
    return [f"{a}-{min(a + MIB, CHUNKED_SIZE) - 1}" for a in starts]


@pytest.mark.parametrize(
    ("fail_patch", "passes", "expected"),
    [
        (0, 0.0, chunk_ranges(0, MIB, 2 * MIB, 3 * MIB)),
        # The 2nd chunk fails before any byte lands: the upload's status says 1 MiB, go on there.
        (2, 0.0, chunk_ranges(0, MIB, MIB, 2 * MIB, 3 * MIB)),
        # It fails after half landed: the distribution registry then forgets the upload (its
        # location names the old offset), so a new upload starts over.
        (2, 0.5, chunk_ranges(0, MIB, 0, MIB, 2 * MIB, 3 * MIB)),
    ],
    ids=["in-order", "chunk-failed-resumed", "chunk-half-landed-restarted"],
)
async def test_large_blob_goes_up_in_chunks_and_survives_a_failed_one(
    registry: DockerRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fail_patch: int,
    passes: float,
    expected: list[str],
) -> None:
    from ollamalike.registry import oci, upload

    monkeypatch.setattr(upload, "UPLOAD_PART", MIB)
    monkeypatch.setattr(oci.RetryPolicy, "base_delay", 0.01)
    behaviour = ProxyBehaviour(fail_patch=fail_patch, fail_patch_passes=passes)
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    src = fresh_store(tmp_path, "src")
    name = f"{proxy.host}/ns/chunked:case{fail_patch}{int(passes * 10)}"
    digest = make_model(src, name, model_bytes=os.urandom(CHUNKED_SIZE))
    try:
        lines = await collect(push_model(src, Config(), name, insecure=True))
        assert lines[-1] == {"status": "success"}
        dst = fresh_store(tmp_path)
        await collect(pull_model(dst, Config(), name, insecure=True))
    finally:
        await proxy.stop()
    assert behaviour.patch_ranges == expected
    assert dst.get_manifest(name)[0] == digest  # the registry put the chunks together right
    layer = src.get_manifest(name)[1]["layers"][0]["digest"]
    assert hashlib.sha256(dst.read_blob(layer)).hexdigest() == layer[7:]
    pushed_up = [c for c in lines if c.get("digest") == layer]
    assert pushed_up[-1]["completed"] == pushed_up[-1]["total"] == CHUNKED_SIZE


async def test_a_saved_upload_the_registry_forgot_starts_over(
    registry: DockerRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ollamalike.registry import upload

    monkeypatch.setattr(upload, "UPLOAD_PART", MIB)
    src = fresh_store(tmp_path, "src")
    name = f"{registry.host}/ns/forgotten:v1"
    digest = make_model(src, name, model_bytes=os.urandom(CHUNKED_SIZE))
    layer = src.get_manifest(name)[1]["layers"][0]["digest"]
    key = f"upload:{registry.host}/ns/forgotten:{layer}"
    gone = f"/v2/ns/forgotten/blobs/uploads/{'0' * 8}-0000-0000-0000-{'0' * 12}"
    src.record_pull(key, {"size": CHUNKED_SIZE, "location": gone, "offset": 2 * MIB})
    lines = await collect(push_model(src, Config(), name, insecure=True))
    assert lines[-1] == {"status": "success"} and src.get_pull(key) is None
    dst = fresh_store(tmp_path)
    await collect(pull_model(dst, Config(), name, insecure=True))
    assert dst.get_manifest(name)[0] == digest


async def test_push_reads_blobs_off_the_event_loop(
    registry: DockerRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readers: set[str] = set()
    real_pread = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        readers.add(threading.current_thread().name)
        return real_pread(fd, n, offset)

    monkeypatch.setattr(os, "pread", pread)
    src = fresh_store(tmp_path, "src")
    name = f"{registry.host}/ns/offloop:tag"
    make_model(src, name, model_bytes=os.urandom(3 * 1024 * 1024))
    lines = await collect(push_model(src, Config(), name, insecure=True))
    assert lines[-1] == {"status": "success"}
    # A cold model on a slow disk would otherwise stall every other request of the daemon.
    assert readers and threading.main_thread().name not in readers, readers


@pytest.mark.parametrize("damage", ["missing", "truncated"])
async def test_push_of_a_damaged_store_is_a_clear_error(registry: DockerRegistry, tmp_path: Path, damage: str) -> None:
    src = fresh_store(tmp_path, "src")
    name = f"{registry.host}/ns/damaged:{damage}"
    make_model(src, name, model_bytes=os.urandom(100_000))
    layer = src.get_manifest(name)[1]["layers"][0]["digest"]
    path = src.blob_path(layer)
    if damage == "missing":
        path.unlink()
    else:
        os.truncate(path, 1000)
    with pytest.raises(InternalError, match="missing from the store" if damage == "missing" else "is not 100000 bytes"):
        await collect(push_model(src, Config(), name, insecure=True))
    with pytest.raises(RegistryError, match="file does not exist"):  # no manifest went up
        await collect(pull_model(fresh_store(tmp_path), Config(), name, insecure=True))


async def test_push_again_skips_existing_blobs(registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path) -> None:
    src = fresh_store(tmp_path, "src2")
    proxy = RegistryProxy(registry.url)
    await proxy.start()
    try:
        name = pushed["name"].replace(registry.host, proxy.host)
        await collect(pull_model(src, Config(), name, insecure=True))
        proxy.b.requests.clear()
        await collect(push_model(src, Config(), name, insecure=True))
    finally:
        await proxy.stop()
    methods = [(m, p) for m, p, _ in proxy.b.requests]
    assert not any(m in ("POST", "PATCH") for m, _ in methods), methods
    assert sum(1 for m, _ in methods if m == "HEAD") == 2
    assert ("PUT", "/v2/shared/model/manifests/v1") in methods


@pytest.mark.parametrize("local", [True, False], ids=["loopback-one-request", "remote-ranged-parts"])
async def test_pull_requests_per_blob(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local: bool
) -> None:
    # A registry on this machine is CPU-bound: one request per blob. Elsewhere: parallel ranged parts.
    monkeypatch.setattr(download, "_is_loopback", lambda host: local)
    proxy = RegistryProxy(registry.url)
    await proxy.start()
    try:
        await collect(pull_model(fresh_store(tmp_path), Config(), pushed["name"].replace(registry.host, proxy.host), insecure=True))
    finally:
        await proxy.stop()
    layer = pushed["manifest"]["layers"][0]["digest"]
    ranges = [r for m, p, r in proxy.b.requests if m == "GET" and p.endswith(layer)]
    if local:
        assert ranges == [""], ranges
    else:
        assert len(ranges) == BIG // parts.MIN_PART and all(r.startswith("bytes=") for r in ranges), ranges


@pytest.mark.parametrize("chunked", [False, True], ids=["reader-threads", "aiohttp"])
async def test_remote_registry_gets_parallel_streams_hashed_in_order(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    # As if the registry were on another machine: parts stream in parallel and land out of order.
    monkeypatch.setattr(download, "_is_loopback", lambda host: False)
    behaviour = ProxyBehaviour(throttle_bytes_per_s=4 * 1024 * 1024, chunked=chunked)
    dst = await pull_through_proxy(registry, pushed, tmp_path, behaviour)
    assert dst.has_blob(pushed["manifest"]["layers"][0]["digest"])  # verified: hashed in byte order
    assert behaviour.blob_gets_peak >= 4, behaviour.blob_gets_peak


@pytest.mark.parametrize(
    "behaviour",
    [
        ProxyBehaviour(ignore_range=True),
        ProxyBehaviour(redirect_blobs=True),
        ProxyBehaviour(fail_first=2),
        ProxyBehaviour(chunked=True),
        ProxyBehaviour(chunked=True, ignore_range=True),
    ],
    ids=["server-ignores-range", "redirect-to-storage", "transient-503", "chunked-bodies", "chunked-whole-blob"],
)
async def test_pull_through_awkward_servers(
    registry: DockerRegistry,
    pushed: dict[str, Any],
    tmp_path: Path,
    behaviour: ProxyBehaviour,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken_over: list[bool] = []
    real_detach = rawbody.detach

    def detach(resp: Any) -> Any:
        detached = real_detach(resp)
        taken_over.append(detached is not None)
        return detached

    monkeypatch.setattr(rawbody, "detach", detach)
    await pull_through_proxy(registry, pushed, tmp_path, behaviour)
    if behaviour.redirect_blobs:
        assert any(p.startswith("/storage/") for _, p, _ in behaviour.requests)
    # Plain-HTTP bodies with a length are read off the socket (but for a small one that aiohttp
    # has already read whole); chunked ones through aiohttp.
    assert any(taken_over) is not behaviour.chunked, taken_over


@pytest.mark.parametrize("mode", ["flip", "flip-chunked", "oversize"])
async def test_corrupt_blob_rejected_nothing_left(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path, mode: str
) -> None:
    layer = pushed["manifest"]["layers"][0]["digest"]
    if mode == "oversize":
        behaviour = ProxyBehaviour(oversize_digest=layer)
    else:  # read off the socket by the pump, or (chunked) through aiohttp
        behaviour = ProxyBehaviour(flip_digest=layer, chunked=mode == "flip-chunked")
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    dst = fresh_store(tmp_path)
    before = store_snapshot(dst.root)
    try:
        name = pushed["name"].replace(registry.host, proxy.host)
        with pytest.raises(RegistryError) as err:
            await collect(pull_model(dst, Config(), name, insecure=True))
    finally:
        await proxy.stop()
    assert ("larger than its declared size" if mode == "oversize" else "digest mismatch") in err.value.message
    files, rows = store_snapshot(dst.root)
    assert not any(layer[7:] in f for f in files), files  # no blob, no partial
    assert not dst.has_blob(layer)
    assert dst.list_tags() == []
    assert f"blob:{layer}" not in dst.pulls()
    # Only the config blob may stay (verified, or resumable if it was stopped midway).
    config = pushed["manifest"]["config"]["digest"][7:]
    assert all(f in before[0] or config in f for f in files), files


async def test_token_auth_flow(registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path) -> None:
    behaviour = ProxyBehaviour(token_user="alice", token_password="s3cret")
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    try:
        name = pushed["name"].replace(registry.host, proxy.host)
        good = Config(registry_auth=((proxy.host, "alice", "s3cret"),))
        dst = fresh_store(tmp_path)
        lines = await collect(pull_model(dst, good, name, insecure=True))
        assert lines[-1] == {"status": "success"}
        assert behaviour.tokens_issued >= 1

        # Push needs a pull,push token; the same credentials get one.
        src = fresh_store(tmp_path, "push-src")
        make_model(src, name.replace(":v1", ":pushed"), model_bytes=b"pushed through token auth")
        issued = behaviour.tokens_issued
        lines = await collect(push_model(src, good, name.replace(":v1", ":pushed"), insecure=True))
        assert lines[-1] == {"status": "success"} and behaviour.tokens_issued > issued

        bad = Config(registry_auth=((proxy.host, "alice", "wrong"),))
        with pytest.raises(RegistryError, match="authentication failed"):
            await collect(pull_model(fresh_store(tmp_path, "bad"), bad, name, insecure=True))
        with pytest.raises(RegistryError, match="authentication failed"):
            await collect(pull_model(fresh_store(tmp_path, "anon"), Config(), name, insecure=True))

        # A registry naming a plain-HTTP realm on another host never gets our credentials.
        behaviour.realm = "http://auth.example.invalid/token"
        issued = behaviour.tokens_issued
        with pytest.raises(RegistryError, match="refusing"):
            await collect(pull_model(fresh_store(tmp_path, "evil"), good, name, insecure=True))
        assert behaviour.tokens_issued == issued
    finally:
        await proxy.stop()


@pytest.mark.parametrize(("local", "uses"), [(True, 2), (False, 4)], ids=["one-stream", "parallel-parts"])
async def test_expired_tokens_are_renewed_during_a_pull_and_a_push(
    registry: DockerRegistry,
    pushed: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    local: bool,
    uses: int,
) -> None:
    # Tokens expire after a few requests: a pull (whose blobs, or parallel parts, meet an expired
    # token together) and a push (HEAD, POST, PUT, manifest) outlive several and renew midway.
    monkeypatch.setattr(download, "_is_loopback", lambda host: local)
    behaviour = ProxyBehaviour(token_user="dana", token_password="pw", token_uses=uses)
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    try:
        name = pushed["name"].replace(registry.host, proxy.host)
        config = Config(registry_auth=((proxy.host, "dana", "pw"),))
        dst = fresh_store(tmp_path)
        lines = await collect(pull_model(dst, config, name, insecure=True))
        assert lines[-1] == {"status": "success"}
        assert dst.get_manifest(name)[2] == pushed["body"]
        assert behaviour.tokens_issued >= 2

        src = fresh_store(tmp_path, "push-src")
        target = name.replace(":v1", ":renewed")
        make_model(src, target, model_bytes=os.urandom(2 * 1024 * 1024))
        issued = behaviour.tokens_issued
        lines = await collect(push_model(src, config, target, insecure=True))
        assert lines[-1] == {"status": "success"} and behaviour.tokens_issued >= issued + 2
        again = fresh_store(tmp_path, "again")
        await collect(pull_model(again, config, target, insecure=True))
        assert again.get_manifest(target)[0] == src.get_manifest(target)[0]
    finally:
        await proxy.stop()


async def test_token_never_follows_a_redirect_to_another_origin(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path
) -> None:
    behaviour = ProxyBehaviour(token_user="bob", token_password="pw", redirect_blobs=True, redirect_host="localhost")
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    try:
        name = pushed["name"].replace(registry.host, proxy.host)
        config = Config(registry_auth=((proxy.host, "bob", "pw"),))
        lines = await collect(pull_model(fresh_store(tmp_path), config, name, insecure=True))
    finally:
        await proxy.stop()
    assert lines[-1] == {"status": "success"}
    assert behaviour.storage_authorization and set(behaviour.storage_authorization) == {""}


async def test_basic_auth_when_the_registry_asks_for_it(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path
) -> None:
    behaviour = ProxyBehaviour(basic_user="carol", basic_password="pw")
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    try:
        name = pushed["name"].replace(registry.host, proxy.host)
        with pytest.raises(RegistryError, match="unauthorized"):
            await collect(pull_model(fresh_store(tmp_path, "anon"), Config(), name, insecure=True))
        config = Config(registry_auth=((proxy.host, "carol", "pw"),))
        lines = await collect(pull_model(fresh_store(tmp_path), config, name, insecure=True))
    finally:
        await proxy.stop()
    assert lines[-1] == {"status": "success"}


async def test_lost_connection_resumes_the_part_without_refetching(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path
) -> None:
    behaviour = ProxyBehaviour(drop_after=300 * 1024)
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    dst = fresh_store(tmp_path)
    stats: dict[str, int] = {}
    try:
        name = pushed["name"].replace(registry.host, proxy.host)
        lines = await collect(pull_model(dst, Config(), name, insecure=True, stats=stats))
    finally:
        await proxy.stop()
    assert lines[-1] == {"status": "success"}
    assert behaviour.drop_after == 0  # the connection was cut
    manifest = pushed["manifest"]
    assert stats["transferred"] == manifest["config"]["size"] + manifest["layers"][0]["size"]
    # The cut blob was asked for again from where it stopped, not from its start.
    layer = manifest["layers"][0]["digest"]
    gets = [r for m, p, r in behaviour.requests if m == "GET" and p.endswith(layer)]
    assert len(gets) == 2 and gets[0] == "", gets
    assert gets[1].startswith("bytes=") and 0 < int(gets[1][6:].split("-")[0]) <= 300 * 1024, gets


async def test_cancelled_pull_stops_its_readers_and_resumes_later(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that goes away mid-blob: the reader thread ends at once, the progress is kept."""
    monkeypatch.setattr(download, "SAVE_EVERY", 1 << 40)  # so only the save on the way out counts
    layer = pushed["manifest"]["layers"][0]["digest"]
    slow = ProxyBehaviour(throttle_bytes_per_s=2 * 1024 * 1024)
    proxy = RegistryProxy(registry.url, slow)
    await proxy.start()
    dst = fresh_store(tmp_path)
    name = pushed["name"].replace(registry.host, proxy.host)
    midway = asyncio.Event()

    async def pull() -> None:
        async for line in pull_model(dst, Config(), name, insecure=True):
            if line.get("digest") == layer and line.get("completed", 0) >= 1024 * 1024:
                midway.set()

    task = asyncio.create_task(pull())
    try:
        await asyncio.wait_for(midway.wait(), 30)
        assert any(t.name.startswith("blob-reader") for t in threading.enumerate())
        started = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - started < 3
        assert await reader_threads_gone()
    finally:
        task.cancel()
        await proxy.stop()
    assert not dst.has_blob(layer)
    saved = dst.pulls()[f"blob:{layer}"]
    assert sum(done for _, _, done in saved["parts"]) >= 1024 * 1024  # saved on the way out, not only every few MiB
    stats: dict[str, int] = {}
    lines = await collect(pull_model(dst, Config(), pushed["name"], insecure=True, stats=stats))
    assert lines[-1] == {"status": "success"}
    assert dst.has_blob(layer) and dst.pulls() == {}
    assert stats["transferred"] < BIG  # only what was missing


@pytest.mark.parametrize("chunked", [False, True], ids=["reader-thread", "aiohttp"])
async def test_disk_full_midway_is_a_clear_error_and_the_pull_resumes(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    import errno

    from ollamalike.store.blobs import PartialBlob

    layer = pushed["manifest"]["layers"][0]["digest"]
    real_write = PartialBlob.write_chunks_at
    written: list[int] = []

    def filling_up(self: PartialBlob, offset: int, chunks: Any) -> None:
        if self.digest == layer and sum(written) >= 2 * 1024 * 1024:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, offset, chunks)
        if self.digest == layer:
            written.append(sum(len(c) for c in chunks))

    monkeypatch.setattr(PartialBlob, "write_chunks_at", filling_up)
    proxy = RegistryProxy(registry.url, ProxyBehaviour(chunked=chunked))
    await proxy.start()
    dst = fresh_store(tmp_path)
    name = pushed["name"].replace(registry.host, proxy.host)
    try:
        with pytest.raises(InternalError, match="No space left on device; what was downloaded is kept"):
            await collect(pull_model(dst, Config(), name, insecure=True))
        assert await reader_threads_gone()
        saved = dst.pulls()[f"blob:{layer}"]
        assert sum(done for _, _, done in saved["parts"]) == sum(written) >= 2 * 1024 * 1024
        assert not dst.has_blob(layer) and dst.list_tags() == []
        monkeypatch.setattr(PartialBlob, "write_chunks_at", real_write)  # space was freed
        stats: dict[str, int] = {}
        lines = await collect(pull_model(dst, Config(), name, insecure=True, stats=stats))
    finally:
        await proxy.stop()
    assert lines[-1] == {"status": "success"} and dst.has_blob(layer)
    assert stats["transferred"] == BIG - sum(written)


async def test_saved_state_without_its_partial_file_is_ignored(
    registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path
) -> None:
    layer = pushed["manifest"]["layers"][0]["digest"]
    dst = fresh_store(tmp_path)
    # State claiming half the blob, but no partial file behind it (e.g. a save that landed late).
    dst.record_pull(f"blob:{layer}", {"size": BIG, "parts": [[0, BIG, BIG // 2]]})
    stats: dict[str, int] = {}
    lines = await collect(pull_model(dst, Config(), pushed["name"], insecure=True, stats=stats))
    assert lines[-1] == {"status": "success"}
    assert stats["transferred"] == BIG + pushed["manifest"]["config"]["size"]
    assert dst.pulls() == {}


async def test_pull_and_push_through_an_http_proxy(registry: DockerRegistry, pushed: dict[str, Any], tmp_path: Path) -> None:
    proxy = RegistryProxy(registry.url)
    await proxy.start()
    # A name that does not resolve: only a request sent through the proxy reaches the registry.
    name = pushed["name"].replace(registry.host, f"registry.invalid:{registry.port}")
    config = Config(proxies=Proxies(http=f"http://{proxy.host}"))
    try:
        dst = fresh_store(tmp_path)
        lines = await collect(pull_model(dst, config, name, insecure=True))
        assert lines[-1] == {"status": "success"}
        assert dst.get_manifest(name)[2] == pushed["body"]
        assert any(p.endswith(pushed["manifest"]["layers"][0]["digest"]) for _, p, _ in proxy.b.requests)

        src = fresh_store(tmp_path, "src")
        target = name.replace(":v1", ":proxied")
        make_model(src, target, model_bytes=os.urandom(200_000))
        lines = await collect(push_model(src, config, target, insecure=True))
        assert lines[-1] == {"status": "success"}
        assert any(m == "PUT" and "/manifests/proxied" in p for m, p, _ in proxy.b.requests)

        # A proxy kind we cannot use is a clear error, before any request.
        socks = Config(proxies=Proxies(http="socks5://127.0.0.1:1080"))
        with pytest.raises(RegistryError, match="only http:// and https:// proxies work"):
            await collect(pull_model(fresh_store(tmp_path, "socks"), socks, name, insecure=True))
        # NO_PROXY names it: a direct connection, which cannot resolve the name.
        direct = Config(proxies=Proxies(http=f"http://{proxy.host}", no_proxy=(".invalid",)))
        with pytest.raises(RegistryError, match="host not found"):
            await collect(pull_model(fresh_store(tmp_path, "direct"), direct, name, insecure=True))
    finally:
        await proxy.stop()


async def test_registry_that_is_down_fails_fast(tmp_path: Path) -> None:
    store = fresh_store(tmp_path)
    before = store_snapshot(store.root)
    started = time.monotonic()
    with pytest.raises(RegistryError, match="cannot reach registry 127.0.0.1:"):
        await collect(pull_model(store, Config(), f"127.0.0.1:{free_port()}/ns/model:tag", insecure=True))
    assert time.monotonic() - started < 3  # a few quick tries, not the whole retry budget
    assert store_snapshot(store.root) == before


async def test_plain_http_registry_without_insecure_fails_fast(registry: DockerRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="needs --insecure"):
        await collect(pull_model(fresh_store(tmp_path), Config(), f"{registry.host}/ns/model:tag"))


async def test_manifest_not_found(registry: DockerRegistry, tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="file does not exist"):
        await collect(pull_model(fresh_store(tmp_path), Config(), f"{registry.host}/ns/nothing:here", insecure=True))


def _manifest(layer: dict[str, Any]) -> dict[str, Any]:
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "b" * 64, "size": 2},
        "layers": [layer],
    }


async def _pull_refused(tmp_path: Path, manifest: dict[str, Any], error: type[Exception], match: str) -> None:
    """Pull from a fake registry serving ``manifest``: it must fail with ``error``, having asked for no
    blob and left the store exactly as it was."""
    requests: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        requests.append(request.path)
        if "/manifests/" in request.path:
            return web.Response(body=json.dumps(manifest).encode(), content_type="application/vnd.docker.distribution.manifest.v2+json")
        return web.Response(body=b"x" * 10)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    dst = fresh_store(tmp_path)
    before = store_snapshot(dst.root)
    try:
        with pytest.raises(error, match=match):
            await collect(pull_model(dst, Config(), f"127.0.0.1:{port}/ns/model:tag", insecure=True))
    finally:
        await runner.cleanup()
    assert store_snapshot(dst.root) == before
    assert not any("/blobs/" in p for p in requests)


async def test_pull_refuses_what_cannot_fit_on_disk(tmp_path: Path) -> None:
    from ollamalike.errors import InternalError

    layer = {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + "a" * 64, "size": 2**62}
    await _pull_refused(tmp_path, _manifest(layer), InternalError, "not enough disk space")


BAD_MANIFESTS: dict[str, dict[str, Any]] = {
    "dotdot-digest": {"digest": "sha256:../../../../etc/passwd"},
    "short-digest": {"digest": "sha256:abc123"},
    "non-hex-digest": {"digest": "sha256:" + "z" * 64},
    "unknown-media-type": {"mediaType": "application/x-evil"},
    "negative-size": {"size": -1},
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
async def test_malformed_manifest_rejected_before_any_write(tmp_path: Path, case: str) -> None:
    layer: dict[str, Any] = {"mediaType": "application/vnd.ollama.image.model", "digest": "sha256:" + "a" * 64, "size": 10}
    layer.update(BAD_MANIFESTS[case])
    await _pull_refused(tmp_path, _manifest(layer), RegistryError, "invalid manifest")
    assert not (tmp_path.parent / "etc").exists()
