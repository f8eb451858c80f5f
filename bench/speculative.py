"""Speculative decoding (issue 20): single-stream decode tokens/s with and without prompt lookup.

Run: ``.venv/bin/python bench/speculative.py [--model PATH|qwen|gemma|bench] [--threads N] [--runs N]
[--tokens N]``. Two runner processes on the same model, one with ``speculative`` on and one with it
off, are given the same requests in interleaved rounds (the machine's load drifts): greedy chats
whose answer is mostly in the prompt ("edit this code") and, for contrast, free-form questions.
The rate is the runner's own ``eval_count / eval_duration``. Prints a markdown table of medians and
checks that both runners produced the same tokens. Target: >= 1.5x on the edit workload.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import MODEL_CHOICES, describe_model, resolve_model  # type: ignore[import-not-found]  # noqa: E402

from ollamalike.config import Config  # noqa: E402
from ollamalike.runner.client import RunnerProcess, RunnerSpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"

CODE = '''import json
from dataclasses import dataclass


@dataclass
class Item:
    name: str
    price: float
    quantity: int


def load_items(path):
    with open(path) as f:
        data = json.load(f)
    return [Item(d["name"], d["price"], d["quantity"]) for d in data]


def total_price(items):
    total = 0.0
    for item in items:
        total += item.price * item.quantity
    return total


def cheapest(items):
    best = None
    for item in items:
        if best is None or item.price < best.price:
            best = item
    return best


def main():
    items = load_items("items.json")
    print("total:", total_price(items))
    print("cheapest:", cheapest(items).name)
'''
EDITS = [
    "Rename the function total_price to order_total everywhere. Reply with the whole file.",
    "Add type hints to every function. Reply with the whole file.",
    "Rename the class Item to Product everywhere. Reply with the whole file.",
]
FREE = ["Write a short poem about the sea.", "Explain what a hash map is in three sentences."]


def chat(user: str) -> str:
    """ChatML, as Qwen's template renders one user turn (the runner takes raw prompt text)."""
    return (f"<|im_start|>system\nYou are a helpful coding assistant.<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            "<|im_start|>assistant\n")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (a shared machine's steadier yardstick)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one(proc: RunnerProcess, prompt: str, tokens: int) -> tuple[float, float, list[int]]:
    """(decode tok/s by the runner's eval_duration, generated tokens per CPU second, the tokens)."""
    cpu = cpu_seconds(proc.pid)
    async for ev in proc.completion(prompt, {"temperature": 0, "num_predict": tokens}):
        if ev.get("done"):
            n = int(ev["eval_count"])
            return n / (int(ev["eval_duration"]) / 1e9), n / max(cpu_seconds(proc.pid) - cpu, 1e-3), list(ev["tokens"])
    raise RuntimeError("stream ended without done")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="qwen", help=MODEL_CHOICES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=400)
    ap.add_argument("--mode", choices=["on", "exact"], default="on", help="the speculating runner's mode")
    ap.add_argument("--flash-attn", action="store_true", help="both runners with flash attention ('exact' needs it)")
    ap.add_argument("--edits", type=int, default=len(EDITS), help="how many of the edit prompts to run")
    args = ap.parse_args()
    path = resolve_model(args.model)
    home = OUT / "home"
    config = Config(home=home, models_dir=home / "models")
    procs = {}
    for on in (True, False):
        # One slot: a single stream; the prompt and answer fit the slot's context.
        spec = RunnerSpec(str(path), ctx_size=4096, num_parallel=1, threads=args.threads,
                          speculative=args.mode if on else "off", flash_attn="on" if args.flash_attn else "off")
        procs[on] = await RunnerProcess.start(spec, config)
    try:
        workloads = {"edit this code": [chat(f"{e}\n\n```python\n{CODE}```") for e in EDITS[: args.edits]],
                     "free-form": [chat(q) for q in FREE]}
        rows = []
        for name, prompts in workloads.items():
            rates: dict[bool, list[float]] = {True: [], False: []}
            per_cpu: dict[bool, list[float]] = {True: [], False: []}
            same = True
            for r in range(args.runs):
                for p in prompts:
                    out: dict[bool, list[int]] = {}
                    for on in ((True, False) if r % 2 else (False, True)):
                        rate, cpu_rate, out[on] = await one(procs[on], p, args.tokens)
                        rates[on].append(rate)
                        per_cpu[on].append(cpu_rate)
                    same = same and out[True] == out[False]
            on_rate, off_rate = statistics.median(rates[True]), statistics.median(rates[False])
            cpu_ratio = statistics.median(per_cpu[True]) / statistics.median(per_cpu[False])
            rows.append((name, off_rate, on_rate, on_rate / off_rate, cpu_ratio, same))
        health = await procs[True].get_health()
    finally:
        for proc in procs.values():
            await proc.stop()
    print(f"\nModel: {describe_model(path)}; speculative={args.mode}, flash attention "
          f"{'on' if args.flash_attn else 'off'}; threads {args.threads}; up to {args.tokens} tokens; "
          f"medians of {args.runs} interleaved rounds\n")
    print("| workload | decode tok/s, speculation off | on | ratio | ratio of tokens per CPU second | same tokens |")
    print("|---|---:|---:|---:|---:|---|")
    for name, off_rate, on_rate, ratio, cpu_ratio, same in rows:
        print(f"| {name} | {off_rate:.1f} | {on_rate:.1f} | {ratio:.2f}x | {cpu_ratio:.2f}x | {'yes' if same else 'NO'} |")
    print(f"\ndrafts {health.get('spec_drafts')}, proposed {health.get('spec_proposed')}, "
          f"accepted {health.get('spec_accepted')}")


if __name__ == "__main__":
    asyncio.run(main())
