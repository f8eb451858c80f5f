"""Checkpoints with only SentencePiece's ``tokenizer.model`` (no tokenizer.json), as older Llama,
Mistral and Gemma fine-tunes ship them.

A real SentencePiece model is trained here (BPE like Llama's: byte fallback, identity
normalization, a user-defined symbol, control symbols) and put into a tiny Mistral checkpoint with
an ``added_tokens.json`` and padding rows. The GGUF must carry the pieces, scores, types and special
ids, and llama.cpp must tokenize as SentencePiece itself encodes (and decode back) a few strings,
byte-fallback characters and a user-defined symbol included. A Unigram model becomes llama.cpp's
UGM tokenizer and segments as SentencePiece does. Through the daemon, the CLI uploads the directory
(tokenizer.model with it) and the model answers.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gguf
import pytest
import sentencepiece as spm

from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error, store_snapshot
from tests.hf_checkpoints import CORPUS, write_checkpoint
from tests.test_convert_decoders import model_blob
from tests.test_convert_errors import upload_dir

TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the lazy dog.",
    "Tiny models answer in tiny sentences, 123 4567.",
    "héllo wörld ✓ 日本",  # not in the corpus: byte fallback
    # The user-defined symbol is one piece. (Text after it differs: llama.cpp's SPM tokenizer gives every
    # text fragment after a special or user-defined token a dummy-prefix space, as transformers' legacy
    # Llama tokenizer does, where SentencePiece does not.)
    "a man <sep>",
    "def add(a, b):\n    return a + b",
]
PAD_ROWS = 6


def train_spm(model_type: str = "bpe", vocab_size: int = 400) -> bytes:
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS), model_writer=out, model_type=model_type, vocab_size=vocab_size,
        hard_vocab_limit=False, byte_fallback=model_type == "bpe", character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        user_defined_symbols=["<sep>"], control_symbols=["<ctl>"], minloglevel=2, num_threads=1,
    )
    return out.getvalue()


def write_spm_checkpoint(directory: Path, model_type: str = "bpe") -> tuple[Path, Any]:
    """A tiny Mistral checkpoint whose tokenizer is only tokenizer.model (+ added_tokens.json)."""
    model = train_spm(model_type)
    sp = spm.SentencePieceProcessor(model_proto=model)
    n = sp.get_piece_size()
    write_checkpoint("mistral", directory, vocab_size=n + 2 + PAD_ROWS)
    (directory / "tokenizer.json").unlink()
    (directory / "tokenizer.model").write_bytes(model)
    (directory / "added_tokens.json").write_text(json.dumps({"<|im_start|>": n, "<|im_end|>": n + 1}))
    cfg = json.loads((directory / "tokenizer_config.json").read_text())
    cfg["added_tokens_decoder"] = {str(n): {"content": "<|im_start|>", "special": True},
                                   str(n + 1): {"content": "<|im_end|>", "special": True}}
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg))
    (directory / "generation_config.json").write_text(json.dumps({"bos_token_id": 1, "eos_token_id": [2, n + 1]}))
    return directory, sp


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, Path]:
    from ollamalike.library.convert import convert

    tmp = tmp_path_factory.mktemp("spm")
    src, sp = write_spm_checkpoint(tmp / "mistral-spm")
    out = tmp / "mistral-spm.gguf"
    convert(src, out)
    return src, sp, out


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    return reader.fields[key].contents()


def test_gguf_carries_the_pieces_scores_types_and_special_ids(bpe: tuple[Path, Any, Path]) -> None:
    _, sp, path = bpe
    reader = gguf.GGUFReader(path)
    n = sp.get_piece_size()
    tokens, scores, types = (_field(reader, f"tokenizer.ggml.{k}") for k in ("tokens", "scores", "token_type"))
    assert _field(reader, "tokenizer.ggml.model") == "llama"
    assert len(tokens) == len(scores) == len(types) == n + 2 + PAD_ROWS
    assert tokens[:n] == [sp.id_to_piece(i) for i in range(n)]
    assert scores[:n] == pytest.approx([sp.get_score(i) for i in range(n)])
    tt = gguf.TokenType
    assert types[sp.unk_id()] == tt.UNKNOWN
    assert types[sp.bos_id()] == types[sp.eos_id()] == types[sp.piece_to_id("<ctl>")] == tt.CONTROL
    assert types[sp.piece_to_id("<sep>")] == tt.USER_DEFINED
    assert types[sp.piece_to_id("<0x41>")] == tt.BYTE
    assert types[sp.piece_to_id("▁the")] == tt.NORMAL
    assert tokens[n:n + 2] == ["<|im_start|>", "<|im_end|>"] and types[n:n + 2] == [tt.CONTROL, tt.CONTROL]
    assert tokens[n + 2:] == [f"[PAD{i}]" for i in range(n + 2, n + 2 + PAD_ROWS)]
    assert set(types[n + 2:]) == {tt.UNUSED}
    assert _field(reader, "tokenizer.ggml.bos_token_id") == sp.bos_id() == 1
    assert _field(reader, "tokenizer.ggml.eos_token_id") == sp.eos_id() == 2
    assert _field(reader, "tokenizer.ggml.unknown_token_id") == sp.unk_id() == 0
    assert _field(reader, "tokenizer.ggml.eot_token_id") == n + 1
    assert _field(reader, "tokenizer.ggml.eos_token_ids") == [2, n + 1]
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "tokenizer.ggml.add_space_prefix") is True
    assert "<|im_start|>" in _field(reader, "tokenizer.chat_template")


def detokenize(llm: Any, ids: list[int]) -> str:
    """llama.cpp's own detokenizer (which drops the dummy-prefix space, as SentencePiece's decode does)."""
    import ctypes

    import llama_cpp

    arr = (llama_cpp.llama_token * len(ids))(*ids)
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_detokenize(llm._model.vocab, arr, len(ids), buf, len(buf), False, False)
    assert n >= 0, n
    return buf.raw[:n].decode()


def test_llama_cpp_tokenizes_as_sentencepiece_does(bpe: tuple[Path, Any, Path]) -> None:
    from llama_cpp import Llama

    _, sp, path = bpe
    llm = Llama(str(path), vocab_only=True, verbose=False)
    try:
        for text in TEXTS:
            ids = sp.encode(text)
            assert llm.tokenize(text.encode(), add_bos=False, special=False) == ids, (text, sp.encode(text, out_type=str))
            assert detokenize(llm, ids) == sp.decode(ids) == text
        assert llm.tokenize(b"Hello", add_bos=True, special=False) == [sp.bos_id(), *sp.encode("Hello")]
        assert sp.piece_to_id("<sep>") in llm.tokenize(b"x<sep>y and more", add_bos=False, special=False)
        # The added control tokens are one token when specials are parsed (chat templates rely on it).
        n = sp.get_piece_size()
        assert llm.tokenize(b"<|im_start|>user", add_bos=False, special=True)[0] == n
    finally:
        llm.close()


def test_unigram_model_becomes_llama_cpp_ugm(tmp_path: Path) -> None:
    from llama_cpp import Llama

    from ollamalike.library.convert import convert

    src, sp = write_spm_checkpoint(tmp_path / "unigram", model_type="unigram")
    out = tmp_path / "unigram.gguf"
    convert(src, out)
    reader = gguf.GGUFReader(out)
    assert _field(reader, "tokenizer.ggml.model") == "t5"
    llm = Llama(str(out), vocab_only=True, verbose=False)
    try:
        for text in TEXTS[:3]:
            assert llm.tokenize(text.encode(), add_bos=False, special=False) == sp.encode(text), text
    finally:
        llm.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = start_daemon(tmp_path_factory.mktemp("convert-spm") / "home")
    yield d
    d.stop()


def test_cli_create_from_a_tokenizer_model_directory_answers(daemon: Daemon, bpe: tuple[Path, Any, Path],
                                                            tmp_path: Path) -> None:
    src, _, converted = bpe
    modelfile = tmp_path / "Modelfile"
    modelfile.write_text(f"FROM {src}\n")
    r = daemon.cli("create", "spm-mistral", "-f", str(modelfile), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr + daemon.logs()[-3000:]
    status, body = daemon.request("POST", "/api/generate", {
        "model": "spm-mistral", "prompt": "Hello world", "raw": True, "stream": False,
        "options": {"temperature": 0, "num_predict": 4}})
    assert status == 200 and body["eval_count"] >= 1, body
    assert model_blob(daemon, "spm-mistral").read_bytes() == converted.read_bytes()  # as the direct conversion


def test_bad_tokenizer_model_is_a_400(daemon: Daemon, tmp_path: Path) -> None:
    src, _ = write_spm_checkpoint(tmp_path / "bad")
    (src / "tokenizer.model").write_bytes(b"\x0a\x05not a model")
    files = upload_dir(daemon, src)
    before = store_snapshot(daemon.models_dir)
    status, body = daemon.request("POST", "/api/create", {"model": "bad-spm", "files": files})
    assert_api_error(status, body, 400, "tokenizer.model is not a valid SentencePiece model")
    assert store_snapshot(daemon.models_dir) == before
