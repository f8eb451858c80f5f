"""Split GGUFs: ``FROM`` the first shard merges the shards into one model layer that answers as the whole file."""

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
from tests.test_convert_decoders import model_blob


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


def test_split_model_creates_loads_and_answers_as_the_whole_file(daemon: Daemon, tmp_path: Path, tiny_chat_gguf: Path) -> None:
    shards = split_gguf(tiny_chat_gguf, tmp_path / "split", 3)
    assert int(gguf.GGUFReader(shards[1]).fields["split.no"].contents()) == 1
    _create(daemon, "whole", tiny_chat_gguf, tmp_path)
    out = _create(daemon, "split", shards[0], tmp_path)
    assert "merging split GGUF" in out, out
    merged = gguf.GGUFReader(model_blob(daemon, "split"))
    assert not any(k.startswith("split.") for k in merged.fields)
    original = gguf.GGUFReader(tiny_chat_gguf)
    assert [(t.name, t.tensor_type, t.data.tobytes()) for t in merged.tensors] == [
        (t.name, t.tensor_type, t.data.tobytes()) for t in original.tensors
    ]
    assert _answer(daemon, "split") == _answer(daemon, "whole")


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
