"""``create`` with ``quantize``: requantize an F32/F16/BF16 model GGUF with llama.cpp.

llama.cpp runs in a subprocess (``python -m ollamalike.runner.quantize``): the daemon never imports
it, and a crash there fails only this create. The output is written to a scratch file inside the
store and adopted as a blob without copying; quantization is deterministic, so the same inputs
still give the same digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ollamalike.config import load_config
from ollamalike.errors import BadRequest, InternalError
from ollamalike.store import Pins, Store

if TYPE_CHECKING:
    from ollamalike.gguf_info import GGUFInfo

TYPES = (
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
)  # fmt: skip
QUANTIZABLE = ("F32", "F16", "BF16")


def quantize_type(text: str) -> str:
    """Ollama's spelling is case-insensitive ("q4_K_M"); returns the canonical one ("Q4_K_M")."""
    name = text.strip().upper()
    if name not in TYPES:
        raise BadRequest(f"unsupported quantization type {text[:40]!r}; supported: {', '.join(TYPES)}")
    return name


def check_quantizable(info: GGUFInfo | None) -> None:
    file_type = info.file_type if info is not None else ""
    if file_type not in QUANTIZABLE:
        raise BadRequest(f"quantization is only supported for F16 and F32 models (this one is {file_type or 'unknown'})")


def _reason(stderr: bytes, returncode: int | None) -> str:
    """llama.cpp's own words when it logged them ("unknown model architecture: 'x'"), else our last line."""
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    marker = "failed to quantize: "
    for line in reversed(lines):
        if marker in line:
            return line.split(marker, 1)[1]
    return lines[-1] if lines else f"exit status {returncode}"


async def quantize_model(store: Store, pins: Pins, source: Path, type_name: str) -> tuple[str, int, GGUFInfo]:
    """Quantize ``source`` into a new blob; returns (digest, size, GGUF info of the result)."""
    from ollamalike.gguf_info import read_gguf_info

    config = load_config()
    args = [config.runner_python, "-m", "ollamalike.runner.quantize", str(source), "", type_name,
            "--parent", str(os.getpid())]
    if config.num_threads > 0:
        args += ["--threads", str(config.num_threads)]
    with store.temp_file("quantize") as out:
        args[4] = str(out)
        proc = await asyncio.create_subprocess_exec(
            *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            _, err = await proc.communicate()
        except BaseException:
            # The client went away (or the daemon is stopping): no orphan quantizer keeps running.
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise
        if proc.returncode != 0:
            raise InternalError(f"quantization failed: {_reason(err, proc.returncode)}")
        digest, size = await asyncio.to_thread(store.adopt, out, pins)
    info = await asyncio.to_thread(read_gguf_info, store.blob_path(digest))
    return digest, size, info
