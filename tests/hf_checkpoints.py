"""Tiny random-weight Hugging Face checkpoints for the converter tests.

``write_checkpoint(kind, directory)`` writes config.json, safetensors weights (F32, F16 or BF16;
single or sharded with an index), a real tokenizer.json trained with the ``tokenizers`` package on a
small corpus (byte-level BPE like Llama 3 / Qwen 2, or byte-fallback BPE like SentencePiece
exports), tokenizer_config.json with a chat template, and generation_config.json.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ollamalike.library.convert.vocab import LLAMA3_REGEX, QWEN2_REGEX

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello there, how are you today?",
    "A man is eating food. A man is riding a horse.",
    "Tiny models answer in tiny sentences, 123 4567.",
    "def add(a, b):\n    return a + b\n",
] * 20
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Kind:
    arch: str
    model_type: str
    tokenizer: str  # "llama3" | "qwen2" | "spm" | "unigram"
    gguf_arch: str
    extra: dict[str, Any]
    tied: bool = False
    qkv_bias: bool = False
    qk_norm: bool = False
    gemma_norms: bool = False
    fused: bool = False  # phi3: qkv_proj and gate_up_proj


KINDS: dict[str, Kind] = {
    "llama": Kind("LlamaForCausalLM", "llama", "llama3", "llama", {
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                         "original_max_position_embeddings": 8192},
    }),
    "mistral": Kind("MistralForCausalLM", "mistral", "spm", "llama", {"rope_theta": 10000.0, "sliding_window": None}),
    "qwen2": Kind("Qwen2ForCausalLM", "qwen2", "qwen2", "qwen2", {"rope_theta": 1000000.0}, tied=True, qkv_bias=True),
    "qwen3": Kind("Qwen3ForCausalLM", "qwen3", "qwen2", "qwen3", {"rope_theta": 1000000.0, "head_dim": 16},
                  tied=True, qk_norm=True),
    "gemma2": Kind("Gemma2ForCausalLM", "gemma2", "spm", "gemma2", {
        "head_dim": 16, "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "sliding_window": 64,
        "query_pre_attn_scalar": 16, "hidden_activation": "gelu_pytorch_tanh",
    }, tied=True, gemma_norms=True),
    "gemma3": Kind("Gemma3ForCausalLM", "gemma3_text", "spm", "gemma3", {
        "head_dim": 16, "sliding_window": 64, "rope_local_base_freq": 10000.0, "rope_theta": 1000000.0,
        "query_pre_attn_scalar": 16, "hidden_activation": "gelu_pytorch_tanh",
    }, tied=True, qk_norm=True, gemma_norms=True),
    "phi3": Kind("Phi3ForCausalLM", "phi3", "spm", "phi3", {"rope_theta": 10000.0, "sliding_window": 64}, fused=True),
}
HIDDEN, HEADS, KV_HEADS, HEAD_DIM, LAYERS, FF = 64, 4, 2, 16, 2, 128
SPECIALS = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]


def _byte_level(regex: str) -> Any:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(ignore_merges=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIALS[1:], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def _spm() -> Any:
    """A SentencePiece-style BPE (byte fallback, ``▁`` for spaces) as transformers exports them."""
    from tokenizers import Tokenizer, decoders, models, normalizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    tok.decoder = decoders.Sequence([
        decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0),
    ])
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    # The byte tokens <0x00>..<0xFF> come right after the specials, as in SentencePiece vocabularies.
    raw = json.loads(tok.to_str())
    vocab: dict[str, int] = raw["model"]["vocab"]
    ordered = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    specials = [t for t in ordered if t in SPECIALS]
    rest = [t for t in ordered if t not in SPECIALS]
    tokens = specials + [f"<0x{b:02X}>" for b in range(256)] + rest
    raw["model"]["vocab"] = {t: i for i, t in enumerate(tokens)}
    for added in raw["added_tokens"]:
        added["id"] = raw["model"]["vocab"][added["content"]]
    return Tokenizer.from_str(json.dumps(raw))


def _unigram() -> Any:
    """A SentencePiece Unigram tokenizer (``▁`` word starts, log-probability scores), as T5/ALBERT-style exports."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(vocab_size=300, special_tokens=SPECIALS, unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    # The trainer's scores differ in the last bits from run to run and so does the order of pieces with
    # equal scores; rounded and sorted, every run gives the same checkpoint.
    raw = json.loads(tok.to_str())
    pieces: list[list[Any]] = raw["model"]["vocab"]
    specials = [p for p in pieces if p[0] in SPECIALS]
    rest = sorted(([p, round(score, 6)] for p, score in pieces if p not in SPECIALS), key=lambda p: (-p[1], p[0]))
    raw["model"]["vocab"] = specials + rest
    raw["model"]["unk_id"] = [p[0] for p in raw["model"]["vocab"]].index("<unk>")
    for added in raw["added_tokens"]:
        added["id"] = [p[0] for p in raw["model"]["vocab"]].index(added["content"])
    return Tokenizer.from_str(json.dumps(raw))


def tokenizer_for(kind: Kind) -> Any:
    if kind.tokenizer == "unigram":
        return _unigram()
    if kind.tokenizer == "llama3":
        return _byte_level(LLAMA3_REGEX)
    if kind.tokenizer == "qwen2":
        return _byte_level(QWEN2_REGEX)
    return _spm()


def _tensors(kind: Kind, n_vocab: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    e, q, kv = HIDDEN, HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        base = 0.0 if kind.gemma_norms else 1.0  # Gemma stores w for (1 + w)
        return (base + rng.standard_normal(n) * 0.01).astype(np.float32)

    out = {"model.embed_tokens.weight": w(n_vocab, e), "model.norm.weight": norm(e)}
    if not kind.tied:
        out["lm_head.weight"] = w(n_vocab, e)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        if kind.fused:
            out[p + "self_attn.qkv_proj.weight"] = w(q + 2 * kv, e)
            out[p + "mlp.gate_up_proj.weight"] = w(2 * FF, e)
        else:
            out[p + "self_attn.q_proj.weight"] = w(q, e)
            out[p + "self_attn.k_proj.weight"] = w(kv, e)
            out[p + "self_attn.v_proj.weight"] = w(kv, e)
            out[p + "mlp.gate_proj.weight"] = w(FF, e)
            out[p + "mlp.up_proj.weight"] = w(FF, e)
        if kind.qkv_bias:
            out[p + "self_attn.q_proj.bias"] = w(q)
            out[p + "self_attn.k_proj.bias"] = w(kv)
            out[p + "self_attn.v_proj.bias"] = w(kv)
        if kind.qk_norm:
            out[p + "self_attn.q_norm.weight"] = norm(HEAD_DIM)
            out[p + "self_attn.k_norm.weight"] = norm(HEAD_DIM)
        out[p + "self_attn.o_proj.weight"] = w(e, q)
        out[p + "mlp.down_proj.weight"] = w(e, FF)
        out[p + "input_layernorm.weight"] = norm(e)
        out[p + "post_attention_layernorm.weight"] = norm(e)
        if kind.gemma_norms:
            out[p + "pre_feedforward_layernorm.weight"] = norm(e)
            out[p + "post_feedforward_layernorm.weight"] = norm(e)
    return out


_ST_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": (None, 2)}


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str = "F32") -> None:
    """A safetensors file written by hand (numpy has no bfloat16, so the library's writer cannot do BF16)."""
    header: dict[str, Any] = {}
    blobs: list[bytes] = []
    offset = 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype=np.float32)
        if dtype == "BF16":
            data = (arr.view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            data = arr.astype(_ST_DTYPES[dtype][0]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def write_checkpoint(name: str, directory: Path, dtype: str = "F32", shards: int = 1, seed: int = 0,
                     tokenizer: str | None = None, vocab_size: int | None = None) -> Path:
    """Write the tiny ``name`` checkpoint into ``directory`` (``tokenizer``: another kind of tokenizer;
    ``vocab_size``: embedding rows for a tokenizer the caller writes itself); returns it."""
    kind = KINDS[name] if tokenizer is None else replace(KINDS[name], tokenizer=tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    tok = tokenizer_for(kind)
    n_vocab = vocab_size or tok.get_vocab_size(with_added_tokens=True)
    config = {
        "architectures": [kind.arch], "model_type": kind.model_type, "hidden_size": HIDDEN,
        "intermediate_size": FF, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
        "num_hidden_layers": LAYERS, "vocab_size": n_vocab, "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6, "tie_word_embeddings": kind.tied, "torch_dtype": "float32",
        "bos_token_id": tok.token_to_id("<s>"), "eos_token_id": tok.token_to_id("</s>"), **kind.extra,
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>" if kind.tokenizer in ("spm", "unigram") else None,
        "add_bos_token": kind.tokenizer in ("spm", "unigram"), "chat_template": CHAT_TEMPLATE,
        # transformers' Qwen2 tokenizer class would add an <|endoftext|> of its own (llama.cpp's converter loads it).
        "tokenizer_class": "PreTrainedTokenizerFast",
    }))
    (directory / "generation_config.json").write_text(json.dumps({
        "bos_token_id": tok.token_to_id("<s>"), "eos_token_id": [tok.token_to_id("</s>"), tok.token_to_id("<|im_end|>")],
    }))
    tensors = _tensors(kind, n_vocab, np.random.default_rng(seed))
    names = sorted(tensors)
    if shards == 1:
        write_safetensors(directory / "model.safetensors", tensors, dtype)
    else:
        weight_map = {}
        for s in range(shards):
            part = names[s::shards]
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            write_safetensors(directory / fname, {n: tensors[n] for n in part}, dtype)
            weight_map.update({n: fname for n in part})
        (directory / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return directory


def expected_tensors(name: str, n_vocab: int) -> dict[str, tuple[int, ...]]:
    """GGUF tensor name -> numpy shape that llama.cpp expects for the tiny ``name`` checkpoint."""
    kind = KINDS[name]
    e, q, kv = HIDDEN, HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    out: dict[str, tuple[int, ...]] = {"token_embd.weight": (n_vocab, e), "output_norm.weight": (e,)}
    if not kind.tied:
        out["output.weight"] = (n_vocab, e)
    if name == "llama":
        out["rope_freqs.weight"] = (HEAD_DIM // 2,)
    for i in range(LAYERS):
        b = f"blk.{i}."
        if kind.fused:
            out[b + "attn_qkv.weight"] = (q + 2 * kv, e)
            out[b + "ffn_up.weight"] = (2 * FF, e)
        else:
            out.update({b + "attn_q.weight": (q, e), b + "attn_k.weight": (kv, e), b + "attn_v.weight": (kv, e),
                        b + "ffn_gate.weight": (FF, e), b + "ffn_up.weight": (FF, e)})
        if kind.qkv_bias:
            out.update({b + "attn_q.bias": (q,), b + "attn_k.bias": (kv,), b + "attn_v.bias": (kv,)})
        if kind.qk_norm:
            out.update({b + "attn_q_norm.weight": (HEAD_DIM,), b + "attn_k_norm.weight": (HEAD_DIM,)})
        out.update({b + "attn_output.weight": (e, q), b + "ffn_down.weight": (e, FF), b + "attn_norm.weight": (e,)})
        if kind.gemma_norms:
            out.update({b + "post_attention_norm.weight": (e,), b + "ffn_norm.weight": (e,),
                        b + "post_ffw_norm.weight": (e,)})
        else:
            out[b + "ffn_norm.weight"] = (e,)
    return out


def _wordpiece() -> Any:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # Written out rather than trained: the WordPiece trainer breaks ties between equally frequent pieces
    # in hash order, so each run would learn another vocabulary and the checkpoint would differ.
    words = {w for line in CORPUS for w, _ in tok.pre_tokenizer.pre_tokenize_str(tok.normalizer.normalize_str(line))}
    chars = sorted({c for w in words for c in w})
    learnt = sorted(words | set(chars) | {"##" + c for c in chars} | {"##" + w[1:] for w in words if len(w) > 2})
    tok.model = models.WordPiece({t: i for i, t in enumerate(specials + learnt)}, unk_token="[UNK]")
    tok.add_special_tokens(specials)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return tok


def write_encoder(name: str, directory: Path, seed: int = 0) -> Path:
    """A tiny sentence-transformers style ``bert`` or ``nomic-bert`` checkpoint with mean pooling."""
    directory.mkdir(parents=True, exist_ok=True)
    tok = _wordpiece()
    n_vocab = tok.get_vocab_size(with_added_tokens=True)
    rng = np.random.default_rng(seed)
    e, ff = HIDDEN, FF

    def w(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    def ones(n: int) -> np.ndarray:
        return (1 + rng.standard_normal(n) * 0.01).astype(np.float32)

    t: dict[str, np.ndarray] = {"embeddings.word_embeddings.weight": w(n_vocab, e),
                                "embeddings.token_type_embeddings.weight": w(2, e)}
    if name == "bert":
        config = {"architectures": ["BertModel"], "model_type": "bert", "hidden_size": e, "intermediate_size": ff,
                  "num_attention_heads": HEADS, "num_hidden_layers": LAYERS, "vocab_size": n_vocab,
                  "max_position_embeddings": 128, "type_vocab_size": 2, "layer_norm_eps": 1e-12}
        t.update({"embeddings.position_embeddings.weight": w(128, e), "embeddings.LayerNorm.weight": ones(e),
                  "embeddings.LayerNorm.bias": w(e), "embeddings.position_ids": np.arange(128, dtype=np.float32)[None]})
        for i in range(LAYERS):
            p = f"encoder.layer.{i}."
            for m in ("query", "key", "value"):
                t[p + f"attention.self.{m}.weight"], t[p + f"attention.self.{m}.bias"] = w(e, e), w(e)
            t[p + "attention.output.dense.weight"], t[p + "attention.output.dense.bias"] = w(e, e), w(e)
            t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"] = ones(e), w(e)
            t[p + "intermediate.dense.weight"], t[p + "intermediate.dense.bias"] = w(ff, e), w(ff)
            t[p + "output.dense.weight"], t[p + "output.dense.bias"] = w(e, ff), w(e)
            t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"] = ones(e), w(e)
        t["pooler.dense.weight"], t["pooler.dense.bias"] = w(e, e), w(e)
    else:
        config = {"architectures": ["NomicBertModel"], "model_type": "nomic_bert", "n_embd": e, "n_inner": ff,
                  "n_head": HEADS, "n_layer": LAYERS, "vocab_size": n_vocab, "n_positions": 8192,
                  "max_trained_positions": 2048, "type_vocab_size": 2, "layer_norm_epsilon": 1e-12,
                  "rotary_emb_base": 1000, "activation_function": "swiglu", "causal": False, "prenorm": False}
        t.update({"emb_ln.weight": ones(e), "emb_ln.bias": w(e)})
        for i in range(LAYERS):
            p = f"encoder.layers.{i}."
            t[p + "attn.Wqkv.weight"], t[p + "attn.out_proj.weight"] = w(3 * e, e), w(e, e)
            t[p + "mlp.fc11.weight"], t[p + "mlp.fc12.weight"], t[p + "mlp.fc2.weight"] = w(ff, e), w(ff, e), w(e, ff)
            t[p + "norm1.weight"], t[p + "norm1.bias"] = ones(e), w(e)
            t[p + "norm2.weight"], t[p + "norm2.bias"] = ones(e), w(e)
    (directory / "config.json").write_text(json.dumps(config))
    tok.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({
        "cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]", "mask_token": "[MASK]",
    }))
    (directory / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (directory / "1_Pooling").mkdir(exist_ok=True)
    (directory / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    write_safetensors(directory / "model.safetensors", t)
    return directory
