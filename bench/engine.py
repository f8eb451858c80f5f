"""Benchmark of the runner engine against llama-cpp-python's ``Llama`` on the same model and threads.

Run: ``.venv/bin/python bench/engine.py [--threads N] [--runs N] [--tokens N]``.
A ~100M-parameter random llama (Q4_0) is generated once under bench/out/. Measured:
  1. single-stream decode tokens/s: our runner (one request) vs ``Llama.generate`` (greedy, same prompt);
  2. aggregate tokens/s with 1, 2, 4, 8 concurrent requests vs the same requests one after another.
Prints a markdown table of medians over several runs, with ratios. Targets: single stream >= 95% of
Llama, 8 concurrent >= 2.5x the sequential aggregate.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ollamalike.config import Config  # noqa: E402
from ollamalike.runner.client import RunnerProcess, RunnerSpec  # noqa: E402
from ollamalike.testmodels import write_bench_llama  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
PROMPT = "once upon a time there was a little dog and a big cat in the house"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}


def model_path() -> Path:
    path = OUT / "bench-100m-q4_0.gguf"
    if not path.exists():
        t = time.perf_counter()
        write_bench_llama(path)
        print(f"generated {path.name} in {time.perf_counter() - t:.1f}s", file=sys.stderr)
    return path


def llama_single(path: Path, threads: int, tokens: int, runs: int) -> list[float]:
    """Decode rate of Llama.generate: tokens after the first, over the time since the first."""
    from llama_cpp import Llama

    llm = Llama(str(path), n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    prompt = llm.tokenize(PROMPT.encode())
    rates = []
    for _ in range(runs + 1):  # the first run warms up
        llm.reset()
        n, first = 0, 0.0
        for _tok in llm.generate(prompt, temp=0.0, repeat_penalty=1.0, reset=True):
            n += 1
            if n == 1:
                first = time.perf_counter()
            if n == tokens:
                break
        rates.append((n - 1) / (time.perf_counter() - first))
    del llm
    return rates[1:]


async def one(proc: RunnerProcess, prompt: str, tokens: int) -> tuple[int, float]:
    """(generated tokens, decode rate measured client-side from first chunk to done)."""
    first = 0.0
    async for ev in proc.completion(prompt, {**GREEDY, "num_predict": tokens}):
        if not first:
            first = time.perf_counter()
        if ev.get("done"):
            n = int(ev["eval_count"])
            return n, (n - 1) / max(time.perf_counter() - first, 1e-9)
    raise RuntimeError("stream ended without done")


async def runner_bench(path: Path, threads: int, tokens: int, runs: int) -> tuple[list[float], dict[int, tuple[float, float]]]:
    home = OUT / "home"
    config = Config(home=home, models_dir=home / "models")
    spec = RunnerSpec(str(path), ctx_size=8 * 512, num_parallel=8, num_batch=512, threads=threads)
    proc = await RunnerProcess.start(spec, config)
    try:
        await one(proc, PROMPT + " warm", tokens)
        single = [(await one(proc, f"{PROMPT} {i}", tokens))[1] for i in range(runs)]
        table: dict[int, tuple[float, float]] = {}
        for conc in (1, 2, 4, 8):
            par, seq = [], []
            for r in range(runs):
                prompts = [f"{PROMPT} run {r} seq {i} c{conc}" for i in range(conc)]
                t = time.perf_counter()
                results = await asyncio.gather(*(one(proc, p + " par", tokens) for p in prompts))
                par.append(sum(n for n, _ in results) / (time.perf_counter() - t))
                t = time.perf_counter()
                total = 0
                for p in prompts:
                    total += (await one(proc, p + " seq", tokens))[0]
                seq.append(total / (time.perf_counter() - t))
            table[conc] = (statistics.median(par), statistics.median(seq))
        return single, table
    finally:
        await proc.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 8))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    path = model_path()
    single_ours, table = asyncio.run(runner_bench(path, args.threads, args.tokens, args.runs))
    single_llama = llama_single(path, args.threads, args.tokens, args.runs)
    ours, ref = statistics.median(single_ours), statistics.median(single_llama)
    size_mb = path.stat().st_size / 1e6
    print(f"model: {path.name} ({size_mb:.0f} MB, ~100M params, Q4_0), threads={args.threads}, "
          f"{args.tokens} tokens per request, median of {args.runs} runs\n")
    print("| measurement | ollamalike runner | reference | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    print(f"| single-stream decode (tok/s) vs Llama.generate | {ours:.1f} | {ref:.1f} | {ours / ref:.2f} | >= 0.95 |")
    for conc, (par, seq) in table.items():
        target = ">= 2.5" if conc == 8 else ""
        print(f"| {conc} concurrent: aggregate tok/s vs sequential | {par:.1f} | {seq:.1f} | {par / seq:.2f}x | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
