"""Differential test: our converter against llama.cpp's own ``convert_hf_to_gguf.py``.

Each generated decoder checkpoint (tests/hf_checkpoints.py) is converted by both (F16), and
the files must hold the same tensors (name, type, bytes) and the same model keys, and llama.cpp
must run them alike: the same logits and greedy token ids from the same prompt ids, and the same
tokenization of a text. The reference converter needs torch and transformers, which
are never dependencies of the package: ``./install.sh --dev`` builds a separate interpreter for
it (``.reference/venv``, a CPU-only torch) and unpacks the converter from the llama-cpp-python sdist
(``.reference/llama.cpp``); OLLAMALIKE_REFERENCE_PYTHON / OLLAMALIKE_REFERENCE_LLAMA_CPP point
elsewhere. Without them the tests are skipped, saying so (a dev-only check, as issue 17 asks).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.hf_checkpoints import KINDS, write_checkpoint

ROOT = Path(__file__).resolve().parent.parent
PYTHON = Path(os.environ.get("OLLAMALIKE_REFERENCE_PYTHON", ROOT / ".reference" / "venv" / "bin" / "python"))
LLAMA_CPP = Path(os.environ.get("OLLAMALIKE_REFERENCE_LLAMA_CPP", ROOT / ".reference" / "llama.cpp"))
PRE = {"llama3": "llama-bpe", "qwen2": "qwen2"}  # the split regex each test tokenizer was built with
# Their converters want tokenizer.model; tests/reference_convert.py gives them tokenizer.json instead
# (which llama.cpp then cannot load for Phi-3), so for them the files' tensors and keys are compared.
NO_SPM_MODEL = ("gemma2", "gemma3", "phi3")
PROMPT_IDS = [1, 7, 30, 42, 5, 99, 12, 64]
TEXT = "Hello world! The quick brown fox, 1234."

pytestmark = pytest.mark.skipif(
    not (PYTHON.is_file() and (LLAMA_CPP / "convert_hf_to_gguf.py").is_file()),
    reason=f"llama.cpp's reference converter is not installed ({PYTHON}, {LLAMA_CPP}): ./install.sh --dev",
)


def reference_convert(src: Path, out: Path, kind: str) -> None:
    pre = "hf" if kind in NO_SPM_MODEL else PRE.get(KINDS[kind].tokenizer, "-")
    cmd = [str(PYTHON), str(ROOT / "tests" / "reference_convert.py"), str(LLAMA_CPP), pre,
           str(src), "--outfile", str(out), "--outtype", "f16"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert r.returncode == 0, r.stderr[-4000:]


def run(path: Path, steps: int = 8) -> tuple[np.ndarray, list[int]]:
    """llama.cpp's logits at every prompt position, and the greedy ids after PROMPT_IDS (argmax, no sampler)."""
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=64, n_threads=1, logits_all=True, verbose=False)
    try:
        llm.eval(PROMPT_IDS)
        logits = np.array(llm.scores[: len(PROMPT_IDS)], dtype=np.float32)
        out: list[int] = []
        for _ in range(steps):
            token = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            out.append(token)
            llm.eval([token])
        return logits, out
    finally:
        llm.close()


def tokenize(path: Path) -> list[int]:
    from llama_cpp import Llama

    vocab = Llama(str(path), vocab_only=True, verbose=False)
    try:
        return list(vocab.tokenize(TEXT.encode(), add_bos=False, special=False))
    finally:
        vocab.close()


def same_file_content(ours: Path, theirs: Path) -> None:
    """Every tensor the same (name, type, bytes; F32 to rounding) and every model key llama.cpp writes written alike."""
    import gguf

    a, b = gguf.GGUFReader(ours), gguf.GGUFReader(theirs)
    ta, tb = {t.name: t for t in a.tensors}, {t.name: t for t in b.tensors}
    assert set(ta) == set(tb), set(ta) ^ set(tb)
    for name, t in ta.items():
        assert t.tensor_type == tb[name].tensor_type, (name, t.tensor_type, tb[name].tensor_type)
        x, y = np.asarray(t.data), np.asarray(tb[name].data)
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            # Computed factors (Llama 3's rope_freqs) may differ in the last bit: theirs come out of torch.
            assert np.allclose(x, y, rtol=1e-6, atol=0), name
        else:
            assert np.array_equal(x, y), name

    def model_keys(r: gguf.GGUFReader) -> dict[str, object]:
        return {f.name: f.contents() for f in r.fields.values() if not f.name.startswith(("tokenizer.", "GGUF.", "general."))}

    ka, kb = model_keys(a), model_keys(b)
    assert set(kb) <= set(ka), set(kb) - set(ka)
    assert {k: ka[k] for k in kb} == kb


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_output_matches_llama_cpp_converter(tmp_path: Path, kind: str) -> None:
    from ollamalike.library.convert import convert

    src = write_checkpoint(kind, tmp_path / kind, seed=11)
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    convert(src, ours, out_type="F16")
    reference_convert(src, theirs, kind)
    same_file_content(ours, theirs)
    if kind in NO_SPM_MODEL:
        return  # their vocabulary came from a stand-in path (see reference_convert.py): not run
    assert tokenize(ours) == tokenize(theirs)
    (ours_logits, ours_ids), (theirs_logits, theirs_ids) = run(ours), run(theirs)
    assert ours_ids == theirs_ids, (ours_ids, theirs_ids)
    # The logits themselves, not only their argmax (a tiny random model often repeats one token).
    spread = float(np.ptp(theirs_logits))
    assert spread > 0.01, spread
    assert float(np.abs(ours_logits - theirs_logits).max()) <= 1e-3 * max(spread, 1.0)


def test_tokenizer_model_matches_llama_cpp_converter(tmp_path: Path) -> None:
    """A checkpoint with only SentencePiece's tokenizer.model: the same pieces, scores, types and special
    ids as llama.cpp's _set_vocab_sentencepiece writes, and the same tokenization. One difference is
    ours: a user-defined piece is USER_DEFINED (llama.cpp's converter cannot tell it from NORMAL)."""
    import gguf

    from ollamalike.library.convert import convert
    from tests.test_convert_spm import write_spm_checkpoint

    src, sp = write_spm_checkpoint(tmp_path / "spm")
    ours, theirs = tmp_path / "ours.gguf", tmp_path / "theirs.gguf"
    convert(src, ours, out_type="F16")
    reference_convert(src, theirs, "mistral")
    same_file_content(ours, theirs)
    a, b = gguf.GGUFReader(ours), gguf.GGUFReader(theirs)

    def field(r: gguf.GGUFReader, key: str) -> object:
        return r.fields[key].contents() if key in r.fields else None

    n = sp.get_piece_size() + 2  # the pieces and the two added tokens; then padding rows
    assert field(a, "tokenizer.ggml.model") == field(b, "tokenizer.ggml.model") == "llama"
    assert field(a, "tokenizer.ggml.tokens") == field(b, "tokenizer.ggml.tokens")
    assert np.allclose(np.array(field(a, "tokenizer.ggml.scores"))[:n], np.array(field(b, "tokenizer.ggml.scores"))[:n])
    ours_types, theirs_types = field(a, "tokenizer.ggml.token_type"), field(b, "tokenizer.ggml.token_type")
    assert isinstance(ours_types, list) and isinstance(theirs_types, list)
    user = sp.piece_to_id("<sep>")
    assert ours_types[user] == gguf.TokenType.USER_DEFINED and theirs_types[user] == gguf.TokenType.NORMAL
    assert ours_types[:user] + ours_types[user + 1:] == theirs_types[:user] + theirs_types[user + 1:]
    for key in ("bos_token_id", "eos_token_id", "unknown_token_id", "add_bos_token", "add_eos_token"):
        theirs_value = field(b, f"tokenizer.ggml.{key}")
        if theirs_value is not None:
            assert field(a, f"tokenizer.ggml.{key}") == theirs_value, key
    assert tokenize(ours) == tokenize(theirs)
