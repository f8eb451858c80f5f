"""Split GGUFs: ``FROM`` the first shard stores the shards as model layers that load and answer as the whole file."""

from __future__ import annotations

import hashlib
import math
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import gguf
import pytest

from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error, store_snapshot


def split_gguf(source: Path, out_dir: Path, shards: int) -> list[Path]:
    """Write ``source`` as ``shards`` files the way llama.cpp's gguf-split names and tags them."""
    reader = gguf.GGUFReader(source)
    arch = str(reader.fields["general.architecture"].contents())
    per = math.ceil(len(reader.tensors) / shards)
    out_dir.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(out_dir / f"{source.stem}.gguf", arch, split_max_tensors=per)
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        w.add_key_value(field.name, field.contents(), vtype,
                        sub_type=field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None)
    for t in reader.tensors:
        w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for t in reader.tensors:
        w.write_tensor_data(t.data)
    w.close()
    paths = sorted(out_dir.glob(f"{source.stem}-*-of-*.gguf"))
    assert len(paths) == shards, paths
    return paths


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("convert-split") / "home")
    yield d
    d.stop()


def _create(d: Daemon, name: str, source: Path, tmp: Path) -> str:
    (tmp / f"Modelfile-{name}").write_text(f"FROM {source}\n")
    r = d.cli("create", name, "-f", str(tmp / f"Modelfile-{name}"), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + d.logs()[-3000:]
    return r.stdout


def _answer(d: Daemon, name: str) -> str:
    status, body = d.request("POST", "/api/generate", {
        "model": name, "prompt": "Once upon a time", "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 12, "seed": 3},
    })
    assert status == 200 and body["done"], body
    return str(body["response"])


def model_layers(d: Daemon, name: str) -> list[Path]:
    from ollamalike.store import Store

    store = Store(d.models_dir)
    try:
        _, manifest, _ = store.get_manifest(name)
        return [store.blob_path(x["digest"]) for x in manifest["layers"]
                if x["mediaType"] == "application/vnd.ollama.image.model"]
    finally:
        store.close()


def test_split_model_creates_loads_and_answers_as_the_whole_file(daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    """Issue 17: the shards are stored as they are, one model layer each in shard order, and loaded
    with llama.cpp's split loading (they used to be merged into one layer at create)."""
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split", 3)
    assert int(gguf.GGUFReader(shards[1]).fields["split.no"].contents()) == 1
    _create(daemon, "whole", tiny_chat_gguf, tmp_path)
    out = _create(daemon, "split", shards[0], tmp_path)
    assert "merging split GGUF" not in out, out
    layers = model_layers(daemon, "split")
    assert [p.read_bytes() for p in layers] == [p.read_bytes() for p in shards]
    status, show = daemon.request("POST", "/api/show", {"model": "split"})
    status_whole, show_whole = daemon.request("POST", "/api/show", {"model": "whole"})
    assert status == 200 and status_whole == 200, (show, show_whole)
    assert show["details"] == show_whole["details"], (show["details"], show_whole["details"])
    assert show["model_info"]["general.parameter_count"] == show_whole["model_info"]["general.parameter_count"]
    assert _answer(daemon, "split") == _answer(daemon, "whole")
    status, ps = daemon.request("GET", "/api/ps", None)
    assert status == 200 and {m["name"] for m in ps["models"]} >= {"split:latest"}, ps


def test_split_model_quantized_at_create_is_merged(daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    """llama.cpp's quantizer reads one file: quantizing shards merges them first, into one layer."""
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split", 3)
    (tmp_path / "Modelfile-q").write_text(f"FROM {shards[0]}\n")
    r = daemon.cli("create", "split-q8", "-f", str(tmp_path / "Modelfile-q"), "--quantize", "q8_0", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "merging split GGUF" in r.stdout and "quantizing" in r.stdout, r.stdout
    (layer,) = model_layers(daemon, "split-q8")
    merged = gguf.GGUFReader(layer)
    assert not any(k.startswith("split.") for k in merged.fields)
    assert len(merged.tensors) == len(gguf.GGUFReader(tiny_chat_gguf).tensors)
    assert _answer(daemon, "split-q8")


def _upload(d: Daemon, path: Path) -> str:
    data = path.read_bytes()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    req = urllib.request.Request(f"{d.base_url}/api/blobs/{digest}", data=data, method="POST")
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status in (200, 201)
    return digest


def test_uploaded_split_with_a_missing_shard_is_a_400(daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split", 3)
    files = {p.name: _upload(daemon, p) for p in shards[:2]}
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": "half", "files": files})
    assert_api_error(status, body, 400, f"{shards[2].name} is missing")
    assert store_snapshot(daemon.models_dir) == before


def test_uploaded_shards_in_the_wrong_order_are_a_400(daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split", 3)
    files = {p.name: _upload(daemon, p) for p in shards}
    files[shards[1].name], files[shards[2].name] = files[shards[2].name], files[shards[1].name]
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": "shuffled", "files": files})
    assert_api_error(status, body, 400, "shard number 2 expected")
    assert store_snapshot(daemon.models_dir) == before


def test_server_side_first_shard_without_its_siblings_is_a_400(daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split", 3)
    shards[2].unlink()
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": "lonely", "modelfile": f"FROM {shards[0]}\n"})
    assert_api_error(status, body, 400, f"shard {shards[2].name} not found")
    assert store_snapshot(daemon.models_dir) == before


def test_quantizing_a_split_base_model_is_a_400(daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split", 3)
    _create(daemon, "split-base", shards[0], tmp_path)
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": "split-base-q", "from": "split-base",
                                                          "quantize": "q8_0"})
    assert_api_error(status, body, 400, "is a split GGUF: quantize it when creating it from its shards")
    assert store_snapshot(daemon.models_dir) == before


def _manifest_digest(d: Daemon, name: str) -> str:
    from ollamalike.store import Store

    store = Store(d.models_dir)
    try:
        return str(store.get_manifest(name)[0])
    finally:
        store.close()


def test_show_modelfile_of_a_split_model_rebuilds_the_same_model(daemon: Daemon, tmp_path: Path,
                                                                  tiny_chat_gguf: Path) -> None:
    """``show --modelfile`` names every shard's blob (a FROM line each, in shard order); creating from
    it, through the CLI (which uploads the blobs, nameless) or the legacy ``modelfile`` field (server
    paths, a loopback client), gives the same manifest digest."""
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split-rt", 3)
    _create(daemon, "split-rt", shards[0], tmp_path)
    r = daemon.cli("show", "split-rt", "--modelfile")
    assert r.returncode == 0, r.stderr
    froms = [line for line in r.stdout.splitlines() if line.startswith("FROM ")]
    assert [Path(line[5:]).read_bytes() for line in froms] == [p.read_bytes() for p in shards]
    (tmp_path / "Modelfile-rt").write_text(r.stdout)
    again = daemon.cli("create", "split-again", "-f", str(tmp_path / "Modelfile-rt"), timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    status, body = daemon.request("POST", "/api/create", {"model": "split-legacy", "modelfile": r.stdout,
                                                          "stream": False})
    assert status == 200, body
    assert _manifest_digest(daemon, "split-again") == _manifest_digest(daemon, "split-rt")
    assert _manifest_digest(daemon, "split-legacy") == _manifest_digest(daemon, "split-rt")
    assert _answer(daemon, "split-again") == _answer(daemon, "split-rt")


def test_from_lines_naming_some_of_the_shards_are_a_400(daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split-some", 3)
    before = store_snapshot(daemon.models_dir)
    text = f"FROM {shards[0].resolve()}\nFROM {shards[2].resolve()}\n"
    status, body = daemon.request("POST", "/api/create", {"model": "some", "modelfile": text, "stream": False})
    assert_api_error(status, body, 400, "not each of its 3 shards once")
    # Through the CLI, which uploads the files: two shards without the first are refused the same way,
    # and the blobs it uploaded for the failed create are gone again.
    (tmp_path / "Modelfile-some").write_text(f"FROM {shards[2]}\nFROM {shards[1]}\n")
    r = daemon.cli("create", "some", "-f", str(tmp_path / "Modelfile-some"), timeout=300)
    assert r.returncode != 0 and "not each of its 3 shards once" in (r.stdout + r.stderr), r.stdout + r.stderr
    assert store_snapshot(daemon.models_dir) == before
