"""Tiny deterministic GGUF models for tests, benchmarks and the install smoke test.

``write_tiny_llama`` writes a llama-architecture chat model with random (seeded) weights and a real
SentencePiece-style vocabulary: special tokens, the 256 byte-fallback tokens, ChatML control tokens
and English pieces, so ordinary text tokenizes into multi-character pieces and any UTF-8 falls back
to bytes. ``write_tiny_bert`` writes a BERT embedding model with a WordPiece vocabulary and mean
pooling (the projectors for the tiny llama are in ``testmodels_mm``). Nothing is downloaded; the same arguments always give byte-identical files.
"""

from __future__ import annotations

import string
from pathlib import Path

import gguf
import numpy as np
from gguf.constants import GGMLQuantizationType, LlamaFileType, TokenType
from gguf.quants import quantize

# ChatML, the format most GGUF chat models ship with; <|im_start|>/<|im_end|> are control tokens.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Common English words and subwords: enough that prose tokenizes into multi-character pieces.
_WORDS_TEXT = """
the of and to in is you that it he was for on are as with his they at be this have from or one had by
word but not what all were we when your can said there use an each which she do how their if will up
other about out many then them these so some her would make like him into time has look two more write
go see number no way could people my than first water been call who oil its now find long down day did
get come made may part hello world model llama tiny test answer question why sky blue because light
story once upon there little cat dog house tree sun moon star good bad new old big small fast slow
red green yellow black white name is am are what where here please thank thanks yes okay json true
false null value key list count one two three four five six seven eight nine ten
"""
_WORDS = _WORDS_TEXT.split()
_SUFFIXES = ["ing", "ed", "er", "est", "ly", "tion", "s", "es", "ness", "ment", "able", "al"]
_PUNCT = list(".,!?;:'\"()[]{}<>-_/\\@#$%^&*+=|~`")


def _llama_vocab() -> tuple[list[str], list[float], list[int]]:
    """SentencePiece ("llama") vocabulary: every multi-char piece's prefixes are pieces too, so
    llama.cpp's bigram merging can always build it from single characters."""
    tokens: list[str] = ["<unk>", "<s>", "</s>"]
    types: list[int] = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    scores: list[float] = [0.0, 0.0, 0.0]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(TokenType.BYTE)
        scores.append(0.0)
    for special in ("<|im_start|>", "<|im_end|>"):
        tokens.append(special)
        types.append(TokenType.CONTROL)
        scores.append(0.0)
    pieces: list[str] = []
    seen: set[str] = set()

    def add(piece: str) -> None:
        for end in range(1, len(piece) + 1):
            p = piece[:end]
            if p not in seen:
                seen.add(p)
                pieces.append(p)

    for ch in ["\u2581", *string.ascii_lowercase, *string.ascii_uppercase, *string.digits, *_PUNCT]:
        add(ch)
    for w in _WORDS:
        add("\u2581" + w)
        add("\u2581" + w.capitalize())
        add(w)
    for s in _SUFFIXES:
        add(s)
    for p in pieces:
        tokens.append(p)
        types.append(TokenType.NORMAL)
        # Longer pieces score higher so merges prefer whole words.
        scores.append(-1000.0 + 10.0 * len(p) - len(tokens) * 1e-3)
    return tokens, scores, [int(t) for t in types]


def _weights(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 0.08) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * scale).astype(np.float32)


def _add(writer: gguf.GGUFWriter, name: str, data: np.ndarray, quant: str) -> None:
    """Add a tensor; 2-D weights take the requested type, 1-D (norms, biases) stay F32."""
    if data.ndim < 2 or quant == "F32":
        writer.add_tensor(name, data.astype(np.float32))
    elif quant == "F16":
        writer.add_tensor(name, data.astype(np.float16))
    elif quant == "Q4_0":
        writer.add_tensor(name, quantize(data, GGMLQuantizationType.Q4_0), raw_dtype=GGMLQuantizationType.Q4_0)
    else:
        raise ValueError(f"unsupported quant {quant!r}: use F32, F16 or Q4_0")


_FILE_TYPES = {"F32": LlamaFileType.ALL_F32, "F16": LlamaFileType.MOSTLY_F16, "Q4_0": LlamaFileType.MOSTLY_Q4_0}


def write_tiny_llama(
    path: str | Path,
    quant: str = "F32",
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_ctx_train: int = 2048,
    seed: int = 1234,
    name: str = "tiny-llama",
    chat_template: str = CHATML_TEMPLATE,
    arch: str = "llama",
) -> Path:
    """Write a random-weight llama model with a SentencePiece vocab and a chat template (ChatML by default).

    ``arch="qwen2vl"``: the same tensors as Qwen2-VL's text model, whose M-RoPE positions (rope sections
    over the head's rotary pairs) llama.cpp and mtmd give four components per token."""
    if arch not in ("llama", "qwen2vl"):
        raise ValueError(f"unsupported arch {arch!r}: use llama or qwen2vl")
    if quant not in _FILE_TYPES:
        raise ValueError(f"unsupported quant {quant!r}: use F32, F16 or Q4_0")
    if n_embd % n_head or n_head % n_head_kv:
        raise ValueError("n_embd must divide by n_head and n_head by n_head_kv")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = _llama_vocab()
    n_vocab = len(tokens)
    head_dim = n_embd // n_head
    rng = np.random.default_rng(seed)

    w = gguf.GGUFWriter(str(_tmp(path)), arch)
    w.add_name(name)
    w.add_file_type(_FILE_TYPES[quant])
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    if arch == "qwen2vl":  # temporal, height, width sections of the head's rotary pairs (head_dim / 2 in all)
        pairs = head_dim // 2
        w.add_array(f"{arch}.rope.dimension_sections", [pairs - 2 * (pairs // 3), pairs // 3, pairs // 3, 0])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_chat_template(chat_template)
    if quant == "Q4_0":
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    _add(w, "token_embd.weight", _weights(rng, (n_vocab, n_embd), 1.0), quant)
    for i in range(n_layer):
        p = f"blk.{i}."
        _add(w, p + "attn_norm.weight", np.ones(n_embd, dtype=np.float32), quant)
        _add(w, p + "attn_q.weight", _weights(rng, (n_embd, n_embd)), quant)
        _add(w, p + "attn_k.weight", _weights(rng, (n_head_kv * head_dim, n_embd)), quant)
        _add(w, p + "attn_v.weight", _weights(rng, (n_head_kv * head_dim, n_embd)), quant)
        _add(w, p + "attn_output.weight", _weights(rng, (n_embd, n_embd)), quant)
        _add(w, p + "ffn_norm.weight", np.ones(n_embd, dtype=np.float32), quant)
        _add(w, p + "ffn_gate.weight", _weights(rng, (n_ff, n_embd)), quant)
        _add(w, p + "ffn_up.weight", _weights(rng, (n_ff, n_embd)), quant)
        _add(w, p + "ffn_down.weight", _weights(rng, (n_embd, n_ff)), quant)
    _add(w, "output_norm.weight", np.ones(n_embd, dtype=np.float32), quant)
    _add(w, "output.weight", _weights(rng, (n_vocab, n_embd), 0.5), quant)
    _write(w, path)
    return path


def write_tiny_lora(
    path: str | Path, n_layer: int = 2, n_embd: int = 64, rank: int = 4, alpha: float = 8.0, seed: int = 777
) -> Path:
    """A LoRA adapter (attn_q/attn_v of every layer) for ``write_tiny_llama``'s default shapes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(_tmp(path)), "llama")
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    for i in range(n_layer):
        for t in ("attn_q", "attn_v"):
            out = n_embd if t == "attn_q" else n_embd // 2  # GQA: attn_v has n_head_kv * head_dim rows
            # ggml shapes: lora_a [n_in, rank], lora_b [rank, n_out]; numpy arrays are row-major reversed.
            w.add_tensor(f"blk.{i}.{t}.weight.lora_a", _weights(rng, (rank, n_embd), 0.5))
            w.add_tensor(f"blk.{i}.{t}.weight.lora_b", _weights(rng, (out, rank), 0.5))
    _write(w, path)
    return path


def write_bench_llama(path: str | Path, quant: str = "Q4_0") -> Path:
    """A ~100M-parameter llama (768 wide, 12 layers) for benchmarks; same vocabulary as the tiny one."""
    return write_tiny_llama(
        path, quant=quant, n_layer=12, n_embd=768, n_head=12, n_head_kv=4, n_ff=3072, n_ctx_train=4096,
        name="bench-llama-100m",
    )


def _wordpiece_vocab() -> list[str]:
    """BERT WordPiece vocab in llama.cpp's stored form: word starts carry "▁", "##" continuations don't."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    seen = set(tokens)
    singles = [*string.ascii_lowercase, *string.digits, *_PUNCT]
    candidates = ["\u2581" + c for c in singles] + list(string.ascii_lowercase)
    candidates += ["\u2581" + w.lower() for w in _WORDS] + list(_SUFFIXES)
    for t in candidates:
        if t not in seen:
            seen.add(t)
            tokens.append(t)
    return tokens


def write_tiny_bert(
    path: str | Path,
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_ff: int = 128,
    n_ctx_train: int = 512,
    seed: int = 4321,
) -> Path:
    """Write a random-weight BERT embedding model (WordPiece vocab, mean pooling, non-causal attention)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens = _wordpiece_vocab()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)
    types = [TokenType.CONTROL] * 5 + [TokenType.NORMAL] * (n_vocab - 5)

    w = gguf.GGUFWriter(str(_tmp(path)), "bert")
    w.add_name("tiny-bert")
    w.add_file_type(LlamaFileType.ALL_F32)
    w.add_context_length(n_ctx_train)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("bert")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types([int(t) for t in types])
    w.add_token_type_count(2)
    w.add_pad_token_id(0)
    w.add_unk_token_id(1)
    w.add_bos_token_id(2)  # [CLS]
    w.add_sep_token_id(3)
    w.add_mask_token_id(4)
    w.add_add_bos_token(True)
    w.add_add_sep_token(True)

    def vec(value: float | None = None) -> np.ndarray:
        if value is None:
            return _weights(rng, (n_embd,), 0.02)
        return np.full(n_embd, value, dtype=np.float32)

    w.add_tensor("token_embd.weight", _weights(rng, (n_vocab, n_embd), 1.0))
    w.add_tensor("token_types.weight", _weights(rng, (2, n_embd), 0.1))
    w.add_tensor("position_embd.weight", _weights(rng, (n_ctx_train, n_embd), 0.1))
    w.add_tensor("token_embd_norm.weight", vec(1.0))
    w.add_tensor("token_embd_norm.bias", vec(0.0))
    for i in range(n_layer):
        p = f"blk.{i}."
        for t in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + t + ".weight", _weights(rng, (n_embd, n_embd)))
            w.add_tensor(p + t + ".bias", vec())
        w.add_tensor(p + "attn_output_norm.weight", vec(1.0))
        w.add_tensor(p + "attn_output_norm.bias", vec(0.0))
        w.add_tensor(p + "ffn_up.weight", _weights(rng, (n_ff, n_embd)))
        w.add_tensor(p + "ffn_up.bias", _weights(rng, (n_ff,), 0.02))
        w.add_tensor(p + "ffn_down.weight", _weights(rng, (n_embd, n_ff)))
        w.add_tensor(p + "ffn_down.bias", vec())
        w.add_tensor(p + "layer_output_norm.weight", vec(1.0))
        w.add_tensor(p + "layer_output_norm.bias", vec(0.0))
    _write(w, path)
    return path


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def _write(w: gguf.GGUFWriter, path: Path) -> None:
    """Written under a temporary name and renamed, so a cached model is never seen half-written."""
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    _tmp(path).replace(path)
