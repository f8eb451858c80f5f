"""GGUF metadata reading: facts from small valid files, and quick clean rejection of hostile ones."""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import pytest

from ollamalike.errors import BadRequest
from ollamalike.gguf_info import GGUFInfo, format_parameter_size, read_gguf_info
from tests.gguf_bytes import gstr, header, kv_str, kv_u32, minimal, save, tensor_info, write_llama

TIME_BOUND_S = 2.0  # generous on a loaded machine; a hang or a full scan of a huge count would blow it


def read_bad(path: Path, contains: str = "") -> str:
    start = time.monotonic()
    with pytest.raises(BadRequest) as e:
        read_gguf_info(path)
    assert time.monotonic() - start < TIME_BOUND_S
    message = e.value.message
    assert message.startswith("invalid GGUF file: ") and "\n" not in message
    assert contains in message, message
    return message


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_llama(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


@pytest.fixture(scope="module")
def llama_info(llama_path: Path) -> GGUFInfo:
    return read_gguf_info(llama_path)


def test_facts_of_a_llama_file(llama_info: GGUFInfo, llama_path: Path) -> None:
    info = llama_info
    assert info.version == 3
    assert info.architecture == "llama"
    assert (info.context_length, info.embedding_length, info.block_count) == (2048, 64, 2)
    assert (info.head_count, info.head_count_kv) == (4, 2)
    assert info.file_type == "F16"
    assert info.chat_template == "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")
    assert info.is_embedding_model is False
    assert info.file_size == llama_path.stat().st_size
    n_params = 100 * 64 * 2 + 64 + 2 * (64 + 64 * 64 + 128 * 64)
    assert info.parameter_count == n_params
    assert info.parameter_size == format_parameter_size(n_params) == "38K"
    assert info.tensor_count == 3 + 2 * 3
    assert info.details == {
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "38K",
        "quantization_level": "F16",
    }


def test_tensor_bytes_for_the_memory_planner(llama_info: GGUFInfo) -> None:
    per_layer = 64 * 4 + (64 * 64 + 128 * 64) * 2
    assert llama_info.layer_bytes == [per_layer, per_layer]
    assert llama_info.non_layer_bytes == 100 * 64 * 2 * 2 + 64 * 4
    assert llama_info.output_bytes == 100 * 64 * 2
    assert llama_info.tensor_bytes == sum(llama_info.layer_bytes) + llama_info.non_layer_bytes
    assert llama_info.tensor_types == {"F16": 100 * 64 * 2 + 2 * (64 * 64 + 128 * 64), "F32": 64 * 3}


def test_model_info_like_ollama_show(llama_info: GGUFInfo) -> None:
    mi = llama_info.model_info
    assert mi["general.architecture"] == "llama"
    assert mi["general.parameter_count"] == llama_info.parameter_count
    assert mi["llama.attention.layer_norm_rms_epsilon"] == 1e-05  # float32 shown by its shortest text
    assert mi["llama.rope.freq_base"] == 10000.0
    # Vocabulary-sized arrays are null, as in Ollama's non-verbose show.
    assert mi["tokenizer.ggml.tokens"] is None
    assert mi["tokenizer.ggml.scores"] is None and mi["tokenizer.ggml.token_type"] is None
    import json

    json.dumps(mi, allow_nan=False)


def test_agrees_with_gguf_reader(llama_path: Path, llama_info: GGUFInfo) -> None:
    """The package's own reader is the oracle for everything both can read from a valid file."""
    reader = gguf.GGUFReader(llama_path)
    assert llama_info.tensor_count == len(reader.tensors)
    assert llama_info.tensor_bytes == sum(int(t.n_bytes) for t in reader.tensors)
    assert llama_info.parameter_count == sum(int(t.n_elements) for t in reader.tensors)
    assert llama_info.alignment == reader.alignment
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key not in llama_info.model_info:
            continue
        ours = llama_info.model_info[key]
        if ours is None:
            continue
        theirs: Any = fld.contents()
        if isinstance(theirs, float):
            assert ours == pytest.approx(theirs, rel=1e-6), key
        else:
            assert ours == theirs, key


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"file_type": 1}, "F16"),
        ({"file_type": 0}, "F32"),
        ({"file_type": 2}, "Q4_0"),
        ({"file_type": 15}, "Q4_K_M"),
        ({"file_type": 32}, "BF16"),
        ({"file_type": None}, "F16"),  # inferred from the dominant weight type
        ({"file_type": None, "dtype": np.float32}, "F32"),
        ({"file_type": 999}, "F16"),  # unknown enum value: inferred
    ],
)
def test_file_type_names(tmp_path: Path, kwargs: dict[str, Any], expected: str) -> None:
    assert read_gguf_info(write_llama(tmp_path / "m.gguf", n_layer=1, **kwargs)).file_type == expected


def test_q4_0_tensors(tmp_path: Path) -> None:
    w = gguf.GGUFWriter(str(tmp_path / "q.gguf"), "llama")
    data = np.zeros((64, 18 * 2), np.uint8)  # 64 rows of 64 elements = 2 Q4_0 blocks of 18 bytes
    w.add_tensor("blk.0.attn_q.weight", data, raw_dtype=gguf.GGMLQuantizationType.Q4_0)
    w.add_tensor("token_embd.weight", np.zeros((10, 64), np.float32))
    save(w)
    info = read_gguf_info(tmp_path / "q.gguf")
    assert info.file_type == "Q4_0"
    assert info.layer_bytes == [64 * 2 * 18]
    assert info.parameter_count == 64 * 64 + 640
    assert info.output_bytes == 640 * 4  # tied output: token_embd


@pytest.mark.parametrize(
    ("arch", "pooling", "expected"),
    [("bert", None, True), ("nomic-bert", None, True), ("llama", 1, True), ("qwen3", 3, True), ("llama", None, False)],
)
def test_embedding_model_detection(tmp_path: Path, arch: str, pooling: int | None, expected: bool) -> None:
    info = read_gguf_info(write_llama(tmp_path / "e.gguf", n_layer=1, arch=arch, pooling=pooling))
    assert info.is_embedding_model is expected
    assert info.architecture == arch


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1_000, "1K"),
        (22_700, "23K"),
        (136_731_648, "137M"),
        (494_032_768, "494M"),
        (1_235_814_400, "1.2B"),
        (8_030_261_248, "8.0B"),
        (70_553_706_496, "70.6B"),
    ],
)
def test_parameter_size(count: int, text: str) -> None:
    assert format_parameter_size(count) == text


def test_hand_built_minimal_file_is_valid(tmp_path: Path) -> None:
    """The byte builders make valid files, so the hostile variants below differ only in what they break."""
    path = tmp_path / "ok.gguf"
    path.write_bytes(minimal([kv_str("general.architecture", "llama")], [tensor_info("w", (8,), 0, 0)], b"\0" * 32))
    info = read_gguf_info(path)
    assert info.architecture == "llama" and info.parameter_count == 8 and info.file_type == "F32"


ARCH = kv_str("general.architecture", "llama")
HOSTILE: list[tuple[str, bytes, str]] = [
    ("empty", b"", "too small"),
    ("three bytes", b"GGU", "too small"),
    ("bad magic", b"GGML" + header()[4:], "bad magic"),
    ("zip file", b"PK\x03\x04" + b"\0" * 60, "bad magic"),
    ("text file", b"FROM llama3.2\nSYSTEM hello\n" * 3, "bad magic"),
    ("version 1", header(version=1) + ARCH, "unsupported GGUF version 1"),
    ("version 99", header(version=99) + ARCH, "unsupported GGUF version 99"),
    ("big endian", header(version=3 << 24) + ARCH, "big-endian"),
    ("tensor count 2**60", header(n_tensors=2**60, n_kv=1) + ARCH, "tensor count"),
    ("tensor count 2**64-1", header(n_tensors=2**64 - 1, n_kv=1) + ARCH, "tensor count"),
    ("kv count 2**60", header(n_kv=2**60) + ARCH, "key count"),
    ("kv count past data", header(n_kv=3) + ARCH, "truncated"),
    ("key length > file", header(n_kv=1) + gstr(b"general.architecture", 60_000), "past the end of the file"),
    ("key length 2**40", header(n_kv=1) + gstr(b"general.architecture", 2**40), "longer than allowed"),
    ("key length 2**64-1", header(n_kv=1) + gstr(b"x", 2**64 - 1), "longer than allowed"),
    ("value length > file", header(n_kv=1) + gstr("general.architecture") + struct.pack("<I", 8) + gstr(b"llama", 10**6),
     "past the end of the file"),
    ("value length 10**9", header(n_kv=1) + gstr("general.architecture") + struct.pack("<I", 8) + gstr(b"llama", 10**9),
     "longer than allowed"),
    ("unknown value type", header(n_kv=1) + gstr("general.architecture") + struct.pack("<I", 99) + b"\0" * 16,
     "unknown metadata value type 99"),
    ("array count 2**40", header(n_kv=2) + ARCH + gstr("a") + struct.pack("<IIQ", 9, 4, 2**40), "larger than allowed"),
    ("string array past file", header(n_kv=2) + ARCH + gstr("a") + struct.pack("<IIQ", 9, 8, 1000) + b"\0" * 16,
     "runs past the end"),
    ("u32 array past file", header(n_kv=2) + ARCH + gstr("a") + struct.pack("<IIQ", 9, 4, 1000) + b"\0" * 16,
     "runs past the end"),
    ("unknown array item type", header(n_kv=2) + ARCH + gstr("a") + struct.pack("<IIQ", 9, 77, 1) + b"\0" * 16,
     "unknown array item type 77"),
    ("deeply nested arrays", header(n_kv=2) + ARCH + gstr("a") + struct.pack("<IIQ", 9, 9, 1) + struct.pack("<IQ", 9, 1) * 4
     + b"\0" * 64, "nested too deeply"),
    ("duplicate key", minimal([ARCH, ARCH], []), "duplicate metadata key"),
    ("no architecture", minimal([kv_str("general.name", "x")], []), "general.architecture is missing"),
    ("alignment 0", minimal([ARCH, kv_u32("general.alignment", 0)], [], alignment=0), "alignment 0"),
    ("alignment 3", minimal([ARCH, kv_u32("general.alignment", 3)], [], alignment=0), "alignment 3"),
    ("alignment as string", minimal([ARCH, kv_str("general.alignment", "32")], []), "alignment '32'"),
    ("tensor offset past EOF", minimal([ARCH], [tensor_info("w", (8,), 0, 2**40)], b"\0" * 32), "outside the file"),
    ("tensor bigger than file", minimal([ARCH], [tensor_info("w", (2**20, 2**20), 0, 0)], b"\0" * 32),
     "outside the file"),
    ("tensor shape overflow", minimal([ARCH], [tensor_info("w", (2**40, 2**40), 0, 0)], b"\0" * 32), "too large"),
    ("tensor misaligned", minimal([ARCH], [tensor_info("w", (8,), 0, 4)], b"\0" * 64), "not aligned"),
    ("tensor 0 dims", minimal([ARCH], [tensor_info("w", (), 0, 0)], b"\0" * 32), "0 dimensions"),
    ("tensor 5 dims", minimal([ARCH], [tensor_info("w", (1, 1, 1, 1, 1), 0, 0)], b"\0" * 32), "5 dimensions"),
    ("tensor unknown type", minimal([ARCH], [tensor_info("w", (8,), 999, 0)], b"\0" * 32), "unknown type 999"),
    ("tensor removed type 4", minimal([ARCH], [tensor_info("w", (32,), 4, 0)], b"\0" * 32), "unknown type 4"),
    ("q4_0 row not a block multiple", minimal([ARCH], [tensor_info("w", (33,), 2, 0)], b"\0" * 64), "block size"),
    ("duplicate tensor", minimal([ARCH], [tensor_info("w", (8,), 0, 0), tensor_info("w", (8,), 0, 32)], b"\0" * 64),
     "duplicate tensor"),
    ("tensor infos truncated", header(n_tensors=2, n_kv=1) + ARCH + tensor_info("w", (8,), 0, 0) + b"\0" * 3,
     "truncated"),
]


@pytest.mark.parametrize(("label", "data", "contains"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files(tmp_path: Path, label: str, data: bytes, contains: str) -> None:
    path = tmp_path / "hostile.gguf"
    path.write_bytes(data)
    read_bad(path, contains)


def test_truncated_at_every_metadata_offset_and_through_the_data(tmp_path: Path, llama_path: Path,
                                                                 llama_info: GGUFInfo) -> None:
    data = llama_path.read_bytes()
    data_end = llama_info.file_size  # GGUFWriter ends the file with the last tensor's data
    metadata_end = data_end - llama_info.tensor_bytes
    offsets = list(range(0, 128)) + list(range(128, metadata_end, 13)) + list(range(metadata_end, data_end, 211))
    path = tmp_path / "cut.gguf"
    start = time.monotonic()
    for n in offsets:
        path.write_bytes(data[:n])
        with pytest.raises(BadRequest, match="^invalid GGUF file: "):
            read_gguf_info(path)
    assert time.monotonic() - start < 30


def test_not_regular_files(tmp_path: Path) -> None:
    read_bad(tmp_path, "directory")
    read_bad(tmp_path / "missing.gguf", "cannot read")
    if os.path.exists("/dev/zero"):
        read_bad(Path("/dev/zero"), "not a regular file")
    if os.path.exists("/dev/null"):
        read_bad(Path("/dev/null"), "not a regular file")


def test_fifo_is_rejected_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)  # opening this for reading would block forever with no writer
    read_bad(fifo, "not a regular file")


def test_symlink_to_a_valid_file_is_followed(tmp_path: Path, llama_path: Path) -> None:
    link = tmp_path / "link.gguf"
    link.symlink_to(llama_path)
    assert read_gguf_info(link).architecture == "llama"


def test_unreadable_file(tmp_path: Path, llama_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    path = tmp_path / "locked.gguf"
    path.write_bytes(llama_path.read_bytes())
    path.chmod(0)
    read_bad(path, "cannot read")


def _huge_vocab(tmp_path: Path) -> Path:
    w = gguf.GGUFWriter(str(tmp_path / "vocab.gguf"), "llama")
    w.add_token_list([f"token-{i}" for i in range(150_000)])
    w.add_bos_token_id(149_999)
    save(w)
    return tmp_path / "vocab.gguf"


def test_large_vocabulary_is_fast(tmp_path: Path) -> None:
    path = _huge_vocab(tmp_path)
    start = time.monotonic()
    info = read_gguf_info(path)
    assert time.monotonic() - start < 2.0
    assert info.bos_token == "token-149999" and info.model_info["tokenizer.ggml.tokens"] is None


@pytest.mark.parametrize("mutate", [lambda b: b[:-1], lambda b: b[:100] + b"\xff" * 8 + b[108:]])
def test_mutated_real_file(tmp_path: Path, llama_path: Path, mutate: Callable[[bytes], bytes]) -> None:
    path = tmp_path / "m.gguf"
    path.write_bytes(mutate(llama_path.read_bytes()))
    read_bad(path)


def test_verbose_keeps_every_array(llama_path: Path) -> None:
    mi = read_gguf_info(llama_path, verbose=True).model_info
    assert mi["tokenizer.ggml.tokens"][:3] == ["<unk>", "<s>", "</s>"] and len(mi["tokenizer.ggml.tokens"]) == 100
    assert mi["tokenizer.ggml.scores"] == [0.0] * 100
    assert mi["tokenizer.ggml.token_type"] == [1] * 100


@pytest.mark.parametrize("path", ["bad\0path.gguf", ""])
def test_unusable_paths(path: str) -> None:
    with pytest.raises(BadRequest, match="^invalid GGUF file: cannot read"):
        read_gguf_info(path)


def test_walk_budget_bounds_many_small_arrays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Strings are walked one by one, so the total over all arrays is capped, not just each array."""
    import ollamalike.gguf_walk

    monkeypatch.setattr(ollamalike.gguf_walk, "MAX_WALKED_ITEMS", 100)
    strings = struct.pack("<IQ", 8, 70) + gstr("") * 70
    one = minimal([ARCH, gstr("a") + struct.pack("<I", 9) + strings], [])
    path = tmp_path / "one.gguf"
    path.write_bytes(one)
    assert read_gguf_info(path).model_info["a"] is None  # 70 items: under the budget, shown as null
    path.write_bytes(minimal([ARCH, gstr("a") + struct.pack("<I", 9) + strings, gstr("b") + struct.pack("<I", 9) + strings], []))
    read_bad(path, "more than 100 strings and arrays")
