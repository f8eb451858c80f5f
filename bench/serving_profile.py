"""``--profile``: py-spy on our runner's engine thread while N clients stream, and where its time goes.

``py-spy record --native --format raw`` samples the runner process (100 Hz) during one extra batch of the
highest concurrency, outside the measured repetitions. The engine thread's samples are those whose stack
passes through ollamalike/runner/engine.py; of those, the share inside ``llama_decode`` (llama.cpp's
compute) against everything else: sampling, detokenizing, filling the batch, handing tokens to the
event loop. Issue 20's target: under 5% outside ``llama_decode`` at 8 streams. py-spy comes with the
``bench`` extra (``pip install -e '.[bench]'``); without it the profile is skipped with a message.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from common import markdown_table  # type: ignore[import-not-found]


def find_py_spy(given: str | None) -> str | None:
    if given:
        return given if os.access(given, os.X_OK) else None
    beside = Path(sys.executable).parent / "py-spy"  # the venv's own, when the bench extra is installed
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Profile:
    """One py-spy recording of a process, started and stopped around the profiled batch."""

    def __init__(self, py_spy: str, pid: int, out: Path) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        with self.log.open("wb") as f:
            self.proc = subprocess.Popen([py_spy, "record", "--native", "--format", "raw", "--rate", "100",
                                          "--pid", str(pid), "--output", str(out)],
                                         stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)

    def stop(self) -> str | None:
        """Stop recording (SIGINT makes py-spy write its file); None when it wrote nothing."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.out.exists():
            return None
        return self.out.read_text(errors="replace")


# The engine thread blocked on its wake-up event or a queue: idle, whatever py-spy's own idle detection says
# about a stack that ends in native lock code.
IDLE = ("Event.wait (threading.py", "Condition.wait (threading.py", "Queue.get (queue.py")


def frame_name(frame: str) -> str:
    """"fn (path/to/mod.py:12)" -> "fn (mod.py)"; native frames keep their symbol."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({Path(where).name})" if where else name


def analyse(raw: str) -> str:
    """Share of the engine thread's samples inside llama_decode, and the largest buckets outside it."""
    engine = inside = idle = 0
    outside: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        if not any("runner/engine.py" in f for f in frames):
            continue
        n = int(count)
        if any(f.startswith(IDLE) for f in frames):
            idle += n  # waiting for work: not time spent on a step
            continue
        engine += n
        if any(f.startswith("llama_decode") for f in frames):
            inside += n
            continue
        # Charge the sample to the innermost frame that says what it is doing: a llama.cpp entry point
        # (llama_sampler_sample, llama_token_to_piece...) or our own Python code.
        bucket = next((frame_name(f) for f in reversed(frames)
                       if f.startswith("llama_") or "ollamalike/" in f), frame_name(frames[-1]))
        outside[bucket] = outside.get(bucket, 0) + n
    if not engine:
        return f"no busy samples of the engine thread ({idle} idle ones) of the engine thread (was the runner busy while py-spy recorded?)"
    rows = [["inside llama_decode", str(inside), f"{inside / engine:.1%}"],
            ["outside llama_decode", str(engine - inside), f"{(engine - inside) / engine:.1%}"]]
    rows += [[f"  {what}", str(n), f"{n / engine:.1%}"]
             for what, n in sorted(outside.items(), key=lambda kv: -kv[1])[:8]]
    return (markdown_table(["engine thread, busy", "samples", "share"], rows, 1)
            + f"\n\n{idle} more samples found the engine thread idle (waiting for work); not counted above.")
