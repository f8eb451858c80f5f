"""Converting a PEFT LoRA adapter directory to a GGUF LoRA adapter (``ADAPTER ./lora-dir`` in create).

A PEFT directory holds ``adapter_config.json`` (rank ``r``, ``lora_alpha``, ``target_modules``) and
``adapter_model.safetensors`` (``base_model.model.<module>.lora_A.weight`` of shape ``(r, in)`` and
``...lora_B.weight`` of shape ``(out, r)`` per adapted linear layer). llama.cpp's adapter GGUF has
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha`` and, per adapted
tensor ``<gguf name>``, ``<gguf name>.lora_a`` / ``.lora_b`` with the same numpy shapes; it scales
each product by ``alpha / r`` as PEFT does.

An adapter has no hyperparameters of its own, so it is checked against its base model
(``LoraBase``: the architecture, head counts and tensor shapes of the base GGUF): module names are
mapped with the base architecture's ``gguf.TensorNameMap`` (the same mapping as the model
converter), Llama's q/k row permutation is applied to B (the rows of ``B @ A`` are B's rows), and
every pair must fit the base tensor it adapts. Anything that does not fit is a ``BadRequest``
naming it, before anything is written.

BERT and nomic-bert adapters (embedding models) convert like the decoders'; pairs on the modules
the model converter drops (BERT's pooler and MLM head) are left out, as the embeddings never use
them. Modules PEFT saves whole (``modules_to_save``, ``save_embedding_layers``) are refused with the
advice to merge: llama.cpp's LoRA adds ``B @ A`` to a base tensor and cannot replace one.
Embedding-layer LoRAs (``lora_embedding_A/B``; llama.cpp's token-embedding LoRA stores them
transposed) are not converted yet and get the same advice.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import numpy.typing as npt

from ollamalike.errors import BadRequest
from ollamalike.library.convert.arch import ARCHITECTURES, Arch, Hparams, select
from ollamalike.library.convert.source import TensorRef, check_links, read_json, tensor_table

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
_PAIR = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<half>[AB])\.weight$")
# A whole module saved beside the pairs (modules_to_save, save_embedding_layers): PEFT writes it as
# ``base_model.model.<module>.weight`` (older versions keep ``.modules_to_save.<adapter>`` inside).
_WHOLE = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+?)(?:\.modules_to_save\.[^.]+)?\.(?:weight|bias)$")
_BLOCK = re.compile(r"^blk\.(\d+)\.")
_OUT = gguf.GGMLQuantizationType.F16  # llama.cpp's converter writes adapters in F16 by default
Progress = Callable[[str], None]
Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LoraBase:
    """What an adapter is checked against: the base model's architecture and tensor shapes (numpy order)."""

    arch: str
    n_head: int
    n_head_kv: int
    shapes: dict[str, tuple[int, ...]]

    @classmethod
    def from_gguf(cls, path: Path, *shards: Path) -> LoraBase:
        """From the base model's GGUF (and a split's other shards, whose tensors count too)."""
        reader = gguf.GGUFReader(path)

        def field(key: str) -> object:
            f = reader.fields.get(key)
            return f.contents() if f is not None else None

        arch = field("general.architecture")
        if not isinstance(arch, str):
            raise BadRequest("the base model GGUF has no general.architecture")
        n_head = field(f"{arch}.attention.head_count")
        n_head_kv = field(f"{arch}.attention.head_count_kv")
        heads = n_head if isinstance(n_head, int) else 0
        heads_kv = n_head_kv if isinstance(n_head_kv, int) else heads
        tensors = [t for r in (reader, *map(gguf.GGUFReader, shards)) for t in r.tensors]
        shapes = {t.name: tuple(int(x) for x in reversed(t.shape.tolist())) for t in tensors}
        return cls(arch, heads, heads_kv, shapes)


@dataclass(frozen=True)
class _Pair:
    name: str  # the GGUF name of the adapted tensor
    a: TensorRef
    b: TensorRef
    fix_b: Callable[[Array], Array]


def _arch_for(base: LoraBase) -> Arch:
    for arch in ARCHITECTURES.values():
        if arch.name == base.arch:
            return arch
    supported = sorted({a.name for a in ARCHITECTURES.values()})
    raise BadRequest(f"LoRA adapters for architecture {base.arch!r} cannot be converted (supported: {', '.join(supported)})")


@dataclass(frozen=True)
class _Config:
    rank: int
    alpha: float
    targets: frozenset[str] | None  # None: a regex or "all-linear", any module PEFT adapted
    rank_pattern: bool
    modules_to_save: tuple[str, ...] = ()


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise BadRequest(f"{CONFIG_FILE}: {what} must be a positive number")
    return float(value)


def _read_config(root: Path, trusted: bool) -> _Config:
    if not os.path.lexists(root / CONFIG_FILE):
        raise BadRequest(f"{CONFIG_FILE} not found in the adapter directory (a PEFT LoRA adapter needs it)")
    cfg = read_json(root, CONFIG_FILE, trusted=trusted)
    peft_type = cfg.get("peft_type", "LORA")
    if str(peft_type).upper() != "LORA":
        raise BadRequest(f"{CONFIG_FILE}: peft_type {peft_type!r} is not a LoRA adapter")
    for flag in ("use_dora", "fan_in_fan_out", "lora_bias"):
        if cfg.get(flag):
            raise BadRequest(f"{CONFIG_FILE}: {flag} adapters cannot be converted (llama.cpp's LoRA has "
                             "only the A and B matrices)")
    if cfg.get("alpha_pattern"):
        raise BadRequest(f"{CONFIG_FILE}: alpha_pattern is not supported (llama.cpp has one alpha per adapter)")
    r = cfg.get("r")
    if isinstance(r, bool) or not isinstance(r, int) or r <= 0:
        raise BadRequest(f"{CONFIG_FILE}: 'r' (the rank) must be a positive integer")
    alpha = _number(cfg.get("lora_alpha", 8), "lora_alpha")
    if cfg.get("use_rslora"):
        alpha *= math.sqrt(r)  # rsLoRA scales by alpha/sqrt(r); llama.cpp scales by alpha/r
    targets = cfg.get("target_modules")
    names: frozenset[str] | None = None
    if isinstance(targets, list):
        if not all(isinstance(t, str) for t in targets):
            raise BadRequest(f"{CONFIG_FILE}: target_modules must be module names")
        names = frozenset(str(t) for t in targets)
    elif targets is not None and not isinstance(targets, str):
        raise BadRequest(f"{CONFIG_FILE}: target_modules must be a list of module names or a pattern")
    saved = cfg.get("modules_to_save") or []
    if not isinstance(saved, list) or not all(isinstance(m, str) for m in saved):
        raise BadRequest(f"{CONFIG_FILE}: modules_to_save must be a list of module names")
    return _Config(r, alpha, names, bool(cfg.get("rank_pattern")), tuple(str(m) for m in saved))


def _check_architecture(root: Path, base: LoraBase, trusted: bool) -> None:
    """A config.json beside the adapter (some trainers save the base's) must be the base's architecture."""
    if not os.path.lexists(root / "config.json"):
        return
    arch = select(read_json(root, "config.json", trusted=trusted))
    if arch.name != base.arch:
        raise BadRequest(f"the adapter is for architecture {arch.name!r} but the base model is {base.arch!r}")


def _refuse_whole_modules(names: list[str], cfg: _Config) -> None:
    """Tensors that are not LoRA pairs: a module saved whole replaces the base's tensor, which a GGUF
    LoRA adapter cannot express (it only adds ``B @ A``), so the only faithful conversion is a merge."""
    embedding = [n for n in names if ".lora_embedding_" in n]
    if embedding:
        raise BadRequest(f"{WEIGHTS_FILE}: {embedding[0]!r} is a LoRA of an embedding layer, which this "
                         "converter does not handle yet: merge the adapter into the model (PEFT's merge_and_unload) and create FROM "
                         "the merged directory")
    modules: list[str] = []
    for n in names:
        m = _WHOLE.match(n)
        if m is None:
            raise BadRequest(f"{WEIGHTS_FILE}: tensor {n!r} is not a LoRA A or B matrix")
        if m.group("module") not in modules:
            modules.append(m.group("module"))
    listed = [m for m in modules if m in cfg.modules_to_save or m.rsplit(".", 1)[-1] in cfg.modules_to_save]
    what = (f"{CONFIG_FILE}'s modules_to_save ({', '.join(listed)})" if listed
            else f"the modules {', '.join(modules)}")
    raise BadRequest(f"{WEIGHTS_FILE} saves {what} whole, and a GGUF LoRA adapter can only carry LoRA A/B "
                     "pairs, not replacement tensors: merge the adapter into the model (PEFT's merge_and_unload, "
                     "then save_pretrained) and create FROM the merged directory")


def _halves(tensors: dict[str, TensorRef], cfg: _Config) -> dict[str, tuple[TensorRef | None, TensorRef | None]]:
    whole = [name for name in sorted(tensors) if _PAIR.match(name) is None]
    if whole:
        _refuse_whole_modules(whole, cfg)
    pairs: dict[str, tuple[TensorRef | None, TensorRef | None]] = {}
    for name in sorted(tensors):
        m = _PAIR.match(name)
        assert m is not None
        module = m.group("module")
        if cfg.targets is not None and module.rsplit(".", 1)[-1] not in cfg.targets:
            raise BadRequest(f"{WEIGHTS_FILE}: tensor {name!r} adapts a module that {CONFIG_FILE}'s target_modules "
                             f"does not name ({', '.join(sorted(cfg.targets))})")
        ref = tensors[name]
        if ref.dtype not in ("F32", "F16", "BF16", "F64") or len(ref.shape) != 2:
            raise BadRequest(f"{WEIGHTS_FILE}: tensor {name!r} must be a 2-D float matrix")
        a, b = pairs.get(module, (None, None))
        pairs[module] = (ref, b) if m.group("half") == "A" else (a, ref)
    return pairs


def _pair(module: str, a: TensorRef, b: TensorRef, cfg: _Config, arch: Arch, base: LoraBase,
          tmap: gguf.TensorNameMap, hp: Hparams) -> _Pair | None:
    rank = a.shape[0]
    if b.shape[1] != rank:
        raise BadRequest(f"{WEIGHTS_FILE}: {module} has rank {rank} in lora_A but {b.shape[1]} in lora_B")
    if not cfg.rank_pattern and rank != cfg.rank:
        raise BadRequest(f"{WEIGHTS_FILE}: {module} has rank {rank} but {CONFIG_FILE} says r = {cfg.rank}")
    hf_name = arch.rename(module + ".weight")
    if arch.skip(hf_name) and arch.embedding:
        return None  # BERT's pooler and MLM head: the converted model has neither, embeddings never use them
    gguf_name = tmap.get_name(hf_name, try_suffixes=(".weight",))
    if gguf_name is None or arch.skip(hf_name):
        raise BadRequest(f"{WEIGHTS_FILE}: target module {module!r} is not a tensor of architecture {base.arch}")
    want = base.shapes.get(gguf_name)
    if want is None:
        raise BadRequest(f"the adapter adapts {gguf_name!r} ({module}), which the base model ({base.arch}) does not have")
    if len(want) != 2 or a.shape[1] != want[1] or b.shape[0] != want[0]:
        raise BadRequest(f"the adapter's {module} is ({b.shape[0]} x {rank}) @ ({rank} x {a.shape[1]}) but the "
                         f"base model's {gguf_name} is {' x '.join(map(str, want))}: the adapter is for another model")

    def fix_b(data: Array, _n: str = hf_name) -> Array:
        return np.asarray(arch.fix(_n, data, hp), dtype=np.float32)

    return _Pair(gguf_name, a, b, fix_b)


def _same(data: Array) -> Array:
    return data


def _loader(ref: TensorRef, fix: Callable[[Array], Array]) -> Callable[[], Array]:
    return lambda: fix(np.asarray(ref.load(), dtype=np.float32))


def _order(name: str) -> tuple[int, int, str]:
    if m := _BLOCK.match(name):
        return (1, int(m.group(1)), name)
    return (2 if name.startswith("output") else 0, 0, name)


@dataclass(frozen=True)
class PreparedLora:
    """A checked adapter, ready to be written."""

    arch: str
    alpha: float
    pairs: list[_Pair]

    def write(self, out_path: Path, progress: Progress | None = None) -> None:
        w = gguf.GGUFWriter(out_path, self.arch)
        w.add_type(gguf.GGUFType.ADAPTER)
        w.add_string(gguf.Keys.Adapter.TYPE, "lora")
        w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, self.alpha)
        loads: list[Callable[[], Array]] = []
        for p in self.pairs:
            for suffix, ref, fix in ((".lora_a", p.a, _same), (".lora_b", p.b, p.fix_b)):
                count = ref.shape[0] * ref.shape[1]
                w.add_tensor_info(p.name + suffix, ref.shape, np.dtype(np.float16), count * 2, raw_dtype=_OUT)
                loads.append(_loader(ref, fix))
        try:
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for i, load in enumerate(loads):
                w.write_tensor_data(np.ascontiguousarray(load()).astype(np.float16))
                if progress is not None:
                    progress(f"converting adapter: tensor {i + 1}/{len(loads)}")
        finally:
            w.close()


def prepare_lora(root: Path, base: LoraBase, trusted: bool = False) -> PreparedLora:
    """Check the PEFT directory ``root`` against ``base`` (BadRequest naming the problem); nothing is written."""
    check_links(root, trusted)
    cfg = _read_config(root, trusted)
    if not os.path.lexists(root / WEIGHTS_FILE):
        other = " (adapter_model.bin is a pickle: save the adapter as safetensors)" if (root / "adapter_model.bin").exists() else ""
        raise BadRequest(f"{WEIGHTS_FILE} not found in the adapter directory{other}")
    arch = _arch_for(base)
    _check_architecture(root, base, trusted)
    n_layer = 1 + max((int(m.group(1)) for n in base.shapes if (m := _BLOCK.match(n))), default=-1)
    tmap = gguf.get_tensor_name_map(arch.arch, max(n_layer, 1))
    hp = Hparams({"num_attention_heads": base.n_head or 1, "num_key_value_heads": base.n_head_kv or base.n_head or 1})
    pairs: list[_Pair] = []
    for module, (a, b) in _halves(tensor_table(root, WEIGHTS_FILE, trusted), cfg).items():
        if a is None or b is None:
            raise BadRequest(f"{WEIGHTS_FILE}: {module} has lora_{'B' if a is None else 'A'} but no "
                             f"lora_{'A' if a is None else 'B'}")
        if (pair := _pair(module, a, b, cfg, arch, base, tmap, hp)) is not None:
            pairs.append(pair)
    if not pairs:
        raise BadRequest(f"{WEIGHTS_FILE} holds no LoRA tensors")
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise BadRequest(f"{WEIGHTS_FILE}: two modules adapt the same tensor")
    return PreparedLora(base.arch, cfg.alpha, sorted(pairs, key=lambda p: _order(p.name)))
