"""Bad checkpoint directories are a 400 naming the problem, and the store is left as it was.

The files are uploaded as blobs first (as Ollama's client does), the store is snapshotted, and then
``POST /api/create`` with ``files`` must fail with a clear message and change nothing. A symlink out
of the directory can only come with a server-side path, so that case uses the Modelfile shape.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ollamalike.errors import BadRequest
from ollamalike.library.convert import convert
from ollamalike.library.convert.source import open_checkpoint
from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error, store_snapshot
from tests.hf_checkpoints import write_checkpoint, write_safetensors


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("convert-errors") / "home")
    yield d
    d.stop()


def upload_dir(d: Daemon, directory: Path) -> dict[str, str]:
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        req = urllib.request.Request(f"{d.base_url}/api/blobs/{digest}", data=data, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            assert resp.status in (200, 201)
        files[path.relative_to(directory).as_posix()] = digest
    return files


def _no_config(d: Path) -> None:
    (d / "config.json").unlink()


def _unknown_arch(d: Path) -> None:
    cfg = json.loads((d / "config.json").read_text())
    cfg["architectures"] = ["FrobnicatorForCausalLM"]
    (d / "config.json").write_text(json.dumps(cfg))


def _bad_shape(d: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    tensors = load_file(str(d / "model.safetensors"))
    tensors["model.layers.1.self_attn.q_proj.weight"] = np.zeros((63, 64), np.float32)
    write_safetensors(d / "model.safetensors", tensors)


def _truncated_header(d: Path) -> None:
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[:8] + raw[8:40])


def _truncated_data(d: Path) -> None:
    raw = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(raw[: len(raw) - 100])


def _garbage_header(d: Path) -> None:
    (d / "model.safetensors").write_bytes(struct.pack("<Q", 4) + b"nope")


def _no_tokenizer(d: Path) -> None:
    (d / "tokenizer.json").unlink()


def _bad_tokenizer(d: Path) -> None:
    (d / "tokenizer.json").write_text('{"model": {"type": "BPE", "vocab": 3}}')


def _missing_layer(d: Path) -> None:
    from safetensors.numpy import load_file

    tensors = load_file(str(d / "model.safetensors"))
    del tensors["model.layers.1.mlp.down_proj.weight"]
    write_safetensors(d / "model.safetensors", tensors)


def _extra_layer(d: Path) -> None:
    import numpy as np
    from safetensors.numpy import load_file

    tensors = load_file(str(d / "model.safetensors"))
    tensors["model.layers.7.mlp.down_proj.weight"] = np.zeros((64, 128), np.float32)
    write_safetensors(d / "model.safetensors", tensors)


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "no-config": (_no_config, "config.json not found"),
    "unknown-architecture": (_unknown_arch, "unsupported architecture 'FrobnicatorForCausalLM'"),
    "mismatched-shape": (_bad_shape, "model.layers.1.self_attn.q_proj.weight' has shape [63, 64]"),
    "truncated-header": (_truncated_header, "model.safetensors: truncated safetensors header"),
    "truncated-data": (_truncated_data, "runs past the end of the file"),
    "garbage-header": (_garbage_header, "malformed safetensors header"),
    "missing-tokenizer": (_no_tokenizer, "tokenizer.json not found"),
    "bad-tokenizer": (_bad_tokenizer, "tokenizer.json cannot be loaded"),
    "missing-tensor": (_missing_layer, "no tensor for 'blk.1.ffn_down.weight'"),
    "layer-past-the-config": (_extra_layer, "is in layer 7 but config.json has 2 layers"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_uploaded_checkpoint_is_a_400_and_changes_nothing(daemon: Daemon, tmp_path: Path, case: str) -> None:
    breaker, message = CASES[case]
    src = write_checkpoint("llama", tmp_path / "model")
    breaker(src)
    files = upload_dir(daemon, src)
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": f"bad-{case}", "files": files})
    assert_api_error(status, body, 400, message)
    assert store_snapshot(daemon.models_dir) == before


def test_missing_uploaded_blob_is_a_400(daemon: Daemon, tmp_path: Path) -> None:
    files = upload_dir(daemon, write_checkpoint("qwen3", tmp_path / "model"))
    files["model.safetensors"] = "sha256:" + "0" * 64
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": "bad-missing-blob", "files": files})
    assert_api_error(status, body, 400, "not found")
    assert store_snapshot(daemon.models_dir) == before


def test_symlink_out_of_the_directory_is_a_400(daemon: Daemon, tmp_path: Path) -> None:
    src = write_checkpoint("qwen3", tmp_path / "model")
    outside = tmp_path / "outside.json"
    (src / "tokenizer_config.json").rename(outside)
    os.symlink(outside, src / "tokenizer_config.json")
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": "bad-link", "modelfile": f"FROM {src}\n"})
    assert_api_error(status, body, 400, "tokenizer_config.json is a link that leads outside the model directory")
    assert store_snapshot(daemon.models_dir) == before


def test_symlink_inside_the_directory_is_fine(tmp_path: Path) -> None:
    src = write_checkpoint("qwen3", tmp_path / "model")
    (src / "weights").mkdir()
    (src / "model.safetensors").rename(src / "weights" / "real.safetensors")
    os.symlink(src / "weights" / "real.safetensors", src / "model.safetensors")
    assert open_checkpoint(src).tensors


def test_server_side_directory_converts(daemon: Daemon, tmp_path: Path) -> None:
    src = write_checkpoint("qwen2", tmp_path / "model")
    status, body = daemon.request("POST", "/api/create", {"model": "from-dir", "modelfile": f"FROM {src}\n", "stream": False})
    assert status == 200 and body == {"status": "success"}, body
    status, body = daemon.request("POST", "/api/show", {"model": "from-dir"})
    assert status == 200 and body["details"]["family"] == "qwen2", body


def test_output_types_and_a_bad_one(tmp_path: Path) -> None:
    import gguf

    src = write_checkpoint("qwen3", tmp_path / "model", dtype="BF16")
    for out_type in ("F32", "F16", "BF16"):
        out = tmp_path / f"{out_type}.gguf"
        convert(src, out, out_type=out_type)
        types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
        assert types["blk.0.attn_q.weight"] == out_type and types["blk.0.attn_q_norm.weight"] == "F32"
    with pytest.raises(BadRequest, match="unsupported output type"):
        convert(src, tmp_path / "x.gguf", out_type="Q4_0")
    assert not (tmp_path / "x.gguf").exists()


def test_cli_refuses_a_directory_without_safetensors(daemon: Daemon, tmp_path: Path) -> None:
    src = tmp_path / "empty-model"
    src.mkdir()
    (src / "config.json").write_text("{}")
    (tmp_path / "Modelfile").write_text(f"FROM {src}\n")
    before = store_snapshot(daemon.models_dir)
    r = daemon.cli("create", "nothing", "-f", str(tmp_path / "Modelfile"))
    assert r.returncode != 0 and "without *.safetensors" in r.stderr + r.stdout, r
    assert store_snapshot(daemon.models_dir) == before
