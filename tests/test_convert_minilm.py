"""Real model: all-MiniLM-L6-v2 (safetensors) created through the daemon, embedded with /api/embed.

The vectors are checked two ways: the sentence pairs rank as the model is known to rank them, and
each vector matches a reference computed here by a plain numpy forward pass of the same BERT
weights (tokens from the model's own tokenizer.json, mean pooling as its 1_Pooling config says,
then normalized).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.daemon import Daemon, start_daemon

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "A man is riding a horse.",
    "The girl is carrying a baby.",
]


@pytest.fixture(scope="module")
def minilm_daemon(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("convert-minilm")
    d = start_daemon(home / "home")
    try:
        modelfile = home / "Modelfile"
        modelfile.write_text(f"FROM {minilm_dir}\n")
        r = d.cli("create", "minilm", "-f", str(modelfile), timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr + d.logs()
        assert "converting model" in r.stdout, r.stdout
        yield d
    finally:
        d.stop()


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def reference_embeddings(model_dir: Path, sentences: list[str]) -> np.ndarray:
    """BERT forward pass in float64 numpy, then the pooling sentence-transformers' config names."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    cfg = json.loads((model_dir / "config.json").read_text())
    pooling = json.loads((model_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_mean_tokens"], pooling
    w = {k: v.astype(np.float64) for k, v in load_file(str(model_dir / "model.safetensors")).items()}
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    heads, eps = cfg["num_attention_heads"], cfg["layer_norm_eps"]
    out = []
    for text in sentences:
        ids = tok.encode(text).ids
        n = len(ids)
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:n]
        x = x + w["embeddings.token_type_embeddings.weight"][0]
        x = _layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for i in range(cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."

            def lin(name: str, h: np.ndarray, p: str = p) -> np.ndarray:
                return h @ w[p + name + ".weight"].T + w[p + name + ".bias"]

            d = x.shape[1] // heads
            q, k, v = (lin(f"attention.self.{m}", x).reshape(n, heads, d).transpose(1, 0, 2) for m in ("query", "key", "value"))
            scores = q @ k.transpose(0, 2, 1) / math.sqrt(d)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            att = (scores / scores.sum(-1, keepdims=True)) @ v
            att = att.transpose(1, 0, 2).reshape(n, heads * d)
            x = _layer_norm(x + lin("attention.output.dense", att), w[p + "attention.output.LayerNorm.weight"],
                            w[p + "attention.output.LayerNorm.bias"], eps)
            h = lin("output.dense", _gelu(lin("intermediate.dense", x)))
            x = _layer_norm(x + h, w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"], eps)
        pooled = x.mean(0)
        out.append(pooled / np.linalg.norm(pooled))
    return np.array(out)


def _embed(d: Daemon, texts: list[str]) -> np.ndarray:
    status, body = d.request("POST", "/api/embed", {"model": "minilm", "input": texts})
    assert status == 200, body
    return np.array(body["embeddings"], dtype=np.float64)


def test_minilm_embeddings_are_unit_vectors_that_rank_as_the_model_does(minilm_daemon: Daemon) -> None:
    vectors = _embed(minilm_daemon, SENTENCES)
    assert vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    sims = vectors[1:] @ vectors[0]
    assert sims[0] > sims[1] and sims[0] > sims[2], sims
    assert sims[0] > 0.6 and sims[2] < 0.2, sims  # bread ~0.75, baby ~-0.1 with sentence-transformers


def test_minilm_matches_a_numpy_forward_pass_of_the_same_weights(minilm_daemon: Daemon, minilm_dir: Path) -> None:
    ours = _embed(minilm_daemon, SENTENCES)
    ref = reference_embeddings(minilm_dir, SENTENCES)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert (cos >= 0.999).all(), cos


def test_minilm_gguf_carries_the_bert_tokenizer_and_pooling(minilm_daemon: Daemon) -> None:
    status, body = minilm_daemon.request("POST", "/api/show", {"model": "minilm", "verbose": True})
    assert status == 200, body
    info = body["model_info"]
    assert info["general.architecture"] == "bert"
    assert info["bert.pooling_type"] == 1  # mean, from 1_Pooling/config.json
    assert info["bert.attention.causal"] is False
    assert info["tokenizer.ggml.model"] == "bert"
    assert info["tokenizer.ggml.bos_token_id"] == 101  # [CLS]
    assert info["tokenizer.ggml.seperator_token_id"] == 102
    assert body["details"]["quantization_level"] == "F16"
    assert "embedding" in body["capabilities"]
