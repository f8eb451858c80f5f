"""PEFT LoRA adapters on BERT and nomic-bert embedding models.

A tiny random adapter on a tiny generated encoder checkpoint (sentence-transformers layout, mean
pooling) is converted; llama.cpp applies it to the embedding context. The adapted embeddings must
differ from the base's, be the same twice, and equal the embeddings of the checkpoint with PEFT's
``W + alpha/r * B @ A`` merged in: as llama.cpp computes them from the merged GGUF, and (BERT) as a
plain numpy forward pass of the merged weights computes them. Through the daemon: ``ADAPTER`` on a
converted BERT gives /api/embed the adapted vectors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from tests.daemon import Daemon, start_daemon
from tests.hf_checkpoints import write_encoder
from tests.test_convert_lora import merged_checkpoint, write_lora
from tests.test_convert_minilm import reference_embeddings

TEXTS = ["the quick brown fox eats food", "a man rides a horse", "hello world, how are you today?"]
# PEFT's usual BERT targets: "dense" also matches the pooler, which the converted model does not have.
TARGETS = {"bert": ["query", "key", "value", "dense"], "nomic-bert": ["Wqkv", "out_proj", "fc11", "fc12", "fc2"]}


def _embed(model: Path, texts: list[str], lora: Path | None = None) -> np.ndarray:
    from llama_cpp import Llama

    llm = Llama(str(model), embedding=True, n_ctx=128, n_threads=1, verbose=False,
                lora_path=str(lora) if lora else None)
    try:
        return np.array(llm.embed(texts, normalize=True), dtype=np.float64)
    finally:
        llm.close()


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out: np.ndarray = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return out


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_encoder_adapter_equals_the_merged_weights(tmp_path: Path, kind: str) -> None:
    from ollamalike.library.convert import convert
    from ollamalike.library.convert.lora import LoraBase, prepare_lora

    base = write_encoder(kind, tmp_path / "base")
    lora = write_lora(base, tmp_path / "lora", TARGETS[kind], config={"task_type": "FEATURE_EXTRACTION"})
    base_gguf, lora_gguf, merged_gguf = tmp_path / "base.gguf", tmp_path / "lora.gguf", tmp_path / "merged.gguf"
    convert(base, base_gguf, out_type="F32")
    prepare_lora(lora, LoraBase.from_gguf(base_gguf)).write(lora_gguf)
    merged = merged_checkpoint(base, lora, tmp_path / "merged")
    convert(merged, merged_gguf, out_type="F32")

    reader = gguf.GGUFReader(lora_gguf)
    assert reader.fields["general.architecture"].contents() == kind
    names = {t.name for t in reader.tensors}
    expect = ({"blk.0.attn_q.weight.lora_a", "blk.1.attn_v.weight.lora_b", "blk.0.attn_output.weight.lora_a",
               "blk.1.ffn_up.weight.lora_a", "blk.1.ffn_down.weight.lora_b"} if kind == "bert" else
              {"blk.0.attn_qkv.weight.lora_a", "blk.1.ffn_gate.weight.lora_b", "blk.1.ffn_down.weight.lora_a"})
    assert expect <= names, names
    assert not any("pooler" in n for n in names)

    plain, adapted, from_merged = _embed(base_gguf, TEXTS), _embed(base_gguf, TEXTS, lora_gguf), _embed(merged_gguf, TEXTS)
    assert (_cos(plain, adapted) < 0.99).all(), _cos(plain, adapted)  # the adapter changes every vector
    np.testing.assert_array_equal(adapted, _embed(base_gguf, TEXTS, lora_gguf))
    # A and B are F16 in the adapter: far closer to the merge than the adapter moves the vectors.
    assert (_cos(adapted, from_merged) > 0.999).all(), _cos(adapted, from_merged)
    assert ((1 - _cos(adapted, from_merged)) < (1 - _cos(plain, adapted)) / 20).all()
    if kind == "bert":
        ref = reference_embeddings(merged, TEXTS)
        assert (_cos(adapted, ref) > 0.999).all(), _cos(adapted, ref)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("convert-lora-bert") / "home")
    yield d
    d.stop()


def _daemon_embed(d: Daemon, model: str) -> np.ndarray:
    status, body = d.request("POST", "/api/embed", {"model": model, "input": TEXTS})
    assert status == 200, body
    return np.array(body["embeddings"], dtype=np.float64)


def test_adapter_on_a_converted_bert_changes_api_embed(daemon: Daemon, tmp_path: Path) -> None:
    base = write_encoder("bert", tmp_path / "base")
    lora = write_lora(base, tmp_path / "lora", ["query", "value"], seed=2)
    for name, modelfile in (("bert-base", f"FROM {base}\n"), ("bert-lora", f"FROM bert-base\nADAPTER {lora}\n")):
        status, body = daemon.request("POST", "/api/create", {"model": name, "modelfile": modelfile, "stream": False})
        assert status == 200 and body == {"status": "success"}, body
    plain, adapted = _daemon_embed(daemon, "bert-base"), _daemon_embed(daemon, "bert-lora")
    assert (_cos(plain, adapted) < 0.999).all(), _cos(plain, adapted)
    np.testing.assert_allclose(_daemon_embed(daemon, "bert-lora"), adapted, atol=1e-6)
    ref = reference_embeddings(merged_checkpoint(base, lora, tmp_path / "merged"), TEXTS)
    assert (_cos(adapted, ref) > 0.999).all(), _cos(adapted, ref)  # the daemon's BERT is F16
