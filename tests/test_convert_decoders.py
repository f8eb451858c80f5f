"""Generated tiny checkpoints of every supported decoder architecture, created through the daemon.

Each one is written as a Hugging Face directory (tests/hf_checkpoints.py), created with
``ollamalike create -f`` (the CLI uploads the files, the daemon converts), and then checked: the
GGUF's tensor names, shapes and types; llama.cpp's tokenization of the converted vocabulary equals
the ``tokenizers`` library's on the original tokenizer.json, and detokenizing gives the text back;
the chat template and end-of-generation ids are carried; greedy generation through the daemon runs
and repeats itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.daemon import Daemon, start_daemon
from tests.hf_checkpoints import CHAT_TEMPLATE, KINDS, expected_tensors, write_checkpoint

TEXT = "Hello world! The quick brown fox, 1234."
# A few source layouts: BF16 weights, a sharded checkpoint with an index, F16 weights.
LAYOUT = {"llama": ("BF16", 1), "qwen2": ("F32", 2), "gemma3": ("F16", 1)}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("convert-decoders") / "home")
    yield d
    d.stop()


def create_from_dir(d: Daemon, name: str, directory: Path, *extra: str) -> str:
    modelfile = directory.parent / f"Modelfile-{name}"
    modelfile.write_text(f"FROM {directory}\n")
    r = d.cli("create", name, "-f", str(modelfile), *extra, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + d.logs()[-3000:]
    assert "converting model" in r.stdout
    return r.stdout


def model_blob(d: Daemon, name: str) -> Path:
    from ollamalike.store import Store

    store = Store(d.models_dir)
    try:
        _, manifest, _ = store.get_manifest(name)
        layer = next(x for x in manifest["layers"] if x["mediaType"] == "application/vnd.ollama.image.model")
        return store.blob_path(layer["digest"])
    finally:
        store.close()


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tiny_checkpoint_converts_loads_and_generates(daemon: Daemon, tmp_path: Path, kind: str) -> None:
    from llama_cpp import Llama
    from tokenizers import Tokenizer

    dtype, shards = LAYOUT.get(kind, ("F32", 1))
    src = write_checkpoint(kind, tmp_path / kind, dtype=dtype, shards=shards)
    create_from_dir(daemon, f"tiny-{kind}", src)
    path = model_blob(daemon, f"tiny-{kind}")

    hf = Tokenizer.from_file(str(src / "tokenizer.json"))
    n_vocab = hf.get_vocab_size(with_added_tokens=True)
    reader = gguf.GGUFReader(path)
    got = {t.name: (tuple(reversed([int(x) for x in t.shape])), t.tensor_type.name) for t in reader.tensors}
    want = expected_tensors(kind, n_vocab)
    assert set(got) == set(want), set(got) ^ set(want)
    for name, shape in want.items():
        assert got[name][0] == shape, (name, got[name], shape)
        assert got[name][1] == ("F16" if len(shape) == 2 else "F32"), (name, got[name])
    fields = reader.fields
    assert fields["general.architecture"].contents() == KINDS[kind].gguf_arch
    assert fields["tokenizer.chat_template"].contents() == CHAT_TEMPLATE
    eos, im_end = hf.token_to_id("</s>"), hf.token_to_id("<|im_end|>")
    assert fields["tokenizer.ggml.eos_token_id"].contents() == eos
    assert fields["tokenizer.ggml.eos_token_ids"].contents() == [eos, im_end]
    expected_model = "gpt2" if KINDS[kind].tokenizer != "spm" else "llama"
    assert fields["tokenizer.ggml.model"].contents() == expected_model
    if expected_model == "gpt2":
        assert fields["tokenizer.ggml.pre"].contents() == {"llama3": "llama-bpe", "qwen2": "qwen2"}[KINDS[kind].tokenizer]

    vocab = Llama(str(path), vocab_only=True, verbose=False)
    ids = vocab.tokenize(TEXT.encode(), add_bos=False, special=False)
    assert ids == hf.encode(TEXT, add_special_tokens=False).ids
    back = vocab.detokenize(ids).decode()
    # SentencePiece vocabularies detokenize with the word-start space llama.cpp adds in front.
    assert back == TEXT if expected_model == "gpt2" else back.removeprefix(" ") == TEXT
    assert vocab.tokenize(back.encode(), add_bos=False, special=False) == ids or expected_model == "llama"
    specials = vocab.tokenize(b"<|im_start|>user", add_bos=False, special=True)
    assert specials[0] == hf.token_to_id("<|im_start|>")
    del vocab

    body = {"model": f"tiny-{kind}", "prompt": "Hello", "raw": True, "stream": False,
            "options": {"temperature": 0, "num_predict": 6, "seed": 1}}
    status, first = daemon.request("POST", "/api/generate", body)
    assert status == 200, first
    assert first["done"] is True and first["eval_count"] >= 1, first
    status, second = daemon.request("POST", "/api/generate", body)
    assert status == 200 and second["response"] == first["response"], (first, second)


def test_same_checkpoint_gives_the_same_digest(daemon: Daemon, tmp_path: Path) -> None:
    a = write_checkpoint("qwen3", tmp_path / "a" / "model", seed=7)
    b = write_checkpoint("qwen3", tmp_path / "b" / "other-name", seed=7)
    create_from_dir(daemon, "same-a", a)
    create_from_dir(daemon, "same-b", b)
    assert model_blob(daemon, "same-a") == model_blob(daemon, "same-b")
    c = write_checkpoint("qwen3", tmp_path / "c" / "model", seed=8)
    create_from_dir(daemon, "same-c", c)
    assert model_blob(daemon, "same-c") != model_blob(daemon, "same-a")


def test_quantize_goes_through_the_quantizer(daemon: Daemon, tmp_path: Path) -> None:
    src = write_checkpoint("llama", tmp_path / "llama")
    out = create_from_dir(daemon, "tiny-llama-q8", src, "--quantize", "q8_0")
    assert "quantizing F16 model to Q8_0" in out, out
    status, body = daemon.request("POST", "/api/show", {"model": "tiny-llama-q8"})
    assert status == 200 and body["details"]["quantization_level"] == "Q8_0", body
    types = {t.name: t.tensor_type.name for t in gguf.GGUFReader(model_blob(daemon, "tiny-llama-q8")).tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["output_norm.weight"] == "F32", types


def test_llama_rows_are_permuted_for_llama_cpp_rope(tmp_path: Path) -> None:
    """q/k rows go from transformers' rotate-half order to llama.cpp's interleaved pairs; v is untouched."""
    from safetensors import safe_open

    from ollamalike.library.convert import convert
    from tests.hf_checkpoints import HEAD_DIM, HEADS

    src = write_checkpoint("llama", tmp_path / "llama")
    out = tmp_path / "out.gguf"
    convert(src, out, out_type="F32")
    tensors = {t.name: np.asarray(t.data) for t in gguf.GGUFReader(out).tensors}
    with safe_open(str(src / "model.safetensors"), framework="np") as f:
        q = f.get_tensor("model.layers.0.self_attn.q_proj.weight")
        v = f.get_tensor("model.layers.0.self_attn.v_proj.weight")
    half = HEAD_DIM // 2
    got = tensors["blk.0.attn_q.weight"].reshape(HEADS, HEAD_DIM, -1)
    src_q = q.reshape(HEADS, HEAD_DIM, -1)
    np.testing.assert_array_equal(got[:, 0::2], src_q[:, :half])
    np.testing.assert_array_equal(got[:, 1::2], src_q[:, half:])
    np.testing.assert_array_equal(tensors["blk.0.attn_v.weight"].reshape(v.shape), v)
