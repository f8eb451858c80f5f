"""Reading GGUF metadata safely: the model facts ``show``/``list``, templates and the memory planner need.

GGUF files come from users and registries, so every count, length, type and offset is checked against
the file before it is used: a truncated, foreign or hostile file gives
``BadRequest("invalid GGUF file: …")`` quickly, never a crash, a hang or a huge allocation.
``gguf.GGUFReader`` cannot promise that (it sizes numpy arrays from the file's own counts, and takes
~30 s on a 150k-token vocabulary), so this module walks the header, metadata and tensor index itself
(bounded reading in ``gguf_walk``), with ``gguf``'s constants (quantization block sizes, file types),
reading only the metadata region and never the tensor data.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    LlamaFileType,
)

from ollamalike.errors import BadRequest
from ollamalike.gguf_walk import (
    MAX_KEY_BYTES,
    SHOW_ARRAY_LIMIT,
    Cursor,
    InvalidGGUF,
    open_regular,
    read_value,
)
from ollamalike.jsontypes import JSONObject

SUPPORTED_VERSIONS = (2, 3)
MAX_KV_COUNT = 1 << 16  # real models carry tens of keys
MAX_TENSOR_COUNT = 1 << 16  # the largest MoE models have a few thousand tensors
MAX_DIMS = 4  # GGML_MAX_DIMS
EMBEDDING_ARCHITECTURES = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "jina-bert-v3", "modern-bert", "neo-bert", "t5encoder"}
)

_LAYER_RE = re.compile(r"^blk\.(\d+)\.")


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    type_name: str
    n_elements: int
    n_bytes: int
    offset: int  # absolute position of the data in the file


@dataclass
class GGUFInfo:
    version: int
    architecture: str
    parameter_count: int
    parameter_size: str
    file_type: str
    context_length: int | None
    embedding_length: int | None
    block_count: int | None
    head_count: int | None
    head_count_kv: int | None
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    is_embedding_model: bool
    model_info: JSONObject
    file_size: int
    alignment: int
    tensor_count: int
    tensor_bytes: int  # all tensor data
    layer_bytes: list[int] = field(default_factory=list)  # blk.N.* bytes, index N
    non_layer_bytes: int = 0  # token_embd, output, norms and anything not in a block
    output_bytes: int = 0  # output.weight (or token_embd when the output is tied to it)
    tensor_types: dict[str, int] = field(default_factory=dict)  # type name -> element count
    tensors: list[TensorInfo] = field(default_factory=list)  # the tensor index: only when read verbose

    @property
    def details(self) -> JSONObject:
        """Ollama's ``details`` object (without ``parent_model``, which the catalog knows)."""
        return {
            "format": "gguf",
            "family": self.architecture,
            "families": [self.architecture],
            "parameter_size": self.parameter_size,
            "quantization_level": self.file_type,
        }


def read_gguf_info(path: str | os.PathLike[str], verbose: bool = False) -> GGUFInfo:
    """Read and validate a GGUF file's metadata and tensor index; raises ``BadRequest`` when unusable.

    ``verbose`` keeps every array in ``model_info`` (``/api/show`` with ``verbose: true``); otherwise
    arrays longer than SHOW_ARRAY_LIMIT items are null there.
    """
    return _guarded(lambda: _parse(path, verbose))


def read_split_gguf_info(paths: Sequence[str | os.PathLike[str]], verbose: bool = False) -> GGUFInfo:
    """The info of a split GGUF's shards, in order, as one model: the first shard's metadata and every
    shard's tensors (what ``llama_model_load_from_splits`` loads); ``BadRequest`` when unusable."""

    def parse() -> GGUFInfo:
        version, kv, tokens, tensors, size = _parse_raw(paths[0], verbose)
        names = {t.name for t in tensors}
        for i, path in enumerate(paths[1:], start=1):
            _, shard_kv, _, more, more_size = _parse_raw(path, False)
            if shard_kv.get("split.no") != i or shard_kv.get("split.count") != len(paths):
                raise InvalidGGUF(f"shard {i + 1} of {len(paths)} is not split.no {i} of a {len(paths)}-way split")
            for t in more:
                if t.name in names:
                    raise InvalidGGUF(f"duplicate tensor {t.name!r} in shard {i + 1}")
                names.add(t.name)
            tensors += more
            size += more_size
        if kv.get("split.count") != len(paths) or kv.get("split.tensors.count") != len(tensors):
            raise InvalidGGUF(f"the first shard's split.count/split.tensors.count do not match the {len(paths)} shards")
        return _summarised(version, kv, tokens, tensors, size, verbose)

    return _guarded(parse)


def split_position(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """(split.no, split.count) of a shard of a split GGUF, None for any other file (or an unreadable one).
    A shard alone is no model (the later ones have no architecture), so this reads only its header."""
    try:
        _, kv, _, _, _ = _parse_raw(path, False)
    except Exception:  # not a GGUF, or a broken one: create's own read says why
        return None
    no, count = kv.get("split.no"), kv.get("split.count")
    if isinstance(no, int) and isinstance(count, int) and count > 1 and 0 <= no < count:
        return no, count
    return None


def _guarded(parse: Callable[[], GGUFInfo]) -> GGUFInfo:
    try:
        return parse()
    except InvalidGGUF as e:
        raise BadRequest(f"invalid GGUF file: {e}") from None
    except BadRequest:
        raise
    except OSError as e:
        raise BadRequest(f"invalid GGUF file: read error: {e.strerror or e}") from None
    except Exception as e:  # a file must never take the daemon down, whatever it contains
        raise BadRequest(f"invalid GGUF file: {type(e).__name__}: {e}") from None


def _parse(path: str | os.PathLike[str], verbose: bool) -> GGUFInfo:
    version, kv, tokens, tensors, size = _parse_raw(path, verbose)
    return _summarised(version, kv, tokens, tensors, size, verbose)


def _summarised(version: int, kv: dict[str, object], tokens: list[str] | None, tensors: list[TensorInfo],
                size: int, verbose: bool) -> GGUFInfo:
    info = _summarise(version, kv, tokens, tensors, size, _alignment(kv))
    if verbose:  # /api/show's "tensors"; left out otherwise, so the cached metadata stays small
        info.tensors = tensors
    return info


def _alignment(kv: dict[str, object]) -> int:
    value = kv.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    return value if isinstance(value, int) else GGUF_DEFAULT_ALIGNMENT  # checked while parsing


# (version, metadata, vocabulary tokens, tensors, file size) of one file, before the checks across them.
_Raw = tuple[int, dict[str, object], list[str] | None, list[TensorInfo], int]


def _parse_raw(path: str | os.PathLike[str], verbose: bool) -> _Raw:
    f, size = open_regular(path)
    with f:
        return _parse_cursor(Cursor(f, size), verbose)


def _parse_cursor(cur: Cursor, verbose: bool) -> _Raw:
    if cur.size < 24:
        raise InvalidGGUF(f"file is too small ({cur.size} bytes) to be a GGUF file")
    magic = cur.unpack("<I")
    if magic != GGUF_MAGIC:
        raise InvalidGGUF("not a GGUF file (bad magic)")
    version = cur.unpack("<I")
    if version not in SUPPORTED_VERSIONS:
        if version & 0xFFFF == 0 and (version >> 24) in SUPPORTED_VERSIONS:
            raise InvalidGGUF("big-endian GGUF files are not supported")
        raise InvalidGGUF(f"unsupported GGUF version {version} (supported: 2 and 3)")
    tensor_count = cur.unpack("<Q")
    kv_count = cur.unpack("<Q")
    # Lower bounds on the bytes each entry needs make absurd counts fail before any loop runs.
    if tensor_count > MAX_TENSOR_COUNT or tensor_count * 32 > cur.size:
        raise InvalidGGUF(f"tensor count {tensor_count} is impossible for a file of {cur.size} bytes")
    if kv_count > MAX_KV_COUNT or kv_count * 13 > cur.size:
        raise InvalidGGUF(f"metadata key count {kv_count} is impossible for a file of {cur.size} bytes")

    kv: dict[str, Any] = {}
    tokens: list[str] | None = None
    for _ in range(kv_count):
        key = cur.string(MAX_KEY_BYTES)
        if key in kv:
            raise InvalidGGUF(f"duplicate metadata key {key!r}")
        vtype = cur.unpack("<I")
        value = read_value(cur, vtype, key, keep=verbose or key == "tokenizer.ggml.tokens")
        if key == "tokenizer.ggml.tokens" and isinstance(value, list):
            tokens = value
            value = value if verbose or len(value) <= SHOW_ARRAY_LIMIT else None
        kv[key] = value

    alignment = kv.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or isinstance(alignment, bool) or alignment <= 0 or alignment & (alignment - 1):
        raise InvalidGGUF(f"alignment {alignment!r} is not a positive power of two")

    raw_tensors = [_read_tensor_info(cur) for _ in range(tensor_count)]
    data_start = -(-cur.pos // alignment) * alignment
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    for name, shape, qtype, n_elements, n_bytes, rel in raw_tensors:
        if name in names:
            raise InvalidGGUF(f"duplicate tensor {name!r}")
        names.add(name)
        if rel % alignment:
            raise InvalidGGUF(f"tensor {name!r} data offset {rel} is not aligned to {alignment}")
        start = data_start + rel
        if start + n_bytes > cur.size:
            raise InvalidGGUF(f"tensor {name!r} data lies outside the file")
        tensors.append(TensorInfo(name, shape, qtype.name, n_elements, n_bytes, start))
    _check_no_overlap(tensors)
    return version, kv, tokens, tensors, cur.size


def _check_no_overlap(tensors: list[TensorInfo]) -> None:
    """Two tensors sharing bytes would make the tensor byte counts (and so the memory plan) a lie."""
    end, prev = 0, ""
    for t in sorted(tensors, key=lambda t: t.offset):
        if t.offset < end:
            raise InvalidGGUF(f"tensor {t.name!r} overlaps tensor {prev!r}")
        end, prev = t.offset + t.n_bytes, t.name


def _read_tensor_info(cur: Cursor) -> tuple[str, tuple[int, ...], GGMLQuantizationType, int, int, int]:
    name = cur.string(MAX_KEY_BYTES)
    n_dims = cur.unpack("<I")
    if not 1 <= n_dims <= MAX_DIMS:
        raise InvalidGGUF(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
    shape = tuple(cur.unpack("<Q") for _ in range(n_dims))
    if 0 in shape:
        raise InvalidGGUF(f"tensor {name!r} has an empty dimension in shape {list(shape)}")
    type_id = cur.unpack("<I")
    rel = cur.unpack("<Q")
    try:
        qtype = GGMLQuantizationType(type_id)
        block, type_size = GGML_QUANT_SIZES[qtype]
    except (ValueError, KeyError):
        raise InvalidGGUF(f"tensor {name!r} has unknown type {type_id}") from None
    n_elements = 1
    for dim in shape:
        n_elements *= dim
    if n_elements >= 1 << 62:
        raise InvalidGGUF(f"tensor {name!r} shape {list(shape)} is too large")
    if shape[0] % block:
        raise InvalidGGUF(f"tensor {name!r} row of {shape[0]} is not a multiple of the {qtype.name} block size {block}")
    return name, shape, qtype, n_elements, n_elements // block * type_size, rel


def _summarise(
    version: int, kv: dict[str, Any], tokens: list[str] | None, tensors: list[TensorInfo], size: int, alignment: int
) -> GGUFInfo:
    arch = kv.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidGGUF("general.architecture is missing")

    def arch_int(name: str) -> int | None:
        value = kv.get(f"{arch}.{name}")
        if isinstance(value, list):  # per-layer values (e.g. head counts that vary by layer)
            value = max((v for v in value if isinstance(v, int)), default=None)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    parameter_count = sum(t.n_elements for t in tensors)
    if not parameter_count and isinstance(kv.get("general.parameter_count"), int):
        parameter_count = kv["general.parameter_count"]
    model_info = dict(kv)
    model_info["general.parameter_count"] = parameter_count

    layer_bytes: dict[int, int] = {}
    non_layer = 0
    tensor_types: dict[str, int] = {}
    by_name: dict[str, TensorInfo] = {}
    for t in tensors:
        by_name[t.name] = t
        tensor_types[t.type_name] = tensor_types.get(t.type_name, 0) + t.n_elements
        m = _LAYER_RE.match(t.name)
        if m and int(m.group(1)) < 1 << 20:
            layer_bytes[int(m.group(1))] = layer_bytes.get(int(m.group(1)), 0) + t.n_bytes
        else:
            non_layer += t.n_bytes
    n_layers = max(layer_bytes) + 1 if layer_bytes else 0
    output = by_name.get("output.weight") or by_name.get("token_embd.weight")

    head_count = arch_int("attention.head_count")
    head_count_kv = arch_int("attention.head_count_kv")
    _check_hyperparameters(arch, arch_int, n_layers, tensors)
    pooling = kv.get(f"{arch}.pooling_type")
    return GGUFInfo(
        version=version,
        architecture=arch,
        parameter_count=parameter_count,
        parameter_size=format_parameter_size(parameter_count),
        file_type=_file_type(kv.get("general.file_type"), tensors),
        context_length=arch_int("context_length"),
        embedding_length=arch_int("embedding_length"),
        block_count=arch_int("block_count"),
        head_count=head_count,
        head_count_kv=head_count_kv if head_count_kv is not None else head_count,
        chat_template=kv.get("tokenizer.chat_template") if isinstance(kv.get("tokenizer.chat_template"), str) else None,
        bos_token=_token_text(tokens, kv.get("tokenizer.ggml.bos_token_id")),
        eos_token=_token_text(tokens, kv.get("tokenizer.ggml.eos_token_id")),
        is_embedding_model=arch in EMBEDDING_ARCHITECTURES or (isinstance(pooling, int) and pooling > 0),
        model_info=model_info,
        file_size=size,
        alignment=alignment,
        tensor_count=len(tensors),
        tensor_bytes=sum(t.n_bytes for t in tensors),
        layer_bytes=[layer_bytes.get(i, 0) for i in range(n_layers)],
        non_layer_bytes=non_layer,
        output_bytes=output.n_bytes if output else 0,
        tensor_types=tensor_types,
    )


MAX_HEADS = 1 << 16  # the largest models have a few hundred attention heads
MAX_DIMENSION = 1 << 24  # embedding and feed-forward widths; context lengths are checked against MAX_CONTEXT
MAX_CONTEXT = 1 << 32


def _check_hyperparameters(arch: str, arch_int: Any, n_layers: int, tensors: list[TensorInfo]) -> None:
    """The sizes the memory planner multiplies must agree with the tensors actually in the file: a
    1 KB file claiming 2^26 layers or 0 heads is refused here, not planned for (issue 21 item 1)."""
    block_count = arch_int("block_count")
    if block_count is not None and block_count > n_layers:
        raise InvalidGGUF(f"{arch}.block_count is {block_count} but the file has tensors for {n_layers} layers")
    has_attention = any(".attn_" in t.name for t in tensors)
    for key in ("attention.head_count", "attention.head_count_kv"):
        value = arch_int(key)
        if value is None:
            continue
        if value > MAX_HEADS or (value <= 0 and has_attention and key == "attention.head_count"):
            raise InvalidGGUF(f"{arch}.{key} is {value} (1 to {MAX_HEADS} allowed)")
    # (key, limit, whether 0 is meaningless): some architectures write 0 for sizes they do not use.
    for key, limit, positive in (("embedding_length", MAX_DIMENSION, True), ("context_length", MAX_CONTEXT, True),
                                 ("feed_forward_length", MAX_DIMENSION, False),
                                 ("attention.key_length", MAX_DIMENSION, False),
                                 ("attention.value_length", MAX_DIMENSION, False),
                                 ("vocab_size", MAX_DIMENSION, False)):
        value = arch_int(key)
        if value is not None and (value > limit or value < 0 or (positive and value == 0)):
            raise InvalidGGUF(f"{arch}.{key} is {value} ({1 if positive else 0} to {limit} allowed)")


def _token_text(tokens: list[str] | None, token_id: Any) -> str | None:
    if tokens is None or not isinstance(token_id, int) or isinstance(token_id, bool):
        return None
    return tokens[token_id] if 0 <= token_id < len(tokens) else None


def _file_type(value: Any, tensors: list[TensorInfo]) -> str:
    """Ollama's name for general.file_type ("Q4_K_M", "F16"); else the type holding most weight elements."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            name = LlamaFileType(value).name
        except ValueError:
            name = ""
        if name and name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    counts: dict[str, int] = {}
    for t in tensors:
        if len(t.shape) >= 2 and t.name.endswith(".weight"):
            counts[t.type_name] = counts.get(t.type_name, 0) + t.n_elements
    if not counts:
        for t in tensors:
            counts[t.type_name] = counts.get(t.type_name, 0) + t.n_elements
    return max(counts, key=lambda k: counts[k]) if counts else "unknown"


def format_parameter_size(count: int) -> str:
    """Ollama's short parameter size: "8.0B", "1.2B", "137M", "22K", "999"."""
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.0f}M"
    if count >= 1_000:
        return f"{count / 1e3:.0f}K"
    return str(count)
