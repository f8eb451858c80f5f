"""The store: blobs (atomicity, dedup, digests, non-regular files), partial blobs, go_json, manifests."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ollamalike.errors import BadRequest, PayloadTooLarge, RegistryError
from ollamalike.store import Store
from ollamalike.store import blobs as blobs_mod
from ollamalike.store.manifest import (
    CONFIG_MEDIA_TYPE,
    MEDIA_MODEL,
    Descriptor,
    build_config,
    build_manifest,
    go_json,
    parse_manifest,
    validate_manifest,
)


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def blob_dir_listing(store: Store) -> list[str]:
    return sorted(os.listdir(store.blobs.root))


@pytest.fixture
def store(models_dir: Path) -> Store:
    return Store(models_dir)


# --- blobs ---------------------------------------------------------------------------------


def test_add_bytes_is_content_addressed_and_deduplicated(store: Store) -> None:
    d1, n1 = store.add_blob_bytes(b"hello")
    d2, n2 = store.add_blob_bytes(b"hello", expected_digest=sha(b"hello"))
    assert d1 == d2 == sha(b"hello") and n1 == n2 == 5
    assert blob_dir_listing(store) == ["sha256-" + d1[7:]]
    assert store.read_blob(d1) == b"hello"
    assert store.blob_path(d1).name == "sha256-" + d1[7:]


def test_add_file_copies_while_hashing(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    data = os.urandom(3 * blobs_mod.CHUNK + 17)
    src.write_bytes(data)
    digest, size = store.add_blob_file(src)
    assert digest == sha(data) and size == len(data)
    assert store.read_blob(digest) == data
    # Again, with the expected digest: nothing new is written.
    assert store.add_blob_file(src, sha(data)) == (digest, size)
    assert blob_dir_listing(store) == ["sha256-" + digest[7:]]


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "missing"])
def test_add_file_refuses_non_regular_files(store: Store, tmp_path: Path, kind: str) -> None:
    if kind == "directory":
        path = tmp_path / "dir"
        path.mkdir()
    elif kind == "fifo":
        path = tmp_path / "fifo"
        os.mkfifo(path)  # opening it would block forever: the store must stat first
    elif kind == "device":
        path = Path("/dev/null")
    else:
        path = tmp_path / "nope.gguf"
    with pytest.raises(BadRequest):
        store.add_blob_file(path)
    assert blob_dir_listing(store) == []


def test_digest_mismatch_leaves_nothing(store: Store, tmp_path: Path) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"abc")
    wrong = sha(b"abd")
    with pytest.raises(BadRequest, match="digest mismatch"):
        store.add_blob_file(src, wrong)
    with pytest.raises(BadRequest, match="digest mismatch"):
        store.add_blob_bytes(b"abc", wrong)
    assert blob_dir_listing(store) == []


def test_exception_mid_write_leaves_no_blob_and_no_temp(store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash simulated after part of the data reached the temp file."""
    src = tmp_path / "big"
    src.write_bytes(os.urandom(2 * blobs_mod.CHUNK + 5))

    calls = {"n": 0}

    class Boom(Exception):
        pass

    orig_sha256 = hashlib.sha256

    class Exploding:
        def __init__(self) -> None:
            self._h = orig_sha256()

        def update(self, data: bytes) -> None:
            calls["n"] += 1
            if calls["n"] == 2:
                raise Boom("disk on fire")
            self._h.update(data)

        def hexdigest(self) -> str:
            return self._h.hexdigest()

    monkeypatch.setattr(blobs_mod.hashlib, "sha256", Exploding)
    with pytest.raises(Boom):
        store.add_blob_file(src)
    assert blob_dir_listing(store) == []


def test_exception_in_replace_leaves_no_temp(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs_mod.os, "replace", fail)
    with pytest.raises(OSError):
        store.add_blob_bytes(b"data")
    assert blob_dir_listing(store) == []


BAD_DIGESTS = [
    "../../etc/passwd",
    "sha256:../../../../etc/passwd",
    "sha256-" + "a" * 63,
    "sha256-" + "a" * 65,
    "sha256:" + "A" * 64,
    "sha256:" + "g" * 64,
    "sha512:" + "a" * 64,
    "sha256:" + "a" * 62 + "/x",
    "sha256:" + "a" * 63 + "\x00",
    "",
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_bad_digests_rejected_before_touching_the_filesystem(
    store: Store, digest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    touched: list[str] = []
    real_stat, real_open = os.stat, os.open

    def spy_stat(*a: object, **k: object) -> object:
        touched.append("stat")
        return real_stat(*a, **k)  # type: ignore[arg-type]

    def spy_open(*a: object, **k: object) -> object:
        touched.append("open")
        return real_open(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(blobs_mod.os, "stat", spy_stat)
    monkeypatch.setattr(blobs_mod.os, "open", spy_open)
    for call in (
        lambda: store.blob_path(digest),
        lambda: store.has_blob(digest),
        lambda: store.read_blob(digest),
        lambda: store.add_blob_bytes(b"x", digest),
        lambda: store.partial(digest, 1),
    ):
        with pytest.raises(BadRequest, match="invalid digest"):
            call()
    assert touched == []
    assert blob_dir_listing(store) == []


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def test_add_stream(store: Store) -> None:
    data = b"part one|part two"
    digest, size = await store.add_blob_stream(_chunks(b"part one", b"|part two"), sha(data))
    assert (digest, size) == (sha(data), len(data))
    assert store.read_blob(digest) == data


async def test_add_stream_mismatch_and_too_large_leave_nothing(store: Store) -> None:
    with pytest.raises(BadRequest, match="digest mismatch"):
        await store.add_blob_stream(_chunks(b"abc"), sha(b"xyz"))
    with pytest.raises(PayloadTooLarge):
        await store.add_blob_stream(_chunks(b"a" * 10, b"b" * 10), sha(b"a" * 10 + b"b" * 10), max_size=15)
    assert blob_dir_listing(store) == []


async def test_add_stream_cancelled_midway_leaves_nothing(store: Store) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"first"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.add_blob_stream(broken(), sha(b"first"))
    assert blob_dir_listing(store) == []


# --- partial blobs -------------------------------------------------------------------------


def test_partial_parallel_ranges_and_resume(models_dir: Path) -> None:
    data = os.urandom(1000)
    digest = sha(data)
    store = Store(models_dir)
    part = store.partial(digest, len(data))
    part.write_at(0, data[:300])
    part.write_at(600, data[600:])  # out of order, as parallel ranged downloads do
    assert not store.has_blob(digest)
    assert store.blobs.digests() == []  # a partial is not a blob
    # "Process death": a new store object sees what is there.
    store2 = Store(models_dir)
    part2 = store2.partial(digest, len(data))
    assert part2.offset == 1000
    part2.write_at(300, data[300:600])
    assert part2.finish() == digest
    assert store2.read_blob(digest) == data
    assert blob_dir_listing(store2) == ["sha256-" + digest[7:]]


def test_partial_sequential_resume_offset(store: Store) -> None:
    data = b"0123456789"
    part = store.partial(sha(data), len(data))
    assert part.offset == 0
    part.write_at(0, data[:4])
    assert store.partial(sha(data), len(data)).offset == 4


def test_partial_mismatch_deletes_partial(store: Store) -> None:
    data = b"0123456789"
    part = store.partial(sha(data), len(data))
    part.write_at(0, b"X123456789")
    with pytest.raises(RegistryError, match="digest mismatch"):
        part.finish()
    assert blob_dir_listing(store) == []


def test_partial_write_out_of_range(store: Store) -> None:
    part = store.partial(sha(b"abc"), 3)
    with pytest.raises(RegistryError):
        part.write_at(2, b"xy")
    with pytest.raises(RegistryError):
        part.write_at(-1, b"x")


# --- go_json -------------------------------------------------------------------------------

GO_JSON_CASES = [
    ({"b": 1, "a": 2}, b'{"a":2,"b":1}'),
    ("<script>&</script>", b'"\\u003cscript\\u003e\\u0026\\u003c/script\\u003e"'),
    ("line\u2028sep\u2029para", b'"line\\u2028sep\\u2029para"'),
    ("caf\u00e9 \u65e5\u672c \U0001f600", "\"caf\u00e9 \u65e5\u672c \U0001f600\"".encode()),
    ("tab\tnl\nquote\"back\\", b'"tab\\tnl\\nquote\\"back\\\\"'),
    ("\x01", b'"\\u0001"'),
    ({"z": [{"y": "<", "x": None}], "a": {"d": True, "c": 1.5}}, b'{"a":{"c":1.5,"d":true},"z":[{"x":null,"y":"\\u003c"}]}'),
    ({"<key>": "v"}, b'{"\\u003ckey\\u003e":"v"}'),
    ([], b"[]"),
    ({}, b"{}"),
]


@pytest.mark.parametrize(("obj", "expected"), GO_JSON_CASES)
def test_go_json_byte_exact(obj: object, expected: bytes) -> None:
    assert go_json(obj) == expected
    assert json.loads(go_json(obj)) == obj


# --- manifests -----------------------------------------------------------------------------

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


def good_manifest() -> dict:
    return {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": D1, "size": 10},
        "layers": [{"mediaType": MEDIA_MODEL, "digest": D2, "size": 20}],
    }


def _mutate(path: list, value: object) -> dict:
    m = good_manifest()
    target: object = m
    for p in path[:-1]:
        target = target[p]  # type: ignore[index]
    target[path[-1]] = value  # type: ignore[index]
    return m


BAD_MANIFESTS = [
    ("not an object", []),
    ("schema", _mutate(["schemaVersion"], 1)),
    ("media type", _mutate(["mediaType"], "text/html")),
    ("config digest traversal", _mutate(["config", "digest"], "sha256:../../x")),
    ("config digest uppercase", _mutate(["config", "digest"], "sha256:" + "A" * 64)),
    ("config media", _mutate(["config", "mediaType"], "application/json")),
    ("config missing", _mutate(["config"], None)),
    ("layer digest short", _mutate(["layers", 0, "digest"], "sha256:abc")),
    ("layer digest dash form", _mutate(["layers", 0, "digest"], "sha256-" + "2" * 64)),
    ("layer media", _mutate(["layers", 0, "mediaType"], "application/x-evil")),
    ("layer size negative", _mutate(["layers", 0, "size"], -1)),
    ("layer size string", _mutate(["layers", 0, "size"], "20")),
    ("layers not list", _mutate(["layers"], {"a": 1})),
]


@pytest.mark.parametrize(("label", "manifest"), BAD_MANIFESTS, ids=[b[0] for b in BAD_MANIFESTS])
def test_validate_manifest_rejects(label: str, manifest: object) -> None:
    with pytest.raises(BadRequest, match="invalid manifest"):
        validate_manifest(manifest)


def test_validate_manifest_accepts_and_parse() -> None:
    validate_manifest(good_manifest())
    assert parse_manifest(go_json(good_manifest())) == good_manifest()
    with pytest.raises(BadRequest):
        parse_manifest(b"\xff\xfe")
    with pytest.raises(BadRequest):
        parse_manifest(b"{not json")


def test_build_manifest_and_config_shape() -> None:
    config = build_config(model_family="llama", model_type="8.0B", file_type="Q4_0", diff_ids=[D2])
    assert json.loads(config) == {
        "model_format": "gguf",
        "model_family": "llama",
        "model_families": ["llama"],
        "model_type": "8.0B",
        "file_type": "Q4_0",
        "rootfs": {"type": "layers", "diff_ids": [D2]},
    }
    data = build_manifest(Descriptor(CONFIG_MEDIA_TYPE, D1, 10), [Descriptor(MEDIA_MODEL, D2, 20)])
    assert json.loads(data) == good_manifest()
    assert data == go_json(good_manifest())


def test_add_file_of_own_blob_does_not_copy(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    digest, size = store.add_blob_bytes(b"model weights")

    def no_temp_files() -> None:
        raise AssertionError("copied a blob that is already in the store")

    monkeypatch.setattr(store.blobs, "_open_temp", no_temp_files)
    assert store.add_blob_file(store.blob_path(digest)) == (digest, size)


def test_go_json_properties() -> None:
    """Any JSON value: parses back to itself, and never carries a raw <, >, &, U+2028 or U+2029."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.text()
    values = st.recursive(scalars, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=10)

    @settings(max_examples=100, deadline=None)
    @given(values)
    def check(value: object) -> None:
        data = go_json(value)
        assert json.loads(data) == value
        text = data.decode("utf-8")
        assert not any(c in text for c in "<>&\u2028\u2029")
        assert go_json(json.loads(data)) == data

    check()


def test_disk_full_while_adding_a_file_is_not_blamed_on_the_file(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x" * 1000)

    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(blobs_mod.os, "fsync", full)
    with pytest.raises(OSError) as info:
        store.add_blob_file(src)
    assert not isinstance(info.value, BadRequest)
    assert blob_dir_listing(store) == []


def test_sigkill_mid_write_leaves_no_blob(models_dir: Path, tmp_path: Path) -> None:
    """A process killed while copying a blob in leaves only a temp file: never a blob, and GC clears it."""
    import signal
    import subprocess
    import sys
    import time

    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(4 * blobs_mod.CHUNK))
    child = (
        "import hashlib, sys, threading\n"
        "from ollamalike.store import Store, blobs\n"
        "real = hashlib.sha256\n"
        "class Stalling:\n"
        "    def __init__(self): self.h = real(); self.n = 0\n"
        "    def update(self, d):\n"
        "        self.n += 1\n"
        "        if self.n == 2: threading.Event().wait()  # parked mid-copy until killed\n"
        "        self.h.update(d)\n"
        "    def hexdigest(self): return self.h.hexdigest()\n"
        "blobs.hashlib.sha256 = Stalling\n"
        "Store(sys.argv[1]).add_blob_file(sys.argv[2])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", child, str(models_dir), str(src)])
    blob_root = models_dir / "blobs"
    deadline = time.monotonic() + 60
    try:
        while True:  # poll for the half-written temp file, then kill
            temps = [p for p in blob_root.glob(".tmp-*") if p.stat().st_size > 0] if blob_root.exists() else []
            if temps:
                break
            assert proc.poll() is None, "writer exited early"
            assert time.monotonic() < deadline, "writer never started"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    store = Store(models_dir)
    assert store.blobs.digests() == []
    assert not store.has_blob("sha256:" + hashlib.sha256(src.read_bytes()).hexdigest())
    old = time.time() - 2 * 3600
    for t in temps:
        os.utime(t, (old, old))
    store.gc()
    assert os.listdir(blob_root) == []
