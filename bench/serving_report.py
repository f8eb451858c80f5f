"""The serving benchmark's tables and plot: medians per contender, ratios, and issue 20's targets.

Medians are over requests (TTFT, latency) or over repetitions (decode rate, aggregate). The targets
table takes the median of per-repetition ratios ours / llama-server: the two were measured back to back
in each repetition, so load that drifts between repetitions cancels out of each ratio.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import Timed, markdown_table, median, ratio, winner  # type: ignore[import-not-found]
from serving_contenders import KINDS, LABEL, NAME  # type: ignore[import-not-found]

Results = dict[tuple[str, str], list[Timed]]  # (kind, who) -> one request per repetition
Batch = tuple[list[Timed], float]  # the requests of one concurrent batch, its wall time
Concurrent = dict[tuple[str, str, int], list[Batch]]  # (kind, who, clients) -> one batch per repetition


@dataclass
class Targets:
    """Rows of the targets table: what, the measured ratio, the goal (<= or >= a bound)."""

    rows: list[tuple[str, float, str, float]] = field(default_factory=list)

    def add(self, what: str, value: float, op: str, bound: float) -> None:
        self.rows.append((what, value, op, bound))

    def table(self) -> str:
        out = []
        for what, value, op, bound in self.rows:
            if value != value:
                met = "-"
            else:
                met = "yes" if (value <= bound if op == "<=" else value >= bound) else "no"
            out.append([what, "-" if value != value else f"{value:.2f}x", f"{op} {bound:g}x", met])
        return markdown_table(["target", "measured (median of per-round ratios)", "goal", "met"], out, 1)


def measured_kinds(single: Results) -> list[str]:
    """The request kinds measured (chat is left out for a base model)."""
    return [k for k in KINDS if (k, "ours") in single]


def agg_rate(batch: Batch) -> float:
    timed, wall = batch
    return sum(t.tokens for t in timed) / wall


def round_ratios(a: list[float], b: list[float]) -> float:
    """The median of a[i] / b[i] over the repetitions both have."""
    return median(x / y for x, y in zip(a, b, strict=False) if y and x == x and y == y)


def report(single: Results, conc: Concurrent, mem: dict[str, Any], raw_growth_mib: float, servers: list[str],
           args: argparse.Namespace) -> str:
    """The main table: single stream, 1..N clients and memory, ours against each server and raw Llama."""
    who_all = ["ours", *servers]
    kinds = measured_kinds(single)
    has_raw = ("completion", "raw") in single
    rows: list[list[str]] = []

    def row(what: str, metric: str, values: dict[str, float], ref: float, higher: bool, fmt: str) -> None:
        cells = ["-" if values.get(w, float("nan")) != values.get(w, float("nan")) else format(values[w], fmt)
                 for w in who_all]
        if has_raw:
            cells.append("-" if ref != ref else format(ref, fmt))
        cells += [ratio(values["ours"], values[w]) for w in servers]
        if has_raw:
            cells.append(ratio(values["ours"], ref))
        others = [w for w in servers if values[w] == values[w]]
        best = (max if higher else min)(others, key=lambda w: values[w]) if others else None
        cells.append(winner(values["ours"], values[best], higher, name=NAME[best]) if best else "-")
        rows.append([what, metric, *cells])

    serial = ({k: median(t.tokens / t.latency for t in single[(k, "raw")]) for k in kinds} if has_raw
              else dict.fromkeys(kinds, float("nan")))
    nan = float("nan")
    for kind in kinds:
        what = f"single stream, {kind}"
        raw_ttft = median(t.ttft * 1000 for t in single[(kind, "raw")]) if has_raw else nan
        raw_rate = median(t.decode_rate for t in single[(kind, "raw")]) if has_raw else nan
        row(what, "TTFT ms", {w: median(t.ttft * 1000 for t in single[(kind, w)]) for w in who_all}, raw_ttft,
            False, ".0f")
        row(what, "decode tok/s", {w: median(t.decode_rate for t in single[(kind, w)]) for w in who_all}, raw_rate,
            True, ".1f")
    for clients in args.clients:
        for kind in kinds:
            what = f"{clients} client{'s' if clients > 1 else ''}, {kind}"
            batches = {w: conc[(kind, w, clients)] for w in who_all}
            row(what, "aggregate tok/s", {w: median(agg_rate(b) for b in bs) for w, bs in batches.items()},
                serial[kind], True, ".1f")
            row(what, "p50 latency s", {w: median(t.latency for ts, _ in bs for t in ts) for w, bs in batches.items()},
                nan, False, ".2f")
            row(what, "p50 TTFT ms", {w: median(t.ttft * 1000 for ts, _ in bs for t in ts) for w, bs in batches.items()},
                nan, False, ".0f")
    row("memory", "peak RSS MiB (VmHWM)", {w: mem[w][0] for w in who_all}, raw_growth_mib, False, ".0f")
    row("memory", "RSS MiB at end (VmRSS)", {w: mem[w][1] for w in who_all}, nan, False, ".0f")
    headers = ["workload", "metric", *(NAME[w] for w in who_all)]
    headers += ["raw Llama"] if has_raw else []
    headers += [f"ours / {NAME[w]}" for w in servers] + (["ours / raw"] if has_raw else []) + ["winner"]
    lines = [markdown_table(headers, rows, align_right_from=2), ""]
    lines.append(f"ours = daemon (pid {mem['pids'][0]}, peak {mem['daemon'][0]:.0f} MiB) + runner "
                 f"(peak {mem['runner'][0]:.0f} MiB)" + ("; raw Llama memory = growth of this process after loading."
                                                          if has_raw else "."))
    lines.append(token_counts(single, conc, args.tokens))
    return "\n".join(lines)


def token_counts(single: Results, conc: Concurrent, asked: int) -> str:
    counts: dict[str, list[Timed]] = {}
    for (kind, who), ts in single.items():
        counts.setdefault(LABEL[(kind, who)], []).extend(ts)
    for (kind, who, _clients), runs in conc.items():
        counts.setdefault(LABEL[(kind, who)], []).extend(t for ts, _wall in runs for t in ts)
    lines = [f"token counts ({asked} asked per request):"]
    for label, ts in counts.items():
        full = sum(1 for t in ts if t.tokens == asked and t.finish == "length")
        early = [t.tokens for t in ts if t.finish != "length"]
        inexact = sum(1 for t in ts if not t.exact)
        note = f", ended early (EOS) with {sorted(early)} tokens" if early else ""
        note += f", {inexact} counted by re-tokenizing" if inexact else ""
        lines.append(f"- {label}: {full}/{len(ts)} requests generated exactly {asked}{note}")
    return "\n".join(lines)


def main_targets(targets: Targets, single: Results, conc: Concurrent, mem: dict[str, Any],
                 bench_tg: list[float], clients: list[int]) -> None:
    """Issue 20's targets that the main phase measures, against llama-server (and llama-bench tg)."""
    for kind in measured_kinds(single):
        ours = [t.decode_rate for t in single[(kind, "ours")]]
        theirs = [t.decode_rate for t in single[(kind, "llama")]]
        targets.add(f"single-stream decode ({kind}) vs llama-server", round_ratios(ours, theirs), ">=", 1.0)
    if bench_tg:
        for kind in measured_kinds(single):
            ours_rate = median(t.decode_rate for t in single[(kind, "ours")])
            targets.add(f"single-stream decode ({kind}) vs llama-bench tg (ratio of medians)",
                        ours_rate / median(bench_tg), ">=", 0.95)
    for n in (4, 8):
        if n not in clients:
            continue
        for kind in measured_kinds(single):
            ours_b, theirs_b = conc[(kind, "ours", n)], conc[(kind, "llama", n)]
            targets.add(f"median TTFT at {n} clients ({kind}) vs llama-server",
                        round_ratios([median(t.ttft for t in b[0]) for b in ours_b],
                                     [median(t.ttft for t in b[0]) for b in theirs_b]), "<=", 1.0)
    if 8 in clients:
        for kind in measured_kinds(single):
            targets.add(f"aggregate tok/s at 8 clients ({kind}) vs llama-server --parallel 8",
                        round_ratios([agg_rate(b) for b in conc[(kind, "ours", 8)]],
                                     [agg_rate(b) for b in conc[(kind, "llama", 8)]]), ">=", 1.1)
    targets.add("peak RSS, daemon + runner vs llama-server (one measurement)", mem["ours"][0] / mem["llama"][0],
                "<=", 1.1)


def plot(conc: Concurrent, single: Results, clients: list[int], servers: list[str], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles = {"ours": "-o", "server": "--s", "llama": "-.^"}
    for kind in measured_kinds(single):
        for who in ("ours", *servers):
            ys = [median(agg_rate(b) for b in conc[(kind, who, c)]) for c in clients]
            ax.plot(clients, ys, styles[who], label=LABEL[(kind, who)])
        if (kind, "raw") in single:
            ref = median(t.tokens / t.latency for t in single[(kind, "raw")])
            ax.axhline(ref, linestyle=":", color="grey" if kind == "completion" else "black",
                       label=f"{LABEL[(kind, 'raw')]} (one at a time)")
    ax.set_xlabel("concurrent clients")
    ax.set_ylabel("aggregate tokens/s (median)")
    ax.set_xticks(clients)
    ax.set_ylim(bottom=0)
    ax.set_title(f"Serving throughput, {title} on CPU")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
