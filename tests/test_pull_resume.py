"""Interrupted transfers resume: a pulling or pushing process is SIGKILLed midway, the next
pull fetches only the rest, the next push sends only the chunks the registry lacks.

Runs against a real docker-registry. The first transfer goes through a proxy that slows it (so
it is still running when we kill it) in a separate process; the resumed one runs here.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ollamalike.config import Config
from ollamalike.registry import parts
from ollamalike.registry.pull import pull_model
from ollamalike.registry.push import push_model
from ollamalike.store import Store
from tests.registry_server import (
    DockerRegistry,
    ProxyBehaviour,
    RegistryProxy,
    make_model,
    registry_available,
)

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry"),
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SIZE = 16 * 1024 * 1024

CHILD = """
import asyncio, sys
from ollamalike.config import Config
from ollamalike.registry import download, parts, upload
from ollamalike.registry.pull import pull_model
from ollamalike.registry.push import push_model
from ollamalike.store import Store
parts.MIN_PART = 1024 * 1024
download.SAVE_EVERY = 128 * 1024
upload.UPLOAD_PART = 1024 * 1024
transfer = {"pull": pull_model, "push": push_model}[sys.argv[1]]
async def main():
    async for _ in transfer(Store(sys.argv[2]), Config(), sys.argv[3], insecure=True):
        pass
asyncio.run(main())
"""


async def test_killed_pull_resumes_with_only_the_remainder(
    registry: DockerRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parts, "MIN_PART", 1024 * 1024)
    src = Store(tmp_path / "src")
    name = f"{registry.host}/resume/model:big"
    payload = os.urandom(SIZE)
    make_model(src, name, model_bytes=payload)
    async for _ in push_model(src, Config(), name, insecure=True):
        pass
    _, manifest, _ = src.get_manifest(name)
    layer = manifest["layers"][0]["digest"]

    proxy = RegistryProxy(registry.url, ProxyBehaviour(throttle_bytes_per_s=512 * 1024))
    await proxy.start()
    dst_dir = tmp_path / "dst"
    dst = Store(dst_dir)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, "pull", str(dst_dir), name.replace(registry.host, proxy.host)],
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        saved = 0
        while time.monotonic() < deadline:
            state = dst.get_pull(f"blob:{layer}")
            saved = sum(p[2] for p in state["parts"]) if state else 0
            if saved >= 2 * 1024 * 1024:
                break
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            await asyncio.sleep(0.02)
        assert saved >= 2 * 1024 * 1024, "the first pull made no progress"
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        await proxy.stop()

    state = dst.get_pull(f"blob:{layer}")
    assert state is not None and state["size"] == SIZE
    saved = sum(p[2] for p in state["parts"])
    assert 0 < saved < SIZE
    assert not dst.has_blob(layer)
    assert dst.list_tags() == []

    stats: dict[str, int] = {}
    config_missing = not dst.has_blob(manifest["config"]["digest"])
    lines = [c async for c in pull_model(dst, Config(), name, insecure=True, stats=stats)]
    assert lines[-1] == {"status": "success"}
    expected = SIZE - saved + (manifest["config"]["size"] if config_missing else 0)
    assert stats["transferred"] == expected
    first = next(c for c in lines if c.get("digest") == layer)
    assert first["completed"] == saved  # progress starts where the killed pull stopped
    assert hashlib.sha256(dst.read_blob(layer)).hexdigest() == layer[7:]
    assert dst.read_blob(layer) == payload
    assert dst.get_pull(f"blob:{layer}") is None


async def test_killed_push_resumes_from_its_last_chunk(
    registry: DockerRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ollamalike.registry import upload

    mib = 1024 * 1024
    monkeypatch.setattr(upload, "UPLOAD_PART", mib)
    behaviour = ProxyBehaviour(hold_patch=3)  # the child gets 2 chunks through, then hangs on the 3rd
    proxy = RegistryProxy(registry.url, behaviour)
    await proxy.start()
    src_dir = tmp_path / "src"
    src = Store(src_dir)
    name = f"{proxy.host}/resume/pushed:v1"
    digest = make_model(src, name, model_bytes=os.urandom(5 * mib + 123))
    layer = src.get_manifest(name)[1]["layers"][0]["digest"]
    key = f"upload:{proxy.host}/resume/pushed:{layer}"
    child = subprocess.Popen([sys.executable, "-c", CHILD, "push", str(src_dir), name], cwd=REPO_ROOT, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while behaviour.patches_seen < 3 or (src.get_pull(key) or {}).get("offset") != 2 * mib:
            assert time.monotonic() < deadline, "the first push did not get two chunks through"
            assert child.poll() is None, child.stderr.read() if child.stderr else ""
            await asyncio.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait()
        behaviour.release_hold.set()
        assert behaviour.patch_ranges == [f"0-{mib - 1}", f"{mib}-{2 * mib - 1}"]

        lines = [c async for c in push_model(src, Config(), name, insecure=True)]
        assert lines[-1] == {"status": "success"}
        # Only what the registry lacked went up, from the saved upload's place.
        assert behaviour.patch_ranges[2:] == [f"{a}-{min(a + mib, 5 * mib + 123) - 1}" for a in (2 * mib, 3 * mib, 4 * mib, 5 * mib)]
        assert src.get_pull(key) is None
        dst = Store(tmp_path / "dst")
        await collect_pull(dst, name)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        behaviour.release_hold.set()
        await proxy.stop()
    assert dst.get_manifest(name)[0] == digest
    assert hashlib.sha256(dst.read_blob(layer)).hexdigest() == layer[7:]


async def collect_pull(store: Store, name: str) -> None:
    lines = [c async for c in pull_model(store, Config(), name, insecure=True)]
    assert lines[-1] == {"status": "success"}
