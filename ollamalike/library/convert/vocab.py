"""The tokenizer of a checkpoint, as the ``tokenizer.*`` keys of a GGUF.

``tokenizer.json`` is loaded with the ``tokenizers`` package (a file it cannot load is a 400) and
turned into one of llama.cpp's tokenizer models:

- WordPiece -> ``bert`` (WPM): tokens in llama.cpp's "phantom space" form (``##x`` -> ``x``, a word
  start gets ``▁``);
- byte-level BPE -> ``gpt2`` with its merges and the pre-tokenizer type (``tokenizer.ggml.pre``)
  recognised from the pre-tokenizer's split regexes (Llama 3, Qwen 2, GPT-2);
- byte-fallback BPE (SentencePiece exported by transformers: Llama 2, Mistral, Gemma, Phi-3) ->
  ``llama`` (SPM), scores taken from the merge ranks so that llama.cpp's score-ordered merging
  follows the BPE merge order;
- Unigram (SentencePiece's other model) -> ``t5`` (UGM), the pieces' log-probabilities as scores.

Special tokens, add_bos/add_eos, the merges' encoding and the chat template come from the ``gguf``
package's ``SpecialVocab``; the end-of-generation ids from ``generation_config.json``.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from typing import Any

import gguf

from ollamalike.errors import BadRequest
from ollamalike.library.convert.source import Checkpoint

# Pre-tokenizer split regexes as tokenizer.json spells them -> llama.cpp's pre-tokenizer type.
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TYPES: dict[tuple[str, ...], str] = {(LLAMA3_REGEX,): "llama-bpe", (QWEN2_REGEX,): "qwen2", (): "gpt-2"}
_BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")
TT = gguf.TokenType


@dataclass
class Vocab:
    """What is written under ``tokenizer.*``."""

    model: str  # "bert" | "gpt2" | "llama"
    pre: str
    tokens: list[str]
    types: list[int]
    scores: list[float] | None = None
    add_space_prefix: bool | None = None
    token_type_count: int | None = None
    special: gguf.SpecialVocab | None = None
    eog_ids: list[int] = field(default_factory=list)
    charsmap: bytes | None = None  # Unigram: the normalizer's precompiled charsmap
    remove_extra_whitespaces: bool = False  # Unigram: the normalizer collapses runs of spaces

    def write(self, w: gguf.GGUFWriter) -> None:
        w.add_tokenizer_model(self.model)
        w.add_tokenizer_pre(self.pre)
        w.add_token_list(self.tokens)
        w.add_token_types(self.types)
        if self.scores is not None:
            w.add_token_scores(self.scores)
        if self.add_space_prefix is not None:
            w.add_add_space_prefix(self.add_space_prefix)
        if self.token_type_count is not None:
            w.add_token_type_count(self.token_type_count)
        if self.model == "t5":
            w.add_remove_extra_whitespaces(self.remove_extra_whitespaces)
            w.add_precompiled_charsmap(self.charsmap or b"")
        if self.special is not None:
            self.special.add_to_gguf(w, quiet=True)
        if self.eog_ids:
            w.add_array("tokenizer.ggml.eos_token_ids", self.eog_ids)


def looks_special(text: str) -> bool:
    """Added tokens some models forget to mark special (as llama.cpp's converter treats them)."""
    return (text.startswith("<|") and text.endswith("|>")) or text in ("<pad>", "<mask>") or (
        text.startswith("<unused") and text.endswith(">")
    )


def _load(ckpt: Checkpoint) -> tuple[dict[str, Any], Any]:
    if not ckpt.has("tokenizer.json"):
        raise BadRequest("tokenizer.json not found in the model directory (a tokenizer is required: "
                         "tokenizer.json, or SentencePiece's tokenizer.model)")
    path = ckpt.file("tokenizer.json")
    from tokenizers import Tokenizer

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        tok = Tokenizer.from_str(json.dumps(raw))
    except Exception as e:  # the tokenizers library raises plain Exceptions for bad files
        raise BadRequest(f"tokenizer.json cannot be loaded: {str(e)[:200]}") from None
    return raw, tok


def _base_tokens(tok: Any, n_vocab: int) -> tuple[list[str], list[int], dict[int, Any]]:
    vocab: dict[str, int] = tok.get_vocab(with_added_tokens=True)
    top = max(vocab.values()) + 1
    if top > n_vocab:
        raise BadRequest(f"tokenizer.json has token id {top - 1} but the model's vocab_size is {n_vocab}")
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [int(TT.UNUSED)] * n_vocab
    for text, i in vocab.items():
        tokens[i], types[i] = text, int(TT.NORMAL)
    added: dict[int, Any] = dict(tok.get_added_tokens_decoder())
    for i, at in added.items():
        if i < n_vocab:
            special = at.special or looks_special(at.content)
            types[i] = int(TT.CONTROL if special else TT.USER_DEFINED)
    return tokens, types, added


def _pre_type(raw: dict[str, Any]) -> str:
    pre = raw.get("pre_tokenizer") or {}
    parts = pre.get("pretokenizers", [pre]) if isinstance(pre, dict) else []
    regexes = tuple(
        p["pattern"]["Regex"]
        for p in parts
        if isinstance(p, dict) and p.get("type") == "Split" and isinstance(p.get("pattern"), dict)
        and "Regex" in p["pattern"]
    )
    return PRE_TYPES.get(regexes, "default")


def _merge_ranks(raw: dict[str, Any]) -> dict[str, int]:
    ranks: dict[str, int] = {}
    for rank, merge in enumerate(raw.get("model", {}).get("merges") or []):
        a, b = merge.split(" ", 1) if isinstance(merge, str) else merge
        ranks.setdefault(a + b, rank)
    return ranks


def _adds_space_prefix(raw: dict[str, Any]) -> bool:
    def walk(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        if node.get("type") == "Prepend" and node.get("prepend") == "\u2581":
            return True
        if node.get("type") == "Metaspace" and node.get("prepend_scheme", "always") != "never":
            return bool(node.get("add_prefix_space", True))
        return any(walk(n) for n in node.get("normalizers", []) + node.get("pretokenizers", []))

    return walk(raw.get("normalizer")) or walk(raw.get("pre_tokenizer"))


def _unigram(raw: dict[str, object], model: dict[str, object], tokens: list[str], types: list[int]) -> Vocab:
    """SentencePiece Unigram -> llama.cpp's ``t5`` (UGM) tokenizer: the pieces' log-probabilities as
    scores (its Viterbi search uses them as the Unigram model does), the unknown piece, byte pieces
    when byte_fallback, and the normalizer's precompiled charsmap when there is one."""
    pieces = model.get("vocab")
    scores = [0.0] * len(tokens)
    for i, entry in enumerate(pieces if isinstance(pieces, list) else []):
        if i < len(scores) and isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], (int, float)):
            scores[i] = float(entry[1])
    unk = model.get("unk_id")
    for i, t in enumerate(tokens):
        if i == unk:
            types[i] = int(TT.UNKNOWN)
        elif types[i] == TT.NORMAL and model.get("byte_fallback") and _BYTE_TOKEN.fullmatch(t):
            types[i] = int(TT.BYTE)
    vocab = Vocab("t5", "default", tokens, types, scores=scores, add_space_prefix=_adds_space_prefix(raw))
    vocab.charsmap = _charsmap(raw.get("normalizer"))
    return vocab


def _charsmap(node: object) -> bytes | None:
    """The base64 ``precompiled_charsmap`` of a Precompiled normalizer (alone or in a Sequence)."""
    if not isinstance(node, dict):
        return None
    charsmap = node.get("precompiled_charsmap")
    if node.get("type") == "Precompiled" and isinstance(charsmap, str):
        try:
            return base64.b64decode(charsmap, validate=True)
        except ValueError:
            raise BadRequest("tokenizer.json: the normalizer's precompiled_charsmap is not base64") from None
    children = node.get("normalizers")
    for child in children if isinstance(children, list) else []:
        if (found := _charsmap(child)) is not None:
            return found
    return None


def eog_ids(ckpt: Checkpoint, n_vocab: int) -> list[int]:
    """End-of-generation ids: generation_config.json's eos_token_id (an int or a list), in order."""
    ids: list[int] = []
    for source in (ckpt.json_file("generation_config.json") or {}, ckpt.config):
        value = source.get("eos_token_id")
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, int) and 0 <= v < n_vocab and v not in ids:
                ids.append(v)
        if ids:
            break
    return ids


def read_vocab(ckpt: Checkpoint, n_vocab: int | None) -> Vocab:
    """The checkpoint's tokenizer; ``n_vocab`` is the model's vocab_size (the embedding rows)."""
    raw, tok = _load(ckpt)
    model = raw.get("model") or {}
    kind = model.get("type")
    size = n_vocab if n_vocab else tok.get_vocab_size(with_added_tokens=True)
    tokens, types, added = _base_tokens(tok, size)
    if kind == "WordPiece":
        prefix = model.get("continuing_subword_prefix", "##")
        tokens = [
            t if ty == TT.CONTROL else (t[len(prefix):] if t.startswith(prefix) else "\u2581" + t)
            for t, ty in zip(tokens, types, strict=True)
        ]
        vocab = Vocab("bert", "default", tokens, types)
        vocab.token_type_count = int(ckpt.config.get("type_vocab_size", 1))
        vocab.special = gguf.SpecialVocab(ckpt.root, n_vocab=size)
    elif kind == "BPE" and model.get("byte_fallback"):
        ranks = _merge_ranks(raw)
        unk = model.get("unk_token")
        scores = []
        for i, t in enumerate(tokens):
            if types[i] == TT.NORMAL and _BYTE_TOKEN.fullmatch(t):
                types[i] = int(TT.BYTE)
            elif types[i] in (TT.CONTROL, TT.USER_DEFINED) and t == unk:
                types[i] = int(TT.UNKNOWN)
            scores.append(-float(ranks[t]) if t in ranks else (0.0 if types[i] == TT.NORMAL else -1000.0))
        vocab = Vocab("llama", "default", tokens, types, scores=scores, add_space_prefix=_adds_space_prefix(raw))
        vocab.special = gguf.SpecialVocab(ckpt.root, n_vocab=size)
    elif kind == "Unigram":
        vocab = _unigram(raw, model, tokens, types)
        vocab.special = gguf.SpecialVocab(ckpt.root, n_vocab=size)
    elif kind == "BPE":
        vocab = Vocab("gpt2", _pre_type(raw), tokens, types)
        vocab.special = gguf.SpecialVocab(ckpt.root, load_merges=True, n_vocab=size)
    else:
        raise BadRequest(f"tokenizer.json: unsupported tokenizer model {kind!r} (supported: WordPiece, BPE, Unigram)")
    set_eog(vocab, eog_ids(ckpt, size))
    return vocab


def set_eog(vocab: Vocab, ids: list[int]) -> None:
    """The end-of-generation ids, the first as EOS unless one is set, the next other one as EOT."""
    vocab.eog_ids = ids
    if vocab.special is not None and vocab.eog_ids:
        # generation_config's first id is the one generation stops on; a second one is the end of a turn.
        vocab.special.special_token_ids.setdefault("eos", vocab.eog_ids[0])
        for i in vocab.eog_ids:
            if i != vocab.special.special_token_ids.get("eos"):
                vocab.special.special_token_ids.setdefault("eot", i)
                break
