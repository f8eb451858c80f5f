"""The generated tiny models: deterministic, well-formed GGUF, and really loadable by llama.cpp."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from ollamalike.testmodels import write_tiny_bert, write_tiny_llama


def _field(reader: gguf.GGUFReader, key: str) -> object:
    f = reader.fields[key]
    return f.contents()


def test_llama_is_deterministic(tmp_path: Path) -> None:
    a = write_tiny_llama(tmp_path / "a.gguf", quant="Q4_0")
    b = write_tiny_llama(tmp_path / "b.gguf", quant="Q4_0")
    assert a.read_bytes() == b.read_bytes()
    c = write_tiny_llama(tmp_path / "c.gguf", quant="Q4_0", seed=99)
    assert c.read_bytes() != a.read_bytes()
    assert not list(tmp_path.glob(".*partial"))


def test_llama_metadata(tiny_chat_gguf: Path, tiny_chat_q4_gguf: Path) -> None:
    r = gguf.GGUFReader(tiny_chat_gguf)
    assert _field(r, "general.architecture") == "llama"
    assert _field(r, "tokenizer.ggml.model") == "llama"
    tokens = _field(r, "tokenizer.ggml.tokens")
    types = _field(r, "tokenizer.ggml.token_type")
    assert isinstance(tokens, list) and isinstance(types, list)
    assert tokens[:3] == ["<unk>", "<s>", "</s>"]
    assert tokens[3] == "<0x00>" and tokens[3 + 255] == "<0xFF>"
    assert all(types[3 + i] == gguf.TokenType.BYTE for i in range(256))
    assert types[tokens.index("<|im_end|>")] == gguf.TokenType.CONTROL
    assert "\u2581the" in tokens
    assert "<|im_start|>" in str(_field(r, "tokenizer.chat_template"))
    q = gguf.GGUFReader(tiny_chat_q4_gguf)
    kinds = {t.name: t.tensor_type for t in q.tensors}
    assert kinds["blk.0.attn_q.weight"] == gguf.GGMLQuantizationType.Q4_0
    assert kinds["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32


def test_bad_quant_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported quant"):
        write_tiny_llama(tmp_path / "x.gguf", quant="Q8_K")
    assert not (tmp_path / "x.gguf").exists()


def test_llama_runs_in_llama_cpp(tiny_chat_q4_gguf: Path) -> None:
    from llama_cpp import Llama

    m = Llama(str(tiny_chat_q4_gguf), n_ctx=128, n_threads=1, verbose=False)
    toks = m.tokenize(b"Hello world")
    assert toks[0] == 1 and len(toks) == 3  # BOS + two whole-word pieces
    assert m.detokenize(toks[1:]) == b" Hello world"
    # Characters outside the vocabulary fall back to their UTF-8 bytes and round-trip.
    text = "naïve ✓ 日本"
    assert m.detokenize(m.tokenize(text.encode(), add_bos=False)).decode() == " " + text
    chat = m.tokenize(b"<|im_start|>user\nhi<|im_end|>", add_bos=False, special=True)
    assert chat[0] == m.tokenize(b"<|im_start|>", add_bos=False, special=True)[0] and len(chat) < 8
    out = m("Hello world", max_tokens=6, temperature=0.0)
    assert out["usage"]["completion_tokens"] >= 1


def test_bert_embeds_in_llama_cpp(tiny_embed_gguf: Path) -> None:
    from llama_cpp import Llama

    m = Llama(str(tiny_embed_gguf), embedding=True, n_ctx=128, n_threads=1, verbose=False)
    toks = m.tokenize(b"hello world")
    assert toks[0] == 2 and toks[-1] == 3  # [CLS] ... [SEP]
    a = np.array(m.embed("hello world"))
    b = np.array(m.embed("the dog is red"))
    assert a.shape == (64,)
    assert np.all(np.isfinite(a)) and not np.allclose(a, b)


def test_bert_is_deterministic(tmp_path: Path, tiny_embed_gguf: Path) -> None:
    assert write_tiny_bert(tmp_path / "b.gguf").read_bytes() == tiny_embed_gguf.read_bytes()
    r = gguf.GGUFReader(tiny_embed_gguf)
    assert _field(r, "general.architecture") == "bert"
    assert _field(r, "bert.pooling_type") == int(gguf.PoolingType.MEAN)


def test_lora_adapter_metadata(tmp_path: Path) -> None:
    from ollamalike.testmodels import write_tiny_lora

    a = write_tiny_lora(tmp_path / "a.gguf")
    assert a.read_bytes() == write_tiny_lora(tmp_path / "b.gguf").read_bytes()
    r = gguf.GGUFReader(a)
    assert _field(r, "general.type") == "adapter" and _field(r, "adapter.type") == "lora"
    names = {t.name for t in r.tensors}
    assert "blk.0.attn_q.weight.lora_a" in names and "blk.1.attn_v.weight.lora_b" in names
