"""The catalog: migrations, tags, references in one transaction, garbage collection, pins, pull state."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from ollamalike.errors import BadRequest, ModelNotFound
from ollamalike.store import Pins, Store
from ollamalike.store.manifest import (
    CONFIG_MEDIA_TYPE,
    MEDIA_MODEL,
    MEDIA_SYSTEM,
    Descriptor,
    build_config,
    build_manifest,
)
from tests.helpers import store_snapshot


@pytest.fixture
def store(models_dir: Path) -> Store:
    return Store(models_dir)


def make_model(store: Store, model: bytes, system: bytes | None = None, pins: Pins | None = None) -> bytes:
    """Writes the blobs of a tiny model and returns its manifest bytes (not yet tagged)."""
    layers = []
    d, n = store.add_blob_bytes(model, pins=pins)
    layers.append(Descriptor(MEDIA_MODEL, d, n))
    if system is not None:
        d, n = store.add_blob_bytes(system, pins=pins)
        layers.append(Descriptor(MEDIA_SYSTEM, d, n))
    config = build_config(model_family="llama", model_type="1M", file_type="F32", diff_ids=[x.digest for x in layers])
    cd, cn = store.add_blob_bytes(config, pins=pins)
    return build_manifest(Descriptor(CONFIG_MEDIA_TYPE, cd, cn), layers)


def test_migrations_are_idempotent(models_dir: Path) -> None:
    Store(models_dir).close()
    s2 = Store(models_dir)
    s3 = Store(models_dir)  # open concurrently too
    con = sqlite3.connect(models_dir / "catalog.db")
    applied = con.execute("select name from _sqlite_migrations").fetchall()
    assert applied == [("m001_initial",), ("m002_parent_model_per_tag",)]
    assert con.execute("pragma journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    assert {"tags", "manifests", "refs", "gguf_info", "pulls"} <= tables
    con.close()
    s2.close()
    s3.close()


def test_put_get_list(store: Store) -> None:
    data = make_model(store, b"weights", b"be nice")
    digest = store.put_manifest("alpha", data)
    got_digest, obj, raw = store.get_manifest("alpha:latest")
    assert got_digest == digest and raw == data and obj == json.loads(data)
    # The manifest is a blob whose digest is the sha256 of its bytes, stored byte-for-byte.
    assert store.read_blob(digest) == data
    (row,) = store.list_tags()
    assert row.name == "registry.ollama.ai/library/alpha:latest"
    assert row.details["family"] == "llama" and row.details["quantization_level"] == "F32"
    assert row.size == sum(d["size"] for d in [obj["config"], *obj["layers"]])
    # Case-insensitive names, as in Ollama.
    assert store.get_manifest("ALPHA")[0] == digest


def test_put_manifest_bytes_kept_verbatim(store: Store) -> None:
    """A pulled manifest with another key order and whitespace keeps its exact bytes (pushes stay identical)."""
    canonical = json.loads(make_model(store, b"w"))
    odd = json.dumps(canonical, indent=3).encode()
    digest = store.put_manifest("odd", odd)
    assert store.get_manifest("odd")[2] == odd
    import hashlib

    assert digest == "sha256:" + hashlib.sha256(odd).hexdigest()


@pytest.mark.parametrize(
    "manifest",
    [
        b"not json",
        json.dumps({"schemaVersion": 2, "config": {}, "layers": []}).encode(),
    ],
)
def test_put_manifest_invalid_changes_nothing(store: Store, models_dir: Path, manifest: bytes) -> None:
    before = store_snapshot(models_dir)
    with pytest.raises(BadRequest):
        store.put_manifest("bad", manifest)
    assert store_snapshot(models_dir) == before


def test_put_manifest_missing_blob(store: Store, models_dir: Path) -> None:
    data = make_model(store, b"w")
    store.blobs.remove(json.loads(data)["layers"][0]["digest"])
    before = store_snapshot(models_dir)
    with pytest.raises(BadRequest, match="missing blob"):
        store.put_manifest("x", data)
    assert store_snapshot(models_dir) == before


def test_failure_between_tag_move_and_refs_changes_nothing(store: Store, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = store.put_manifest("m", make_model(store, b"v1"))
    second_bytes = make_model(store, b"v2")
    before = store_snapshot(models_dir)

    def explode(*_: object) -> None:
        raise RuntimeError("power cut")

    # The refs were inserted; the tag move then fails: the transaction must roll everything back.
    monkeypatch.setattr(store, "_move_tag", explode)
    with pytest.raises(RuntimeError):
        store.put_manifest("m", second_bytes)
    assert store_snapshot(models_dir) == before
    assert store.get_manifest("m")[0] == first

    # And a failure after the tag moved, while releasing the old manifest.
    monkeypatch.undo()
    monkeypatch.setattr(store, "_release", explode)
    with pytest.raises(RuntimeError):
        store.put_manifest("m", second_bytes)
    assert store_snapshot(models_dir) == before
    assert store.get_manifest("m")[0] == first


def test_tag_move_collects_old_blobs_but_keeps_shared(store: Store) -> None:
    shared = make_model(store, b"shared weights", b"sys A")
    store.put_manifest("a", shared)
    store.put_manifest("b", make_model(store, b"shared weights", b"sys B"))
    weights = json.loads(shared)["layers"][0]["digest"]
    sys_a = json.loads(shared)["layers"][1]["digest"]
    # Move "a" to a new model: sys A and a's manifest/config go; the shared weights stay (b uses them).
    store.put_manifest("a", make_model(store, b"other weights"))
    assert store.has_blob(weights)
    assert not store.has_blob(sys_a)
    # Delete "b": now the shared weights go too.
    removed = store.delete_tag("b")
    assert weights in removed and not store.has_blob(weights)
    # Exactly the blobs of "a" remain.
    _, obj, _ = store.get_manifest("a")
    expected = {store.get_manifest("a")[0], obj["config"]["digest"], *(x["digest"] for x in obj["layers"])}
    assert set(store.blobs.digests()) == expected


def test_copy_then_delete_keeps_blobs_until_last_tag(store: Store) -> None:
    digest = store.put_manifest("src", make_model(store, b"w"))
    assert store.copy_tag("src", "ns/dst:v1") == digest
    assert {(r.name, r.digest) for r in store.list_tags()} == {
        ("registry.ollama.ai/ns/dst:v1", digest),
        ("registry.ollama.ai/library/src:latest", digest),
    }
    assert store.delete_tag("src") == []
    assert store.has_blob(digest)
    assert store.delete_tag("ns/dst:v1")
    assert store.blobs.digests() == []
    assert store.list_tags() == []


def test_not_found_errors(store: Store, models_dir: Path) -> None:
    before = store_snapshot(models_dir)
    with pytest.raises(ModelNotFound, match="model 'ghost' not found"):
        store.get_manifest("ghost")
    with pytest.raises(ModelNotFound, match="model 'ghost' not found"):
        store.delete_tag("ghost")
    with pytest.raises(ModelNotFound, match="model 'ghost' not found"):
        store.copy_tag("ghost", "x")
    with pytest.raises(BadRequest):
        store.get_manifest("../../etc")
    assert store_snapshot(models_dir) == before


def test_gc_respects_pins_and_refs(store: Store) -> None:
    store.put_manifest("keep", make_model(store, b"kept"))
    orphan, _ = store.add_blob_bytes(b"orphan")
    pinned, _ = store.add_blob_bytes(b"pinned")
    with store.pin([pinned]) as pins:
        assert pinned in pins.digests
        removed = store.gc()
        assert removed == [orphan]
        assert store.has_blob(pinned)
    assert store.gc() == [pinned]
    assert len(store.blobs.digests()) == 3  # manifest, config, weights of "keep"


def test_gc_races_a_create(store: Store) -> None:
    """Deletes running GC in threads while creates write then reference blobs: nothing referenced is lost."""
    errors: list[BaseException] = []

    def creator(i: int) -> None:
        try:
            for j in range(15):
                with store.pin() as pins:
                    data = make_model(store, f"w{i}-{j}".encode(), b"common system", pins)
                    store.put_manifest(f"m{i}:{j}", data)
                if j % 2:
                    store.delete_tag(f"m{i}:{j}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def collector() -> None:
        for _ in range(30):
            store.gc()

    threads = [threading.Thread(target=creator, args=(i,)) for i in range(3)] + [threading.Thread(target=collector)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for row in store.list_tags():
        _, obj, _ = store.get_manifest(row.name)
        for d in [obj["config"], *obj["layers"]]:
            assert store.has_blob(d["digest"])
    assert len(store.list_tags()) == 3 * 8


def test_pull_state(store: Store) -> None:
    assert store.get_pull("k") is None
    store.record_pull("k", {"layers": {"sha256:" + "1" * 64: 10}})
    assert store.get_pull("k") == {"layers": {"sha256:" + "1" * 64: 10}}
    store.record_pull("k", {"done": True})
    assert store.pulls() == {"k": {"done": True}}
    store.clear_pull("k")
    assert store.get_pull("k") is None


def test_info_cache_follows_blob_lifetime(store: Store) -> None:
    data = make_model(store, b"w")
    weights = json.loads(data)["layers"][0]["digest"]
    store.cache_info(weights, {"architecture": "llama"})
    assert store.cached_info(weights) is None  # unreferenced blobs are not cached
    store.put_manifest("m", data)
    store.cache_info(weights, {"architecture": "llama"})
    assert store.cached_info(weights) == {"architecture": "llama"}
    store.delete_tag("m")
    assert store.cached_info(weights) is None


def test_temp_and_partial_files_are_not_blobs(store: Store) -> None:
    root = store.blobs.root
    fresh_tmp = root / ".tmp-writing-now"
    stale_tmp = root / ".tmp-dead-writer"
    for p in (fresh_tmp, stale_tmp):
        p.write_bytes(b"half")
    old = time.time() - 2 * 3600
    os.utime(stale_tmp, (old, old))
    part = store.partial("sha256:" + "3" * 64, 100)
    part.write_at(0, b"x" * 10)
    assert store.blobs.digests() == []
    assert store.gc() == []
    # A live writer's temp file and a resumable partial stay; a dead writer's temp file goes.
    assert fresh_tmp.exists() and part.path.exists() and not stale_tmp.exists()


def test_migration_upgrades_an_old_catalog_keeping_its_data(models_dir: Path) -> None:
    """A catalog written before m002 (parent_model per manifest) is upgraded in place on open."""
    from sqlite_utils import Database

    from ollamalike.store.catalog import migrations

    models_dir.mkdir(parents=True)
    db = Database(models_dir / "catalog.db")
    migrations.apply(db, stop_before="m002_parent_model_per_tag")
    db.execute("INSERT INTO manifests VALUES ('sha256:m', 10, 'sha256:c', '{\"family\": \"llama\"}', 'base:latest')")
    db.execute("INSERT INTO tags VALUES ('k', 'registry.ollama.ai/library/x:latest', 'sha256:m', '2024-01-01T00:00:00+00:00')")
    db.conn.commit()
    db.close()
    store = Store(models_dir)
    (row,) = store.list_tags()
    assert row.parent_model == "base:latest"
    assert row.details == {"family": "llama", "parent_model": "base:latest"}
    Store(models_dir).close()  # and opening again changes nothing


def test_parent_model_belongs_to_the_tag(store: Store) -> None:
    data = make_model(store, b"same")
    store.put_manifest("plain", data)
    store.put_manifest("derived", data, parent_model="plain:latest")
    store.copy_tag("derived", "copied")
    parents = {r.name.split("/")[-1]: r.details["parent_model"] for r in store.list_tags()}
    assert parents == {"plain:latest": "", "derived:latest": "plain:latest", "copied:latest": "plain:latest"}



def test_gc_never_deletes_blobs_of_an_ollama_manifest_tree_in_the_same_dir(store: Store, models_dir: Path) -> None:
    """OLLAMA_MODELS may point at a real Ollama directory: its manifests keep their blobs alive."""
    data = make_model(store, b"shared with ollama")
    obj = json.loads(data)
    ollama_manifest = models_dir / "manifests" / "registry.ollama.ai" / "library" / "m" / "latest"
    ollama_manifest.parent.mkdir(parents=True)
    ollama_manifest.write_bytes(data)
    (models_dir / "manifests" / "junk").write_bytes(b"not a manifest")
    store.put_manifest("ours", data)
    store.delete_tag("ours")
    assert store.gc() == []
    for d in [obj["config"], *obj["layers"]]:
        assert store.has_blob(d["digest"])
    ollama_manifest.unlink()
    assert len(store.gc()) == 1 + len(obj["layers"]) + 1  # config, layers, and our manifest blob


def test_put_manifest_refuses_a_huge_config_without_reading_it(store: Store, models_dir: Path) -> None:
    big, size = store.add_blob_bytes(b" " * ((1 << 20) + 1))
    weights, wsize = store.add_blob_bytes(b"w")
    data = build_manifest(Descriptor(CONFIG_MEDIA_TYPE, big, size), [Descriptor(MEDIA_MODEL, weights, wsize)])
    before = store_snapshot(models_dir)
    with pytest.raises(BadRequest, match="config"):
        store.put_manifest("huge", data)
    assert store_snapshot(models_dir) == before
