"""Serving benchmark: our daemon vs llama-cpp-python's own server vs raw ``Llama``, side by side in one run.

Run: ``.venv/bin/python bench/serving.py [--quick] [--model PATH|starter|qwen|gemma|bench]`` (needs the
``bench`` extra for llama_cpp.server). The model defaults to the real Qwen2.5-Coder 0.5B when it is fetched
(docs/models.md), else the ~100M-parameter random Q4_0 llama under bench/out/. With the same threads and
per-request context:
  ours    ``ollamalike serve`` (private home, model made with /api/blobs + /api/create), via /api/generate
          (raw prompt, NDJSON) and /v1/chat/completions (SSE);
  server  ``python -m llama_cpp.server`` via /v1/completions and /v1/chat/completions (SSE);
  raw     ``Llama.create_completion`` / ``create_chat_completion`` in this process (no HTTP at all).
Workloads: single stream (time to first token, client-side decode tokens/s); 1/4/8 concurrent clients
(aggregate tokens/s, median latency and TTFT); peak RSS of the serving processes. Greedy sampling and a
fixed token budget per request; token counts are checked from the servers' own answers. Servers take
turns (A B, then B A) in every repetition to cancel drift. Prints a markdown table of medians with
ratios and writes bench/out/serving.png. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from common import (  # type: ignore[import-not-found]
    MODEL_CHOICES,
    OUT,
    Timed,
    describe_model,
    markdown_table,
    median,
    memory_mib,
    proc_status_kib,
    ratio,
    resolve_model,
    run_concurrent,
    stop_process,
    timed_ollama_generate,
    timed_openai,
    wait_http,
    winner,
)

from tests.daemon import Daemon, descendants, free_port, start_daemon

MODEL = "bench-serving"
SEED = 42
KINDS = ("completion", "chat")
WHO = ("ours", "server", "raw")
LABEL = {
    ("completion", "ours"): "ours /api/generate",
    ("chat", "ours"): "ours /v1/chat/completions",
    ("completion", "server"): "llama_cpp.server /v1/completions",
    ("chat", "server"): "llama_cpp.server /v1/chat/completions",
    ("completion", "raw"): "raw Llama.create_completion",
    ("chat", "raw"): "raw Llama.create_chat_completion",
}
Runner = Callable[[str, int], Awaitable[Timed]]


def prompt(tag: str) -> str:
    # The tag comes first so no two requests share a prefix: every prompt is really evaluated.
    return f"{tag}: once upon a time there was a little dog and a big cat in the house. tell me about the sun"


class Raw:
    """llama-cpp-python's high-level API in this process: the single-stream reference."""

    def __init__(self, path: Path, ctx: int, threads: int) -> None:
        from llama_cpp import Llama

        before = proc_status_kib(os.getpid(), "VmRSS")
        self.llm = Llama(str(path), n_ctx=ctx, n_batch=512, n_threads=threads, n_threads_batch=threads,
                         seed=SEED, verbose=False)
        self.rss_growth_kib = proc_status_kib(os.getpid(), "VmRSS") - before

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False))

    def _timed(self, chunks: Any, n: int) -> Timed:
        start = time.perf_counter()
        first, finish, parts = 0.0, "", []
        for chunk in chunks:
            choice = chunk["choices"][0]
            text = choice["text"] if "text" in choice else choice.get("delta", {}).get("content")
            if text:
                parts.append(text)
                first = first or time.perf_counter()
            finish = choice.get("finish_reason") or finish
        end = time.perf_counter()
        if finish == "length":
            return Timed(start, first or end, end, n, finish, True)
        return Timed(start, first or end, end, self.count("".join(parts)), finish, False)

    def completion(self, text: str, n: int) -> Timed:
        self.llm.reset()  # no prefix reuse from the screening call: the prompt is evaluated in full
        return self._timed(self.llm.create_completion(text, max_tokens=n, temperature=0.0, repeat_penalty=1.0,
                                                      seed=SEED, stream=True), n)

    def chat(self, text: str, n: int) -> Timed:
        self.llm.reset()
        return self._timed(self.llm.create_chat_completion([{"role": "user", "content": text}], max_tokens=n,
                                                           temperature=0.0, repeat_penalty=1.0, seed=SEED,
                                                           stream=True), n)

    def first_text(self, kind: str, text: str) -> bool:
        """Whether the greedy first token is whole UTF-8 text: llama-cpp-python holds back a stream whose
        text is not valid UTF-8 until the end, which on random weights would turn TTFT into total time."""
        if kind == "completion":
            out: Any = self.llm.create_completion(text, max_tokens=1, temperature=0.0, seed=SEED)
            return bool(out["choices"][0]["text"].strip())
        out = self.llm.create_chat_completion([{"role": "user", "content": text}], max_tokens=1,
                                              temperature=0.0, seed=SEED)
        return bool((out["choices"][0]["message"]["content"] or "").strip())


def start_llama_server(path: Path, port: int, ctx: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    # interrupt_requests=False: by default the server cuts a running stream short whenever another
    # request waits, which would make concurrent clients get fewer tokens than they asked for.
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(ctx), "--n_batch", "512", "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--interrupt_requests", "False", "--seed", str(SEED)]
    with log.open("ab") as f:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)


async def create_model(session: aiohttp.ClientSession, base: str, path: Path, ctx: int) -> None:
    """Upload the GGUF as a blob and create the model from it, as `ollamalike create` would."""
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            sha.update(block)
    digest = "sha256:" + sha.hexdigest()
    with path.open("rb") as f:
        async with session.post(f"{base}/api/blobs/{digest}", data=f) as resp:
            if resp.status not in (200, 201):
                raise RuntimeError(f"blob upload -> {resp.status}: {await resp.text()}")
    body = {"model": MODEL, "files": {path.name: digest}, "stream": False,
            "parameters": {"num_ctx": ctx, "repeat_penalty": 1.0}}
    async with session.post(f"{base}/api/create", json=body) as resp:
        if resp.status != 200:
            raise RuntimeError(f"/api/create -> {resp.status}: {await resp.text()}")


def runners(session: aiohttp.ClientSession, ours: str, server: str, raw: Raw) -> dict[tuple[str, str], Runner]:
    count = raw.count

    async def ours_generate(text: str, n: int) -> Timed:
        body = {"model": MODEL, "prompt": text, "raw": True, "stream": True,
                "options": {"num_predict": n, "temperature": 0, "seed": SEED}}
        return await timed_ollama_generate(session, f"{ours}/api/generate", body)

    async def ours_chat(text: str, n: int) -> Timed:
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": n,
                "temperature": 0, "seed": SEED, "stream": True, "stream_options": {"include_usage": True}}
        return await timed_openai(session, f"{ours}/v1/chat/completions", body, count)

    async def server_completion(text: str, n: int) -> Timed:
        body = {"prompt": text, "max_tokens": n, "temperature": 0, "repeat_penalty": 1.0, "seed": SEED,
                "stream": True}
        return await timed_openai(session, f"{server}/v1/completions", body, count)

    async def server_chat(text: str, n: int) -> Timed:
        body = {"messages": [{"role": "user", "content": text}], "max_tokens": n, "temperature": 0,
                "repeat_penalty": 1.0, "seed": SEED, "stream": True}
        return await timed_openai(session, f"{server}/v1/chat/completions", body, count)

    async def raw_completion(text: str, n: int) -> Timed:
        return raw.completion(text, n)  # blocks the loop on purpose: nothing else runs meanwhile

    async def raw_chat(text: str, n: int) -> Timed:
        return raw.chat(text, n)

    return {("completion", "ours"): ours_generate, ("chat", "ours"): ours_chat,
            ("completion", "server"): server_completion, ("chat", "server"): server_chat,
            ("completion", "raw"): raw_completion, ("chat", "raw"): raw_chat}


def good_prompts(raw: Raw, count: int, n: int, model: Path) -> list[str]:
    """``count`` prompts whose greedy answer runs the full ``n`` tokens (no EOS) both as a completion
    and as a chat, and starts with whole text (``Raw.first_text``), so every request asks for the
    same work. Found once with the raw model and cached in bench/out/ next to the model."""
    import llama_cpp

    cache = OUT / f"serving-prompts-{model.stem}.json"
    stat = model.stat()
    key = {"model": [stat.st_size, stat.st_mtime_ns], "llama_cpp": llama_cpp.__version__}
    good: list[str] = []
    if cache.exists():
        saved = json.loads(cache.read_text())
        # A greedy answer that runs 64 tokens without EOS also runs its first 32.
        if saved.get("key") == key and saved.get("tokens", 0) >= n:
            good, n = saved["prompts"], saved["tokens"]
    tried = len(good)
    start = time.perf_counter()
    i = int(good[-1].split(":")[0][1:]) + 1 if good else 0
    while len(good) < count and tried < 20 * count:
        text = prompt(f"q{i}")
        i += 1
        tried += 1
        if (raw.completion(text, n).finish == "length" and raw.first_text("completion", text)
                and raw.chat(text, n).finish == "length" and raw.first_text("chat", text)):
            good.append(text)
            if len(good) % 20 == 0:
                print(f"  screening prompts (once, cached): {len(good)}/{count}", file=sys.stderr)
    if time.perf_counter() - start > 1:
        print(f"  screened prompts: {len(good)} good ({time.perf_counter() - start:.0f}s)", file=sys.stderr)
        cache.write_text(json.dumps({"key": key, "tokens": n, "prompts": good}, indent=1))
    if len(good) < count:
        raise RuntimeError(f"only {len(good)} of {count} prompts run {n} tokens without EOS")
    return good[:count]


Results = dict[tuple[str, str], list[Timed]]  # (kind, who) -> requests
Concurrent = dict[tuple[str, str, int], list[tuple[list[Timed], float]]]  # (kind, who, clients) -> batches


async def measure(run: dict[tuple[str, str], Runner], prompts: list[str], args: argparse.Namespace,
                  ) -> tuple[Results, Concurrent]:
    n = args.tokens
    texts = iter(prompts)  # every request gets its own prompt, shared by the servers compared
    for key in run:  # warm-up: loads our model, fills caches and thread pools everywhere
        await run[key](prompt(f"warm {key[0]} {key[1]}"), n)
    single: Results = {key: [] for key in run}
    for rep in range(args.reps):
        order: tuple[str, ...] = WHO if rep % 2 == 0 else WHO[::-1]
        for kind in KINDS:
            text = next(texts)
            for who in order:
                single[(kind, who)].append(await run[(kind, who)](text, n))
        print(f"  single stream: repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    conc: Concurrent = {}
    for rep in range(args.reps):
        for clients in args.clients:
            for kind in KINDS:
                pair = ("ours", "server") if (rep + clients) % 2 == 0 else ("server", "ours")
                batch = [next(texts) for _ in range(clients)]
                for who in pair:
                    jobs = [lambda t=t, f=run[(kind, who)]: f(t, n) for t in batch]  # type: ignore[misc]
                    conc.setdefault((kind, who, clients), []).append(await run_concurrent(jobs))
        print(f"  concurrency: repetition {rep + 1}/{args.reps} done", file=sys.stderr)
    return single, conc


def report(single: Results, conc: Concurrent, mem: dict[str, Any], raw: Raw, args: argparse.Namespace) -> str:
    rows: list[list[str]] = []

    def row(what: str, metric: str, ours: float, server: float, ref: float, higher: bool, fmt: str) -> None:
        cells = ["-" if v != v else format(v, fmt) for v in (ours, server, ref)]
        rows.append([what, metric, *cells, ratio(ours, server), ratio(ours, ref),
                     winner(ours, server, higher)])

    serial = {k: median(t.tokens / t.latency for t in single[(k, "raw")]) for k in KINDS}
    for kind in KINDS:
        what = f"single stream, {kind}"
        first = [median(t.ttft * 1000 for t in single[(kind, w)]) for w in WHO]
        rate = [median(t.decode_rate for t in single[(kind, w)]) for w in WHO]
        row(what, "TTFT ms", first[0], first[1], first[2], False, ".0f")
        row(what, "decode tok/s", rate[0], rate[1], rate[2], True, ".1f")
    for clients in args.clients:
        for kind in KINDS:
            what = f"{clients} client{'s' if clients > 1 else ''}, {kind}"
            batches = {w: conc[(kind, w, clients)] for w in ("ours", "server")}
            agg = {w: median(sum(t.tokens for t in ts) / wall for ts, wall in b) for w, b in batches.items()}
            row(what, "aggregate tok/s", agg["ours"], agg["server"], serial[kind], True, ".1f")
            lat = {w: median(t.latency for ts, _ in b for t in ts) for w, b in batches.items()}
            row(what, "p50 latency s", lat["ours"], lat["server"], float("nan"), False, ".2f")
            ttft = {w: median(t.ttft * 1000 for ts, _ in b for t in ts) for w, b in batches.items()}
            row(what, "p50 TTFT ms", ttft["ours"], ttft["server"], float("nan"), False, ".0f")
    row("memory", "peak RSS MiB (VmHWM)", mem["ours"][0], mem["server"][0], raw.rss_growth_kib / 1024, False, ".0f")
    row("memory", "RSS MiB at end (VmRSS)", mem["ours"][1], mem["server"][1], float("nan"), False, ".0f")
    headers = ["workload", "metric", "ours", "llama_cpp.server", "raw Llama", "ours / server", "ours / raw", "winner"]
    lines = [markdown_table(headers, rows, align_right_from=2), ""]
    lines.append(f"ours = daemon (pid {mem['pids'][0]}, peak {mem['daemon'][0]:.0f} MiB) + runner "
                 f"(peak {mem['runner'][0]:.0f} MiB); raw Llama memory = growth of this process after loading.")
    counts: dict[str, list[Timed]] = {}
    for (kind, who), ts in single.items():
        counts.setdefault(LABEL[(kind, who)], []).extend(ts)
    for (kind, who, _clients), runs in conc.items():
        counts[LABEL[(kind, who)]].extend(t for ts, _wall in runs for t in ts)
    lines.append(f"token counts ({args.tokens} asked per request):")
    for label, ts in counts.items():
        full = sum(1 for t in ts if t.tokens == args.tokens and t.finish == "length")
        early = [t.tokens for t in ts if t.finish != "length"]
        inexact = sum(1 for t in ts if not t.exact)
        note = f", ended early (EOS) with {sorted(early)} tokens" if early else ""
        note += f", {inexact} counted by re-tokenizing" if inexact else ""
        lines.append(f"- {label}: {full}/{len(ts)} requests generated exactly {args.tokens}{note}")
    return "\n".join(lines)


def plot(conc: Concurrent, single: Results, clients: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    styles = {"ours": "-o", "server": "--s"}
    for kind in KINDS:
        for who in ("ours", "server"):
            ys = [median(sum(t.tokens for t in ts) / wall for ts, wall in conc[(kind, who, c)]) for c in clients]
            ax.plot(clients, ys, styles[who], label=LABEL[(kind, who)])
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


async def run_all(args: argparse.Namespace) -> int:
    path = resolve_model(args.model)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_before = os.getloadavg()
    raw = Raw(path, args.ctx, args.threads)
    prompts = good_prompts(raw, args.reps * (len(KINDS) + len(KINDS) * sum(args.clients)), args.tokens, path)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        home = Path(tmp)
        port = free_port()
        server = start_llama_server(path, port, args.ctx, args.threads, home / "llama-server.log")
        daemon: Daemon | None = None
        try:
            daemon = start_daemon(home / "ours", {
                "OLLAMALIKE_NUM_PARALLEL": str(max(args.clients)), "OLLAMALIKE_NUM_THREADS": str(args.threads),
                "OLLAMALIKE_KEEP_ALIVE": "-1", "OLLAMALIKE_MAX_LOADED_MODELS": "1"})
            server_url = f"http://127.0.0.1:{port}"
            try:
                wait_http(f"{server_url}/v1/models", server, 120, "llama_cpp.server")
            except RuntimeError as e:
                # Its log lives in the temporary home, gone after this block: show why it failed now.
                tail = (home / "llama-server.log").read_text(errors="replace").splitlines()[-15:]
                raise RuntimeError("\n".join([str(e), *tail, "(is the bench extra installed? "
                                              ".venv/bin/pip install -e '.[bench]')"])) from None
            timeout = aiohttp.ClientTimeout(total=600)
            async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:
                await create_model(session, daemon.base_url, path, args.ctx)
                single, conc = await measure(runners(session, daemon.base_url, server_url, raw), prompts, args)
            daemon.note_children()
            kids = descendants(daemon.proc.pid)
            pids = [daemon.proc.pid, *kids]
            mem = {"ours": memory_mib(pids), "server": memory_mib([server.pid]), "pids": pids,
                   "daemon": memory_mib([daemon.proc.pid]), "runner": memory_mib(kids)}
        finally:
            if daemon is not None:
                daemon.stop(check=False)
            stop_process(server)
    elapsed = (datetime.datetime.now(datetime.timezone.utc) - started).total_seconds()
    print(f"\nserving benchmark, {started:%Y-%m-%d %H:%M} UTC, {platform.machine()} with {os.cpu_count()} cores "
          f"(load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after), {elapsed:.0f}s")
    print(f"model {describe_model(path)}, threads={args.threads}, "
          f"context {args.ctx} per request (ours: {max(args.clients)} slots), greedy, {args.tokens} tokens per "
          f"request, medians over {args.reps} repetitions" + (f", env {' '.join(args.env)}" if args.env else "") + "\n")
    print(report(single, conc, mem, raw, args))
    out = OUT / "serving.png"
    plot(conc, single, args.clients, out, path.name)
    print(f"\nplot: {out}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer tokens and repetitions (about 2 minutes)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--tokens", type=int, default=None, help="tokens per request (default 64, quick 32)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5, quick 3)")
    ap.add_argument("--clients", default="1,4,8", help="concurrency levels, comma-separated")
    ap.add_argument("--ctx", type=int, default=512, help="context per request (per slot)")
    ap.add_argument("--model", default=None, help=f"{MODEL_CHOICES} (default: qwen when fetched, else bench)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="environment for all three (e.g. OMP_WAIT_POLICY=PASSIVE); repeatable")
    args = ap.parse_args()
    args.tokens = args.tokens or (32 if args.quick else 64)
    args.reps = args.reps or (3 if args.quick else 5)
    try:
        args.clients = sorted({int(c) for c in args.clients.split(",")})
    except ValueError:
        ap.error("--clients takes comma-separated integers, e.g. 1,4,8")
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            ap.error(f"--env takes KEY=VALUE, got {item!r}")
        # Set before llama_cpp (and its OpenMP runtime) loads here, and inherited by both servers.
        os.environ[key] = value
    if args.tokens < 2 or args.reps < 1 or args.threads < 1 or args.clients[0] < 1 or args.ctx < 128:
        ap.error("--tokens >= 2, --reps >= 1, --threads >= 1, --clients >= 1 and --ctx >= 128 are required")
    return asyncio.run(run_all(args))


if __name__ == "__main__":
    sys.exit(main())
