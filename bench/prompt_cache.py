"""The host-RAM prompt cache (issue 20): time to first token of a returning 2k-token conversation.

    .venv/bin/python bench/prompt_cache.py [--model qwen] [--rounds 3] [--history 2000] [--threads N]

Two one-slot runner processes of the same model, one with the prompt cache and one with
``prompt_cache=0``. Each round, for each of them in turn (interleaved): conversation A (a
``--history``-token chat), then B (another chat) takes the only slot, then A returns with its answer
and a new user turn. Measured: A's return, from sending it to its first streamed text, and the runner's
own prompt_eval_duration. Each round uses a new conversation, so nothing carries over between rounds.
Target: the cached TTFT at most 0.3x the uncached one.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import MODEL_CHOICES, describe_model, resolve_model  # noqa: E402
from ollamalike.config import Config  # noqa: E402
from ollamalike.runner.client import RunnerProcess, RunnerSpec  # noqa: E402


async def timed(proc: RunnerProcess, prompt: list[int], predict: int) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    first = 0.0
    final: dict[str, Any] = {}
    async for ev in proc.completion(prompt, {"temperature": 0, "num_predict": predict}, None):
        if "error" in ev:
            raise SystemExit(f"runner error: {ev['error']}")
        if not first and (ev.get("content") or ev.get("done")):
            first = time.perf_counter() - start
        if ev.get("done"):
            final = ev
    return first, final


async def chat(proc: RunnerProcess, round_no: int, tokens: int) -> list[int]:
    """A ChatML conversation of at least ``tokens`` tokens, different for every round."""
    facts = []
    text = ""
    i = 0
    while True:
        facts.append(f"Fact {round_no}.{i}: the {['red', 'green', 'blue', 'amber'][i % 4]} box number {i * 7 + round_no} "
                     f"holds {i % 13 + 2} stones.")
        i += 1
        if i % 20 == 0:
            text = ("<|im_start|>system\nYou are an assistant that remembers facts.\n" + " ".join(facts)
                    + "<|im_end|>\n<|im_start|>user\nWhich box holds the most stones?<|im_end|>\n<|im_start|>assistant\n")
            ids = await proc.tokenize(text)
            if len(ids) >= tokens:
                return ids


async def one_round(proc: RunnerProcess, round_no: int, history: int) -> tuple[float, int, int]:
    a = await chat(proc, round_no, history)
    _, first = await timed(proc, a, 16)
    b = await proc.tokenize(f"<|im_start|>user\nName {round_no + 3} colours.<|im_end|>\n<|im_start|>assistant\n")
    await timed(proc, b, 16)
    turn = await proc.tokenize("<|im_end|>\n<|im_start|>user\nAnd which holds the fewest?<|im_end|>\n"
                               "<|im_start|>assistant\n", add_special=False)
    ttft, final = await timed(proc, [*a, *first["tokens"], *turn], 8)
    return ttft, int(final["prompt_eval_duration"]), int(final["cached_tokens"])


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help=f"the model: {MODEL_CHOICES} (default qwen when fetched)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--history", type=int, default=2000, help="tokens in the returning conversation")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--cache-bytes", type=int, default=1 << 30)
    args = p.parse_args()
    model = resolve_model(args.model)
    home = Path(__file__).resolve().parent / "out" / "prompt-cache-home"
    config = Config(home=home, models_dir=home / "models")
    ctx = args.history + 512
    procs = {}
    for name, limit in (("cache", args.cache_bytes), ("no cache", 0)):
        spec = RunnerSpec(str(model), ctx_size=ctx, num_parallel=1, num_batch=512, threads=args.threads,
                          prompt_cache=limit)
        procs[name] = await RunnerProcess.start(spec, config)
    rows: dict[str, list[tuple[float, int, int]]] = {name: [] for name in procs}
    try:
        for r in range(args.rounds):
            for name, proc in procs.items():
                rows[name].append(await one_round(proc, r, args.history))
                ttft, prompt_ns, cached = rows[name][-1]
                print(f"round {r} {name}: TTFT {ttft * 1000:.0f} ms, prompt eval {prompt_ns / 1e6:.0f} ms, "
                      f"cached {cached}", file=sys.stderr)
    finally:
        for proc in procs.values():
            await proc.stop()
    print(f"\nmodel: {describe_model(model)}; returning conversation of ~{args.history} tokens; "
          f"{args.rounds} rounds, medians\n")
    print("| runner | TTFT of the returning conversation | prompt eval | cached tokens |")
    print("|---|---:|---:|---:|")
    med = {}
    for name, values in rows.items():
        med[name] = statistics.median(v[0] for v in values)
        print(f"| {name} | {med[name] * 1000:.0f} ms | {statistics.median(v[1] for v in values) / 1e6:.0f} ms | "
              f"{statistics.median(v[2] for v in values):.0f} |")
    print(f"\nTTFT with the cache / without: {med['cache'] / med['no cache']:.3f} (target <= 0.3)")


if __name__ == "__main__":
    asyncio.run(main())
