"""Split GGUFs (``name-00001-of-00003.gguf``, as llama.cpp's gguf-split and GGUFWriter write them).

``create`` FROM the first shard merges the shards into one GGUF model layer: a content-addressed
store has no file names to find sibling shards by, and one layer loads everywhere a GGUF does. The
shards are checked first (all present, the same ``split.count``, ``split.no`` in order, the tensor
count adding up); the merged file keeps the first shard's metadata without the ``split.*`` keys and
every tensor's bytes and type as they were. Shard file names: ``names.gguf_shard_names``.
"""

from __future__ import annotations

from pathlib import Path

import gguf

from ollamalike.errors import BadRequest

_SPLIT_KEYS = (gguf.Keys.Split.LLM_KV_SPLIT_NO, gguf.Keys.Split.LLM_KV_SPLIT_COUNT, gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT)


def _int(reader: gguf.GGUFReader, key: str, name: str) -> int:
    field = reader.fields.get(key)
    if field is None:
        raise BadRequest(f"{name}: not a split GGUF shard (no {key})")
    return int(field.contents())


class MergedSplit:
    """Checked shards, ready to be written as one GGUF (the same ``write`` as a converted checkpoint)."""

    def __init__(self, paths: list[Path], names: list[str] | None = None) -> None:
        names = names or [p.name for p in paths]
        self.readers: list[gguf.GGUFReader] = []
        for path, name in zip(paths, names, strict=True):
            if not path.is_file():
                raise BadRequest(f"split GGUF shard {name} not found")
            try:
                self.readers.append(gguf.GGUFReader(path))
            except (ValueError, OSError, IndexError) as e:
                raise BadRequest(f"{name}: not a valid GGUF file ({e})") from None
        count = len(paths)
        tensors = 0
        for i, (reader, name) in enumerate(zip(self.readers, names, strict=True)):
            if _int(reader, gguf.Keys.Split.LLM_KV_SPLIT_COUNT, name) != count:
                raise BadRequest(f"{name}: split.count does not match the {count} shards")
            if _int(reader, gguf.Keys.Split.LLM_KV_SPLIT_NO, name) != i:
                raise BadRequest(f"{name}: shard number {i + 1} expected")
            tensors += len(reader.tensors)
        if tensors != _int(self.readers[0], gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT, names[0]):
            raise BadRequest("the shards do not hold the tensor count the first one declares")
        arch = self.readers[0].fields.get(gguf.Keys.General.ARCHITECTURE)
        if arch is None:
            raise BadRequest(f"{names[0]}: no general.architecture")
        self.arch = str(arch.contents())

    def write(self, out_path: Path) -> None:
        first = self.readers[0]
        w = gguf.GGUFWriter(out_path, self.arch)
        for field in first.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF.") or field.name in _SPLIT_KEYS:
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            if field.name == gguf.Keys.General.ALIGNMENT:
                w.data_alignment = int(field.contents())
            w.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
        for reader in self.readers:
            for t in reader.tensors:
                w.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        try:
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_ti_data_to_file()
            for reader in self.readers:
                for t in reader.tensors:
                    w.write_tensor_data(t.data, tensor_endianess=reader.endianess)
        finally:
            w.close()
