"""Install smoke test: can this llama.cpp build run a quantized model on this machine?

``python -m ollamalike.runner.smoke`` writes a tiny Q4_0 llama to a temporary directory and, in a
child process (so a SIGILL from a build using instructions this CPU lacks is caught rather than
killing us), loads it and generates a few tokens, then loads libmtmd (the multimodal library the image path
needs; importing llama_cpp.mtmd_cpp opens it) and asks it for its media marker. It prints one line and exits 0 on success, or
prints the reason and exits 1. install.sh runs it after building.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_TOKENS = 16
TIMEOUT_S = 120.0

_SIGNAL_HINTS = {
    signal.SIGILL: "illegal instruction — rebuild without native/AMX: ./install.sh --rebuild",
    signal.SIGSEGV: "segmentation fault in llama.cpp — try ./install.sh --rebuild",
    signal.SIGBUS: "bus error in llama.cpp — try ./install.sh --rebuild",
    signal.SIGABRT: "llama.cpp aborted — try ./install.sh --rebuild",
    signal.SIGKILL: "killed (out of memory?)",
}


def _child(model: str) -> int:
    """Runs in the child: load, decode N_TOKENS greedily, print the rate."""
    import llama_cpp

    llm = llama_cpp.Llama(model, n_ctx=256, n_batch=64, n_threads=2, verbose=False)
    start = time.perf_counter()
    out = llm("Hello world, the sky is", max_tokens=N_TOKENS, temperature=0.0)
    elapsed = time.perf_counter() - start
    generated = int(out["usage"]["completion_tokens"])  # type: ignore[index]
    if generated < 1:
        print("the model produced no tokens", file=sys.stderr)
        return 1
    try:
        from llama_cpp import mtmd_cpp  # opening the module opens libmtmd
    except (ImportError, OSError, FileNotFoundError) as exc:
        print(f"libmtmd did not load ({exc}); build with -DLLAVA_BUILD=ON", file=sys.stderr)
        return 1
    if not mtmd_cpp.mtmd_default_marker():
        print("libmtmd loaded but returned no media marker", file=sys.stderr)
        return 1
    print(f"{generated / max(elapsed, 1e-9):.0f}")
    return 0


def describe_failure(returncode: int, stderr: str) -> str:
    """One line saying why the child failed: the signal and a hint, or its last error line."""
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"killed by signal {-returncode}"
        hint = _SIGNAL_HINTS.get(sig, sig.name)
        return f"killed by {sig.name}: {hint}"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    return lines[-1] if lines else f"exited with status {returncode}"


def run_smoke(python: str = sys.executable) -> tuple[bool, str]:
    """Run the smoke test in a child interpreter; returns (ok, one-line message)."""
    from ollamalike.testmodels import write_tiny_llama

    with tempfile.TemporaryDirectory(prefix="ollamalike-smoke-") as tmp:
        model = write_tiny_llama(Path(tmp) / "smoke-q4_0.gguf", quant="Q4_0", n_embd=128, n_ff=256)
        try:
            proc = subprocess.run(
                [python, "-m", "ollamalike.runner.smoke", "--child", str(model)],
                capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
            )
        except subprocess.TimeoutExpired:
            return False, f"llama.cpp smoke test failed: no answer within {TIMEOUT_S:.0f}s"
    if proc.returncode != 0:
        return False, f"llama.cpp smoke test failed: {describe_failure(proc.returncode, proc.stderr)}"
    rate = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "?"
    return True, f"llama.cpp smoke test passed ({rate} tokens/s)"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--child":
        return _child(args[1])
    ok, message = run_smoke()
    print(message)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
