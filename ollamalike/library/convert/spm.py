"""A SentencePiece ``tokenizer.model`` (a checkpoint without tokenizer.json) as a GGUF tokenizer.

Older Llama, Mistral and Gemma fine-tunes ship only SentencePiece's model file. It is read with the
``sentencepiece`` package: its processor validates the file, its ``sentencepiece_model_pb2`` (which
needs ``protobuf``) gives what the processor does not expose: user-defined piece types, the model
type and the normalizer's flags.

- A BPE model -> llama.cpp's ``llama`` (SPM) tokenizer, the pieces' scores as they are (SentencePiece
  scores BPE pieces by merge order, which llama.cpp's score-ordered merging follows).
- A Unigram model -> ``t5`` (UGM): the log-probabilities as scores, the precompiled charsmap.

Piece types map one to one (SentencePiece numbers NORMAL..BYTE as ``gguf.TokenType`` does);
``add_dummy_prefix`` is ``add_space_prefix``. Ids past the model's pieces come from
``added_tokens.json`` (user-defined), tokenizer_config.json's ``added_tokens_decoder`` overrides
types (control when special); embedding rows left over are ``[PAD<i>]`` unused tokens. Special ids:
``SpecialVocab`` (config.json, add_bos/add_eos, chat template) first, then the tokens that
tokenizer_config.json names, then generation_config.json's end-of-generation ids, then the
trainer's own bos/eos/unk/pad ids.
"""

from __future__ import annotations

from typing import Any

import gguf

from ollamalike.errors import BadRequest, InternalError
from ollamalike.library.convert.source import Checkpoint
from ollamalike.library.convert.vocab import Vocab, eog_ids, looks_special, set_eog

MODEL_FILE = "tokenizer.model"
_UNIGRAM, _BPE = 1, 2  # sentencepiece TrainerSpec.ModelType
TT = gguf.TokenType


def _parse(data: bytes) -> Any:
    try:
        import sentencepiece
        from sentencepiece import sentencepiece_model_pb2
    except ImportError as e:  # also protobuf missing, or older than the one sentencepiece was built with
        raise InternalError(f"{MODEL_FILE} needs the sentencepiece and protobuf packages: {e}") from None
    try:
        sentencepiece.SentencePieceProcessor().LoadFromSerializedProto(data)
        proto = sentencepiece_model_pb2.ModelProto()  # type: ignore[attr-defined]  # generated protobuf code, untyped
        proto.ParseFromString(data)
    except Exception:  # sentencepiece raises RuntimeError/OSError, protobuf DecodeError
        raise BadRequest(f"{MODEL_FILE} is not a valid SentencePiece model") from None
    if not proto.pieces:
        raise BadRequest(f"{MODEL_FILE} has no pieces")
    return proto


def _added(ckpt: Checkpoint, tokens: list[str], types: list[int], scores: list[float]) -> dict[str, int]:
    """added_tokens.json and tokenizer_config.json's added_tokens_decoder; returns text -> id."""
    size = len(tokens)
    found: dict[str, int] = {}
    for text, i in sorted((ckpt.json_file("added_tokens.json") or {}).items(), key=lambda kv: str(kv[1])):
        if isinstance(i, bool) or not isinstance(i, int) or i < 0:
            raise BadRequest(f"added_tokens.json: the id of {text!r} must be a non-negative integer")
        if i >= size:
            raise BadRequest(f"added_tokens.json: token {text!r} has id {i} but the model's vocab_size is {size}")
        tokens[i], types[i], scores[i] = text, int(TT.USER_DEFINED), -1000.0
        found[text] = i
    decoder = (ckpt.json_file("tokenizer_config.json") or {}).get("added_tokens_decoder") or {}
    for key, entry in decoder.items() if isinstance(decoder, dict) else []:
        if not str(key).isdecimal() or not isinstance(entry, dict) or not isinstance(entry.get("content"), str):
            raise BadRequest(f"tokenizer_config.json: malformed added_tokens_decoder entry {str(key)[:40]!r}")
        i, text = int(key), entry["content"]
        if i >= size:
            raise BadRequest(f"tokenizer_config.json: added token {text!r} has id {i} but the model's vocab_size "
                             f"is {size}")
        special = bool(entry.get("special")) or looks_special(text)
        # A user-defined token is matched in the text before SentencePiece's space escaping.
        tokens[i] = text if special else text.replace("\u2581", " ")
        types[i], scores[i] = int(TT.CONTROL if special else TT.USER_DEFINED), -1000.0
        found[text] = i
    return found


def _special_ids(ckpt: Checkpoint, proto: Any, vocab: Vocab, ids: dict[str, int]) -> None:
    special = vocab.special = gguf.SpecialVocab(ckpt.root, n_vocab=len(vocab.tokens))
    config = ckpt.json_file("tokenizer_config.json") or {}
    for typ in special.special_token_types:
        entry = config.get(f"{typ}_token")
        text = entry.get("content") if isinstance(entry, dict) else entry
        if isinstance(text, str) and text in ids:
            special.special_token_ids.setdefault(typ, ids[text])
    set_eog(vocab, eog_ids(ckpt, len(vocab.tokens)))
    spec = proto.trainer_spec
    for typ, i in (("bos", spec.bos_id), ("eos", spec.eos_id), ("unk", spec.unk_id), ("pad", spec.pad_id)):
        if 0 <= i < len(proto.pieces):
            special.special_token_ids.setdefault(typ, int(i))


def read_spm_vocab(ckpt: Checkpoint, n_vocab: int | None) -> Vocab:
    """The tokenizer of ``ckpt/tokenizer.model``; ``n_vocab`` is the model's vocab_size (the embedding rows)."""
    proto = _parse(ckpt.file(MODEL_FILE).read_bytes())
    kind = proto.trainer_spec.model_type
    if kind not in (_UNIGRAM, _BPE):
        raise BadRequest(f"{MODEL_FILE}: a {'word' if kind == 3 else 'char'}-level SentencePiece model cannot "
                         "be converted (supported: BPE, Unigram)")
    pieces = list(proto.pieces)
    size = n_vocab or len(pieces)
    if len(pieces) > size:
        raise BadRequest(f"{MODEL_FILE} has {len(pieces)} pieces but the model's vocab_size is {size}")
    tokens = [p.piece for p in pieces] + [f"[PAD{i}]" for i in range(len(pieces), size)]
    scores = [float(p.score) for p in pieces] + [-1000.0] * (size - len(pieces))
    types = [int(p.type) for p in pieces] + [int(TT.UNUSED)] * (size - len(pieces))
    ids = {t: i for i, t in enumerate(tokens[: len(pieces)])}
    ids.update(_added(ckpt, tokens, types, scores))
    norm = proto.normalizer_spec
    vocab = Vocab("llama" if kind == _BPE else "t5", "default", tokens, types, scores=scores,
                  add_space_prefix=bool(norm.add_dummy_prefix))
    if kind == _UNIGRAM:
        vocab.charsmap = bytes(norm.precompiled_charsmap)
        vocab.remove_extra_whitespaces = bool(norm.remove_extra_whitespaces)
    _special_ids(ckpt, proto, vocab, ids)
    return vocab
