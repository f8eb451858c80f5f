"""Converting a checkpoint directory to one GGUF file.

Everything is checked before the output is opened: the directory and its safetensors headers
(``source``), the architecture and its config (``arch``), the tokenizer (``vocab``: tokenizer.json;
``spm``: a SentencePiece tokenizer.model when there is no tokenizer.json), and every tensor:
its GGUF name (``gguf.TensorNameMap``), its block index and its shape against config.json. Then the
header and tensor table are written and the tensors are streamed in one at a time (memory: one
tensor), in a fixed order (sorted by GGUF name within fixed groups), with no timestamps or paths in
the metadata, so the same directory always gives the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np

from ollamalike.errors import BadRequest
from ollamalike.library.convert.arch import Arch, Hparams, select
from ollamalike.library.convert.source import Checkpoint, TensorRef, open_checkpoint
from ollamalike.library.convert.spm import MODEL_FILE as SPM_FILE
from ollamalike.library.convert.spm import read_spm_vocab
from ollamalike.library.convert.vocab import Vocab, read_vocab

OUT_TYPES = {
    "F32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
    "F16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
    "BF16": (gguf.GGMLQuantizationType.BF16, gguf.LlamaFileType.MOSTLY_BF16),
}
# Tensors llama.cpp wants in F32 whatever the file type (as its own converter writes them).
_F32_KINDS = (gguf.MODEL_TENSOR.POS_EMBD, gguf.MODEL_TENSOR.TOKEN_TYPES)
_BLOCK = re.compile(r"^blk\.(\d+)\.")

Progress = Callable[[str], None]


@dataclass
class _Planned:
    name: str
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType
    load: Callable[[], np.ndarray]


@dataclass(frozen=True)
class Converted:
    architecture: str
    tensor_count: int
    file_type: str


def _map_name(tmap: gguf.TensorNameMap, name: str) -> str | None:
    return tmap.get_name(name, try_suffixes=(".weight", ".bias"))


def _qtype(name: str, ndim: int, out: gguf.GGMLQuantizationType, f32_names: set[str]) -> gguf.GGMLQuantizationType:
    if ndim <= 1 or name.endswith("_norm.weight") or not name.endswith(".weight") or name in f32_names:
        return gguf.GGMLQuantizationType.F32
    return out


def _f32_names(arch: gguf.MODEL_ARCH) -> set[str]:
    names = gguf.TENSOR_NAMES
    return {names[k] + ".weight" for k in _F32_KINDS}


def _encode(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    data = np.ascontiguousarray(data, dtype=np.float32)
    if qtype == gguf.GGMLQuantizationType.F32:
        return data
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data, qtype)


def _loader(ref: TensorRef, fix: Callable[[np.ndarray], np.ndarray]) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        data = ref.load()
        if data.dtype.kind != "f":
            raise BadRequest(f"tensor {ref.name!r} is {ref.dtype}; only float tensors can be converted")
        return fix(data.astype(np.float32, copy=False))

    return load


def _constant(data: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: data


def _check_shape(gguf_name: str, hf_name: str, shape: tuple[int, ...], expected: dict[str, tuple[int, ...]]) -> None:
    key = _BLOCK.sub("blk.*.", gguf_name)
    want = expected.get(key)
    if want is not None and tuple(shape) != want:
        raise BadRequest(f"tensor {hf_name!r} has shape {list(shape)} but config.json implies {list(want)}")


def plan(ckpt: Checkpoint, arch: Arch, hp: Hparams, out: gguf.GGMLQuantizationType) -> list[_Planned]:
    """Every output tensor, named, shape-checked and typed; nothing is loaded yet."""
    n_layer = hp.n_layer
    tmap = gguf.get_tensor_name_map(arch.arch, n_layer)
    expected = arch.shapes(hp)
    f32 = _f32_names(arch.arch)
    planned: dict[str, _Planned] = {}
    for hf_name in sorted(ckpt.tensors):
        if arch.skip(hf_name):
            continue
        ref = ckpt.tensors[hf_name]
        name = arch.rename(hf_name)
        block = next((int(part) for part in name.split(".") if part.isdecimal()), None)
        if block is not None and block >= n_layer:
            raise BadRequest(f"tensor {hf_name!r} is in layer {block} but config.json has {n_layer} layers")
        gguf_name = _map_name(tmap, name)
        if gguf_name is None:
            raise BadRequest(f"cannot map tensor {hf_name!r} of architecture {arch.name} to a GGUF tensor")
        if (m := _BLOCK.match(gguf_name)) and int(m.group(1)) >= n_layer:
            raise BadRequest(f"tensor {hf_name!r} is in layer {m.group(1)} but config.json has {n_layer} layers")
        if gguf_name in planned:
            raise BadRequest(f"tensors map twice to {gguf_name!r} (one of them is {hf_name!r})")
        _check_shape(gguf_name, hf_name, ref.shape, expected)
        if ref.dtype not in ("F32", "F16", "BF16", "F64"):
            raise BadRequest(f"tensor {hf_name!r} is {ref.dtype}; only float tensors can be converted")

        def fix(data: np.ndarray, _n: str = name) -> np.ndarray:
            return arch.fix(_n, data, hp)

        qtype = _qtype(gguf_name, len(ref.shape), out, f32)
        planned[gguf_name] = _Planned(gguf_name, ref.shape, qtype, _loader(ref, fix))
    for key in expected:
        names = [key.replace("*", str(i)) for i in range(n_layer)] if "*" in key else [key]
        for n in names:
            if n not in planned:
                raise BadRequest(f"the checkpoint has no tensor for {n!r} ({arch.name})")
    for name, data in arch.extra(hp).items():
        planned[name] = _Planned(name, data.shape, gguf.GGMLQuantizationType.F32, _constant(data))
    return [planned[k] for k in sorted(planned, key=_order)]


def _order(name: str) -> tuple[int, int, str]:
    """token_embd and other globals first, then blocks in numeric order, output last (llama.cpp's order)."""
    if m := _BLOCK.match(name):
        return (1, int(m.group(1)), name)
    return (2 if name.startswith("output") else 0, 0, name)


def _nbytes(shape: tuple[int, ...], qtype: gguf.GGMLQuantizationType) -> tuple[tuple[int, ...], np.dtype, int]:
    """Shape, numpy dtype and size of a tensor as GGUFWriter's table wants it."""
    count = int(np.prod(shape)) if shape else 1
    if qtype == gguf.GGMLQuantizationType.F32:
        return shape, np.dtype(np.float32), count * 4
    if qtype == gguf.GGMLQuantizationType.F16:
        return shape, np.dtype(np.float16), count * 2
    byte_shape = gguf.quant_shape_to_byte_shape(shape, qtype)
    return byte_shape, np.dtype(np.uint8), int(np.prod(byte_shape))


@dataclass
class Prepared:
    """A checked checkpoint, ready to be written: every input check has passed."""

    arch: Arch
    hp: Hparams
    ckpt: Checkpoint
    tensors: list[_Planned]
    vocab: Vocab
    out_type: str

    def write(self, out_path: Path, progress: Progress | None = None) -> Converted:
        qtype, ftype = OUT_TYPES[self.out_type]
        w = gguf.GGUFWriter(out_path, self.arch.name)
        w.add_type(gguf.GGUFType.MODEL)
        self.arch.params(w, self.hp, self.ckpt)
        w.add_file_type(int(ftype))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        self.vocab.write(w)
        for t in self.tensors:
            shape, dtype, nbytes = _nbytes(t.shape, t.qtype)
            w.add_tensor_info(t.name, shape, dtype, nbytes, raw_dtype=t.qtype)
        try:
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for i, t in enumerate(self.tensors):
                data = _encode(t.load(), t.qtype)
                if data.shape != _nbytes(t.shape, t.qtype)[0]:
                    raise BadRequest(f"tensor {t.name!r} changed shape during conversion")
                w.write_tensor_data(data)
                if progress is not None:
                    progress(f"converting model: tensor {i + 1}/{len(self.tensors)}")
        finally:
            w.close()
        return Converted(self.arch.name, len(self.tensors), self.out_type)


def prepare(root: Path, out_type: str = "F16", trusted: bool = False) -> Prepared:
    """Check the checkpoint directory ``root`` (BadRequest naming the problem); nothing is written.

    ``trusted``: ``root`` is a directory of links to store blobs the daemon built itself.
    """
    if out_type.upper() not in OUT_TYPES:
        raise BadRequest(f"unsupported output type {out_type!r} (supported: {', '.join(OUT_TYPES)})")
    qtype, _ = OUT_TYPES[out_type.upper()]
    ckpt = open_checkpoint(root, trusted)
    arch = select(ckpt.config)
    hp = Hparams(ckpt.config)
    tensors = plan(ckpt, arch, hp, qtype)
    n_vocab = int(hp.get("vocab_size", default=0)) or None
    spm_only = not ckpt.has("tokenizer.json") and ckpt.has(SPM_FILE)
    vocab = read_spm_vocab(ckpt, n_vocab) if spm_only else read_vocab(ckpt, n_vocab)
    return Prepared(arch, hp, ckpt, tensors, vocab, out_type.upper())


def convert(
    root: Path, out_path: Path, out_type: str = "F16", progress: Progress | None = None, trusted: bool = False
) -> Converted:
    """Check ``root`` and convert it to the GGUF ``out_path`` (``prepare`` then ``write``)."""
    return prepare(root, out_type, trusted).write(out_path, progress)
