"""Reading a Hugging Face checkpoint directory: config, safetensors files and their tensor table.

Every problem with the directory is a ``BadRequest`` naming the file: a missing ``config.json``, a
file that is not regular or is a symlink leading out of the directory, a truncated or malformed
safetensors header, tensors whose data runs past the end of their file, an index naming a missing
shard. Tensors are read lazily through the ``safetensors`` numpy API (memory-mapped, no torch);
BF16, which numpy has no dtype for, is read from the same mapping as raw 16-bit words.
"""

from __future__ import annotations

import json
import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ollamalike.errors import BadRequest

INDEX_FILE = "model.safetensors.index.json"
# Bytes per element of the dtypes a checkpoint may hold (what the converter can read).
DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = ("F32", "F16", "BF16", "F64")
MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit


@dataclass(frozen=True)
class TensorRef:
    """One tensor in one safetensors file: where it is, what it holds."""

    name: str
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute file offset of its data
    nbytes: int

    def load(self) -> np.ndarray:
        """The tensor as float32 (floats) or its own integer type, memory-mapped where possible."""
        if self.dtype == "BF16":
            words = np.memmap(self.path, dtype="<u2", mode="r", offset=self.start, shape=self.shape or (1,))
            out = (words.astype(np.uint32) << 16).view(np.float32)
            return out.reshape(self.shape)
        from safetensors import safe_open

        with safe_open(str(self.path), framework="np") as f:
            arr: np.ndarray = f.get_tensor(self.name)
        return arr.astype(np.float32) if self.dtype in ("F64",) else arr


@dataclass
class Checkpoint:
    """A validated checkpoint directory."""

    root: Path
    config: dict[str, Any]
    tensors: dict[str, TensorRef] = field(default_factory=dict)
    trusted: bool = False

    def json_file(self, name: str) -> dict[str, Any] | None:
        """A JSON file of the directory (validated like every other file), or None when absent."""
        path = self.root / name
        if not os.path.lexists(path):
            return None
        value: dict[str, Any] = read_json(self.root, name, trusted=self.trusted)
        return value

    def json_value(self, name: str) -> Any:
        """Any JSON value (modules.json is a list)."""
        return read_json(self.root, name, want_object=False, trusted=self.trusted)

    def has(self, name: str) -> bool:
        return os.path.lexists(self.root / name)

    def file(self, name: str) -> Path:
        return inside(self.root, name, self.trusted)

    @property
    def source_dtype(self) -> str:
        """The dominant float dtype of the weights ("F32", "F16" or "BF16")."""
        counts: dict[str, int] = {}
        for ref in self.tensors.values():
            if ref.dtype in FLOAT_DTYPES:
                counts[ref.dtype] = counts.get(ref.dtype, 0) + ref.nbytes
        return max(sorted(counts), key=lambda d: counts[d]) if counts else "F32"


def inside(root: Path, name: str, trusted: bool = False) -> Path:
    """``root/name`` as a regular file that, symlinks resolved, stays inside ``root``.

    ``trusted``: a directory the daemon built itself of links to store blobs (uploaded files).
    """
    path = root / name
    try:
        real = path.resolve(strict=True)
    except FileNotFoundError:
        raise BadRequest(f"{name} not found in the model directory") from None
    except (OSError, RuntimeError) as e:
        raise BadRequest(f"cannot read {name}: {e}") from None
    if not trusted and not real.is_relative_to(root.resolve()):
        raise BadRequest(f"{name} is a link that leads outside the model directory")
    st = os.stat(real)
    if not stat.S_ISREG(st.st_mode):
        raise BadRequest(f"{name} is not a regular file")
    return real


def read_json(root: Path, name: str, want_object: bool = True, trusted: bool = False) -> Any:
    path = inside(root, name, trusted)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"{name} is not valid JSON: {e}") from None
    if want_object and not isinstance(value, dict):
        raise BadRequest(f"{name} must hold a JSON object")
    return value


def _header(root: Path, name: str, trusted: bool) -> tuple[Path, dict[str, Any], int]:
    """The parsed JSON header of a safetensors file and where its data starts."""
    path = inside(root, name, trusted)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise BadRequest(f"{name}: truncated safetensors header")
        (length,) = struct.unpack("<Q", head)
        if length > MAX_HEADER or 8 + length > size:
            raise BadRequest(f"{name}: truncated safetensors header (header of {length} bytes, file of {size})")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise BadRequest(f"{name}: malformed safetensors header") from None
    if not isinstance(header, dict):
        raise BadRequest(f"{name}: malformed safetensors header")
    return path, header, 8 + length


def _tensor_refs(root: Path, name: str, trusted: bool) -> dict[str, TensorRef]:
    path, header, data_start = _header(root, name, trusted)
    size = path.stat().st_size
    out: dict[str, TensorRef] = {}
    for tname, entry in header.items():
        if tname == "__metadata__":
            continue
        try:
            dtype, shape = entry["dtype"], tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise BadRequest(f"{name}: malformed entry for tensor {tname!r}") from None
        if dtype not in DTYPE_SIZES:
            raise BadRequest(f"{name}: tensor {tname!r} has unsupported dtype {dtype}")
        count = int(np.prod(shape)) if shape else 1
        if end - begin != count * DTYPE_SIZES[dtype] or begin < 0:
            raise BadRequest(f"{name}: tensor {tname!r} has shape {list(shape)} but {end - begin} bytes of {dtype}")
        if data_start + end > size:
            raise BadRequest(f"{name}: truncated: tensor {tname!r} runs past the end of the file")
        out[tname] = TensorRef(tname, path, dtype, shape, data_start + begin, end - begin)
    return out


def _weight_files(root: Path, trusted: bool) -> list[str]:
    if os.path.lexists(root / INDEX_FILE):
        index = read_json(root, INDEX_FILE, trusted=trusted)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise BadRequest(f"{INDEX_FILE} has no weight_map")
        files = sorted({str(v) for v in weight_map.values()})
        for f in files:
            if "/" in f or "\\" in f or f.startswith("."):
                raise BadRequest(f"{INDEX_FILE} names an invalid file {f!r}")
        return files
    files = sorted(p.name for p in root.iterdir() if p.name.endswith(".safetensors"))
    if not files:
        raise BadRequest("no *.safetensors files in the model directory")
    return files


def tensor_table(root: Path, name: str, trusted: bool = False) -> dict[str, TensorRef]:
    """The checked tensor table of the safetensors file ``root/name`` (no tensor data is read)."""
    return _tensor_refs(root, name, trusted)


def check_links(root: Path, trusted: bool = False) -> None:
    """No entry of the directory ``root`` may be a symlink that leads out of it."""
    if not root.is_dir():
        raise BadRequest(f"{root} is not a directory")
    for dirpath, dirnames, filenames in os.walk(root):
        for entry in sorted(dirnames + filenames):
            full = Path(dirpath) / entry
            if full.is_symlink() and not trusted:
                rel = str(full.relative_to(root))
                real = full.resolve()
                if not real.is_relative_to(root.resolve()):
                    raise BadRequest(f"{rel} is a link that leads outside the model directory")


def open_checkpoint(root: Path, trusted: bool = False) -> Checkpoint:
    """Validate ``root`` and read its config and tensor table (no tensor data is read)."""
    check_links(root, trusted)
    if not os.path.lexists(root / "config.json"):
        raise BadRequest("config.json not found in the model directory")
    config = read_json(root, "config.json", trusted=trusted)
    ckpt = Checkpoint(root, config, trusted=trusted)
    for name in _weight_files(root, trusted):
        for tname, ref in _tensor_refs(root, name, trusted).items():
            if tname in ckpt.tensors:
                raise BadRequest(f"tensor {tname!r} appears in two safetensors files")
            ckpt.tensors[tname] = ref
    if not ckpt.tensors:
        raise BadRequest("the safetensors files hold no tensors")
    return ckpt
