"""``python -m ollamalike.runner.quantize SRC DST TYPE``: requantize a GGUF with llama.cpp.

``create --quantize`` runs this in a subprocess (the daemon never imports llama_cpp): a crash or
an out-of-memory in llama.cpp ends only this process. Exit status 0 means DST is complete; on any
failure one line on stderr says why and DST may be partial (the caller deletes it).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys

# Ollama's accepted quantization types (its `create --quantize` list).
TYPES = (
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
)  # fmt: skip


def _die_with_parent(parent: int) -> None:
    """Linux: killed when the daemon dies (even by kill -9), as runners are: an orphan quantizer would
    keep a core busy and write into a temp file nobody will adopt. ``parent`` is the daemon's pid: if
    it died before the prctl took effect, we are already orphaned and stop here."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: nothing to clean up here
    if parent and os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def quantize(src: str, dst: str, type_name: str, threads: int) -> None:
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{type_name}")
    params.nthread = threads
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), params)
    if rc != 0:
        raise RuntimeError(f"llama.cpp could not quantize the model (code {rc})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ollamalike.runner.quantize")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("type", choices=TYPES)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--parent", type=int, default=0, help="the daemon's pid: exit when it dies")
    args = parser.parse_args(argv)
    _die_with_parent(args.parent)
    threads = args.threads if args.threads > 0 else max(1, (os.cpu_count() or 2) // 2)
    try:
        quantize(args.src, args.dst, args.type, threads)
    except Exception as e:  # one line for the daemon's error message, not a traceback
        print(f"quantize: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
