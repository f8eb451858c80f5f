"""Benchmark of the runner engine against llama-cpp-python's ``Llama`` on the same model and threads.

Run: ``.venv/bin/python bench/engine.py [--model PATH|starter|qwen|gemma|bench] [--threads N] [--runs N] [--tokens N]``.
The model defaults to the real Qwen2.5-Coder 0.5B when it is fetched (docs/models.md), else ``bench``: a
~100M-parameter random llama (Q4_0) generated once under bench/out/. Measured:
  1. single-stream decode tokens/s: our runner (one request) vs ``Llama.generate`` (greedy, same prompt);
  2. aggregate tokens/s with 1, 2, 4, 8 concurrent requests vs the same requests one after another;
  3. bare llama_decode with 1, 2, 4, 8 sequences per batch: what batching can gain on this CPU at all.
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

from common import MODEL_CHOICES, describe_model, resolve_model  # type: ignore[import-not-found]  # noqa: E402

from ollamalike.config import Config  # noqa: E402
from ollamalike.runner.client import RunnerProcess, RunnerSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
PROMPT = "once upon a time there was a little dog and a big cat in the house"
GREEDY = {"temperature": 0, "repeat_penalty": 1.0}


def llama_rate(llm: object, prompt: list[int], tokens: int) -> float:
    """Decode rate of Llama.generate: tokens after the first, over the time since the first."""
    n, first = 0, 0.0
    for _tok in llm.generate(prompt, temp=0.0, repeat_penalty=1.0, reset=True):  # type: ignore[attr-defined]
        n += 1
        if n == 1:
            first = time.perf_counter()
        if n == tokens:
            break
    return (n - 1) / (time.perf_counter() - first)


def raw_decode_scaling(path: Path, threads: int, steps: int = 20) -> dict[int, float]:
    """Tokens/s of bare llama_decode with 1, 2, 4, 8 sequences per batch: the ceiling batching can reach."""
    import llama_cpp

    from ollamalike.runner.llama import load_model
    from ollamalike.runner.spec import RunnerSpec

    m = load_model(RunnerSpec(str(path), ctx_size=8 * 512, num_parallel=8, threads=threads), [0.0])
    batch = llama_cpp.llama_batch_init(8, 0, 1)
    rates: dict[int, float] = {}
    try:
        for n in (1, 2, 4, 8):
            times = []
            for pos in range(steps):
                for i in range(n):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = 100 + i, pos, 1, 1
                    batch.seq_id[i][0] = i
                batch.n_tokens = n
                t = time.perf_counter()
                llama_cpp.llama_decode(m.ctx, batch)
                times.append(time.perf_counter() - t)
            rates[n] = n / statistics.median(times)
            llama_cpp.llama_memory_clear(m.mem, True)
    finally:
        llama_cpp.llama_batch_free(batch)
        m.close()
    return rates


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


async def runner_bench(
    path: Path, threads: int, tokens: int, runs: int
) -> tuple[list[float], list[float], dict[int, tuple[float, float]]]:
    from llama_cpp import Llama

    home = OUT / "home"
    config = Config(home=home, models_dir=home / "models")
    spec = RunnerSpec(str(path), ctx_size=8 * 512, num_parallel=8, num_batch=512, threads=threads)
    llm = Llama(str(path), n_ctx=1024, n_batch=512, n_threads=threads, n_threads_batch=threads, verbose=False)
    llama_prompt = llm.tokenize(PROMPT.encode())
    proc = await RunnerProcess.start(spec, config)
    try:
        await one(proc, PROMPT + " warm", tokens)
        llama_rate(llm, llama_prompt, tokens)
        # Interleaved, so both see the same machine load (a shared machine's load drifts).
        ours, ref = [], []
        for i in range(runs):
            ours.append((await one(proc, f"{PROMPT} {i}", tokens))[1])
            ref.append(llama_rate(llm, llama_prompt, tokens))
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
        return ours, ref, table
    finally:
        await proc.stop()
        del llm


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Physical cores are best; on a shared or small machine use fewer threads than free cores, or ggml's
    # spinning thread barriers stall whenever one of its threads is preempted.
    ap.add_argument("--threads", type=int, default=max(1, min((os.cpu_count() or 2) // 2, 8)))
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--model", default=None, help=f"{MODEL_CHOICES} (default: qwen when fetched, else bench)")
    args = ap.parse_args()
    path = resolve_model(args.model)
    single_ours, single_llama, table = asyncio.run(runner_bench(path, args.threads, args.tokens, args.runs))
    raw = raw_decode_scaling(path, args.threads)
    ours, ref = statistics.median(single_ours), statistics.median(single_llama)
    print(f"model: {describe_model(path)}, threads={args.threads}, "
          f"{args.tokens} tokens per request, median of {args.runs} runs\n")
    print("| measurement | ollamalike runner | reference | ratio | target |")
    print("|---|---:|---:|---:|---:|")
    print(f"| single-stream decode (tok/s) vs Llama.generate | {ours:.1f} | {ref:.1f} | {ours / ref:.2f} | >= 0.95 |")
    for conc, (par, seq) in table.items():
        target = ">= 2.5" if conc == 8 else ""
        print(f"| {conc} concurrent: aggregate tok/s vs sequential | {par:.1f} | {seq:.1f} | {par / seq:.2f}x | {target} |")
    for n, rate in raw.items():
        print(f"| raw llama_decode, {n} sequences per batch (tok/s) vs 1 per batch | {rate:.1f} | {raw[1]:.1f} "
              f"| {rate / raw[1]:.2f}x | ceiling |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
