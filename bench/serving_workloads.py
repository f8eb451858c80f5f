"""The serving benchmark's long-context workloads, and llama-bench as the bare decode reference.

  llama-bench     ``llama-bench -p PP -n TG -r 1 -o json`` on the same model and threads, once per round:
                  pp (prompt tokens/s) and tg (generated tokens/s) with nothing but llama.cpp in the way.
  edit-this-code  a ~40-line Python function and "return it with one identifier renamed": the prompt holds
                  most of the answer, the workload where speculative decoding (prompt lookup, a draft
                  model) pays. Single-stream decode tokens/s of the answer, per contender.
  returning       a conversation with a ~2k-token history is answered, then as many other conversations
                  as there are slots arrive together (every slot is taken), then the first returns with one
                  more turn. Its time to first token against the first visit's (the same history evaluated
                  fresh): a prompt cache in host RAM across slots brings the ratio down (target <= 0.3).
Both run through the daemon's HTTP API (/api/chat, whose ``options`` carry any knob a workload turns) and
llama-server's /v1/chat/completions, on servers started with a longer context than the main phase.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

from common import Quiet, Timed, markdown_table, median, run_concurrent, tool_env  # type: ignore[import-not-found]
from serving_contenders import NAME, ChatRunner, Messages  # type: ignore[import-not-found]
from serving_report import Targets  # type: ignore[import-not-found]


def llama_bench(binary: Path, model: Path, threads: int, pp: int, tg: int) -> dict[str, float]:
    """{"pp<PP>": tokens/s, "tg<TG>": tokens/s} of one llama-bench run (its defaults otherwise)."""
    out = subprocess.run([str(binary), "-m", str(model), "-t", str(threads), "-p", str(pp), "-n", str(tg), "-r", "1",
                          "-o", "json"], check=True, capture_output=True, text=True, env=tool_env(binary)).stdout
    rates: dict[str, float] = {}
    for test in json.loads(out):
        name = f"pp{test['n_prompt']}" if test["n_prompt"] else f"tg{test['n_gen']}"
        rates[name] = float(test["avg_ts"])
    return rates


EDIT_FUNCTION = '''def summarize_orders(orders, customers, tax_rate=0.2, currency="EUR"):
    """Totals per customer, the biggest order and the orders left unpaid."""
    totals = {}
    biggest = None
    unpaid = []
    for order in orders:
        customer = customers.get(order["customer_id"])
        if customer is None:
            continue
        amount = 0.0
        for line in order["lines"]:
            price = line["unit_price"] * line["quantity"]
            if line.get("discount"):
                price -= price * line["discount"]
            amount += price
        amount += amount * tax_rate
        name = customer["name"]
        totals[name] = totals.get(name, 0.0) + amount
        if biggest is None or amount > biggest[1]:
            biggest = (order["id"], amount)
        if not order.get("paid", False):
            unpaid.append(order["id"])
    report = []
    for name in sorted(totals):
        report.append(f"{name}: {totals[name]:.2f} {currency}")
    if biggest is not None:
        report.append(f"biggest order: {biggest[0]} ({biggest[1]:.2f} {currency})")
    if unpaid:
        report.append("unpaid: " + ", ".join(str(i) for i in unpaid))
    else:
        report.append("unpaid: none")
    return {
        "totals": totals,
        "biggest": biggest,
        "unpaid": unpaid,
        "report": "\\n".join(report),
        "currency": currency,
        "customers": len(totals),
    }
'''
RENAMES = [("amount", "order_total"), ("totals", "per_customer"), ("biggest", "largest"), ("unpaid", "open_orders"),
           ("report", "lines_out"), ("price", "line_price")]


def edit_prompt(i: int) -> Messages:
    old, new = RENAMES[i % len(RENAMES)]
    # The request number comes first, so no two requests share a cached prefix.
    text = (f"Request {i}. Here is a Python function:\n\n```python\n{EDIT_FUNCTION}```\n\nReturn the whole "
            f"function with the variable `{old}` renamed to `{new}` everywhere. Change nothing else. Answer with "
            "the code only, in one ```python block.")
    return [{"role": "user", "content": text}]


WORDS = [
    "river", "stone", "light", "garden", "window", "market", "winter", "letter", "morning", "engine", "paper",
    "silver", "forest", "station", "kitchen", "bridge", "number", "signal", "harbor", "mountain", "pocket",
    "candle", "ladder", "mirror", "thunder", "orchard", "valley", "rocket", "blanket", "whistle", "lantern",
    "meadow", "compass", "cabinet", "feather", "island", "puzzle",
]


def history(conv: str, words: int) -> Messages:
    """A deterministic made-up conversation of about ``words`` words (about 1.2 tokens each), in four
    user/assistant exchanges, starting with its id so that no two share a prefix."""
    rng = random.Random(conv)
    per = max(words // 8, 8)

    def para() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(per)) + "."

    out: Messages = []
    for turn in range(4):
        out.append({"role": "user", "content": f"[{conv}] note {turn}: {para()} What do you make of it?"})
        out.append({"role": "assistant", "content": para()})
    return out


async def measure_edit(run: dict[str, ChatRunner], rounds: int, tokens: int, quiet: Quiet) -> tuple[str, dict[str, list[Timed]]]:
    got: dict[str, list[Timed]] = {who: [] for who in run}
    order = list(run)
    for rnd in range(rounds):
        for who in order if rnd % 2 == 0 else order[::-1]:
            quiet.wait()
            timed, _text, _n = await run[who](edit_prompt(rnd), tokens)
            got[who].append(timed)
        print(f"  edit-this-code: round {rnd + 1}/{rounds} done", file=sys.stderr)
    # An answer of fewer than 2 tokens (a base model ending a chat at once) has no decode rate.
    rows = [[NAME[w], f"{median(t.decode_rate for t in ts if t.tokens > 1):.1f}",
             f"{median(t.ttft * 1000 for t in ts):.0f}", f"{median(t.tokens for t in ts):.0f}"] for w, ts in got.items()]
    table = markdown_table(["contender", "decode tok/s", "TTFT ms", "tokens generated"], rows, 1)
    return f"### edit-this-code, single stream ({tokens} tokens asked, medians)\n\n{table}", got


async def measure_returning(run: dict[str, ChatRunner], rounds: int, words: int, slots: int, tokens: int,
                            quiet: Quiet, targets: Targets) -> str:
    fresh: dict[str, list[float]] = {who: [] for who in run}
    prompt_tokens: list[int] = []
    back: dict[str, list[float]] = {who: [] for who in run}
    order = list(run)
    for rnd in range(rounds):
        for who in order if rnd % 2 == 0 else order[::-1]:
            conv = history(f"conversation {rnd}", words)
            first = [*conv, {"role": "user", "content": "Sum it up in one sentence."}]
            quiet.wait()
            timed, answer, n_prompt = await run[who](first, tokens)
            fresh[who].append(timed.ttft)
            if n_prompt:
                prompt_tokens.append(n_prompt)
            # Every slot is taken by another conversation of a quarter of the size, all at once.
            others = [history(f"other {rnd}.{k}", words // 4) for k in range(slots)]
            await run_concurrent([lambda m=m, f=run[who]: f(m, tokens) for m in others])  # type: ignore[misc]
            returning = [*first, {"role": "assistant", "content": answer},
                         {"role": "user", "content": "And what should happen next?"}]
            quiet.wait()
            timed, _, _n = await run[who](returning, tokens)
            back[who].append(timed.ttft)
        print(f"  returning conversation: round {rnd + 1}/{rounds} done", file=sys.stderr)
    rows = []
    for who in run:
        rel = median(b / f for b, f in zip(back[who], fresh[who], strict=False))
        rows.append([NAME[who], f"{median(fresh[who]) * 1000:.0f}", f"{median(back[who]) * 1000:.0f}", f"{rel:.2f}x"])
        if who == "ours":
            targets.add("returning conversation: TTFT after its slot was taken vs evaluating it fresh", rel, "<=", 0.3)
    table = markdown_table(["contender", "fresh TTFT ms", "returning TTFT ms", "returning / fresh"], rows, 1)
    size = f"{median(prompt_tokens):.0f}-token" if prompt_tokens else f"~{words}-word"
    return f"### returning conversation ({size} history, {slots} slots taken in between, medians)\n\n{table}"
