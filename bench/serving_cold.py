"""Cold start: model not loaded -> first token, ours against llama-server's start -> first token.

Each round measures, back to back (order alternating):
  ours, fresh daemon   spawn ``ollamalike serve`` on a home that already holds the model, poll ``GET /``
                       every 10 ms, then one streamed /api/generate: spawn -> first token;
  ours, daemon up      the same daemon after ``keep_alive: 0`` unloaded the model: request -> first token;
  llama-server         spawn, poll ``/health`` every 10 ms until it answers 200 (model loaded, warm-up
                       run), then one streamed /v1/completions: spawn -> first token.
Where our time goes comes from what the daemon reports (``load_duration``: layout, runner spawn, its
imports, model load, until the runner's /health says ok; ``prompt_eval_duration``) and from outside:
the daemon's spawn -> ``GET /`` answering, and ``python -c "import ollamalike.runner.server"`` timed on
its own (interpreter start and the runner's imports, llama_cpp's shared libraries included), with
``-X importtime``'s largest top-level imports. The daemon exposes no finer split of ``load_duration``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from common import REPO_ROOT, Quiet, markdown_table, median, stop_process, timed_ollama  # type: ignore[import-not-found]
from serving_contenders import MODEL, SEED, prompt, start_llama_server  # type: ignore[import-not-found]
from serving_report import Targets  # type: ignore[import-not-found]

from tests.daemon import Daemon, daemon_env, free_port

POLL = 0.01


def poll_200(url: str, proc: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(POLL)
    raise RuntimeError(f"{url} did not answer 200 within {timeout:.0f}s")


@dataclass
class Cold:
    ours_fresh: list[float] = field(default_factory=list)  # spawn -> first token, s
    ours_up: list[float] = field(default_factory=list)  # daemon up, model unloaded: request -> first token
    llama: list[float] = field(default_factory=list)
    parts: dict[str, list[float]] = field(default_factory=dict)  # where our fresh-daemon time goes, s
    llama_parts: dict[str, list[float]] = field(default_factory=dict)

    def note(self, parts: dict[str, list[float]], what: str, seconds: float) -> None:
        parts.setdefault(what, []).append(seconds)


async def _first_token(session: aiohttp.ClientSession, base: str, n: int, tag: str) -> tuple[float, dict[str, Any]]:
    """(request -> first token seconds, the done line) of one streamed /api/generate."""
    done: list[dict[str, Any]] = []
    body = {"model": MODEL, "prompt": prompt(tag), "raw": True, "stream": True,
            "options": {"num_predict": n, "temperature": 0, "seed": SEED}}
    timed = await timed_ollama(session, f"{base}/api/generate", body, done)
    return timed.ttft, done[0]


async def _unload(session: aiohttp.ClientSession, base: str) -> None:
    async with session.post(f"{base}/api/generate", json={"model": MODEL, "keep_alive": 0}) as resp:
        await resp.read()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the runner exits after the answer: wait until ps is empty
        async with session.get(f"{base}/api/ps") as resp:
            if not (await resp.json()).get("models"):
                return
        await asyncio.sleep(0.05)
    raise RuntimeError("the model did not unload within 60s")


async def ours_round(cold: Cold, session: aiohttp.ClientSession, home: Path, env: dict[str, str], n: int, rnd: int,
                     quiet: Quiet) -> None:
    quiet.wait()
    port = free_port()
    denv = daemon_env(home, port, env)
    log = home / "cold-daemon.log"
    t0 = time.perf_counter()
    with log.open("ab") as f:
        proc = subprocess.Popen([sys.executable, "-m", "ollamalike", "serve"], stdin=subprocess.DEVNULL, stdout=f,
                                stderr=subprocess.STDOUT, env=denv, cwd=str(REPO_ROOT))
    daemon = Daemon(proc=proc, port=port, home=home, env=denv, log_path=log)
    try:
        poll_200(daemon.base_url + "/", proc)
        up = time.perf_counter() - t0
        first, done = await _first_token(session, daemon.base_url, n, f"cold {rnd}")
        cold.ours_fresh.append(up + first)
        load = done.get("load_duration", 0) / 1e9
        prompt_eval = done.get("prompt_eval_duration", 0) / 1e9
        cold.note(cold.parts, "daemon spawn -> GET / answers", up)
        cold.note(cold.parts, "load_duration (layout, runner spawn + imports, model load, until runner /health ok)",
                  load)
        cold.note(cold.parts, "prompt_eval_duration", prompt_eval)
        cold.note(cold.parts, "rest of request -> first token (HTTP, scheduling, first decode, stream)",
                  max(first - load - prompt_eval, 0.0))
        await _unload(session, daemon.base_url)
        quiet.wait()
        first_up, _ = await _first_token(session, daemon.base_url, n, f"cold up {rnd}")
        cold.ours_up.append(first_up)
    finally:
        daemon.stop(check=False)


async def llama_round(cold: Cold, session: aiohttp.ClientSession, binary: Path, model: Path, ctx: int, parallel: int,
                      threads: int, log: Path, n: int, rnd: int, quiet: Quiet) -> None:
    quiet.wait()
    port = free_port()
    t0 = time.perf_counter()
    proc = start_llama_server(binary, model, port, ctx, parallel, threads, log)
    try:
        poll_200(f"http://127.0.0.1:{port}/health", proc)
        ready = time.perf_counter() - t0
        body = {"prompt": prompt(f"cold {rnd}"), "max_tokens": n, "temperature": 0, "seed": SEED, "stream": True}
        start = time.perf_counter()
        async with session.post(f"http://127.0.0.1:{port}/v1/completions", json=body) as resp:
            async for line in resp.content:
                data = line.strip().removeprefix(b"data:").strip()
                if data and data != b"[DONE]" and any(c.get("text") for c in json.loads(data).get("choices", [])):
                    break
            first = time.perf_counter() - start
            resp.close()
        cold.llama.append(ready + first)
        cold.note(cold.llama_parts, "spawn -> /health 200 (model load, warm-up run)", ready)
        cold.note(cold.llama_parts, "request -> first token", first)
    finally:
        stop_process(proc)


def runner_imports(env: dict[str, str]) -> tuple[float, list[tuple[str, float]]]:
    """(wall seconds of a fresh interpreter importing the runner's server module, the largest imports by
    package) -- the runner does exactly this before it loads the model."""
    code = "import ollamalike.runner.server"
    full_env = {**os.environ, **env}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, env=full_env, cwd=str(REPO_ROOT))
    wall = time.perf_counter() - start
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], check=True, env=full_env,
                         cwd=str(REPO_ROOT), capture_output=True, text=True).stderr
    chain = {"ollamalike", "ollamalike.runner", "ollamalike.runner.server"}  # they hold everything else
    largest: dict[str, tuple[str, float]] = {}
    for line in out.splitlines():
        # "import time:   self [us] | cumulative | imported package"
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        name = line.split("|")[2].strip()
        seconds = int(line.split("|")[1]) / 1e6
        root = name.split(".")[0]
        if name in chain or root.startswith("_") or root in ("encodings", "site"):
            continue
        # The largest import per top-level package (its nested imports included, as importtime counts).
        key = name if root == "ollamalike" else root
        if seconds > largest.get(key, ("", 0.0))[1]:
            largest[key] = (name, seconds)
    return wall, sorted(largest.values(), key=lambda t: -t[1])[:8]


def cold_report(cold: Cold, imports: list[float], top: list[tuple[str, float]], targets: Targets) -> str:
    ms = 1000
    rows = [["ours, fresh daemon: spawn -> first token", f"{median(cold.ours_fresh) * ms:.0f}"],
            ["ours, daemon up, model not loaded: request -> first token", f"{median(cold.ours_up) * ms:.0f}"]]
    if cold.llama:
        rows.append(["llama-server: spawn -> first token", f"{median(cold.llama) * ms:.0f}"])
    lines = ["### cold start (medians, ms)", "", markdown_table(["measure", "ms"], rows), "",
             "where our fresh-daemon time goes (medians, ms):", ""]
    parts = [[what, f"{median(v) * ms:.0f}"] for what, v in cold.parts.items()]
    parts.append(["  of load_duration: a fresh interpreter importing ollamalike.runner.server (timed apart)",
                  f"{median(imports) * ms:.0f}"])
    parts.append(["  of load_duration: warm-up decode", "none (the runner does no warm-up run)"])
    lines += [markdown_table(["phase", "ms"], parts), ""]
    lines.append("largest imports of the runner by package (python -X importtime, cumulative, nested ones counted "
                 "in their importer too): "
                 + ", ".join(f"{name} {s * ms:.0f} ms" for name, s in top))
    if cold.llama:
        lines += ["", "llama-server (medians, ms): " + ", ".join(f"{what} {median(v) * ms:.0f}"
                                                                 for what, v in cold.llama_parts.items())]
        targets.add("cold start, fresh daemon vs llama-server start -> first token",
                    median(a / b for a, b in zip(cold.ours_fresh, cold.llama, strict=False)), "<=", 1.0)
        targets.add("cold start, daemon up (model not loaded) vs llama-server start -> first token",
                    median(a / b for a, b in zip(cold.ours_up, cold.llama, strict=False)), "<=", 1.0)
    return "\n".join(lines)


async def measure_cold(session: aiohttp.ClientSession, home: Path, env: dict[str, str], llama: Path | None,
                       model: Path, ctx: int, parallel: int, threads: int, rounds: int, quiet: Quiet,
                       targets: Targets) -> str:
    """``rounds`` interleaved cold starts of ours (``home`` holds the model) and llama-server (when given)."""
    cold = Cold()
    imports: list[float] = []
    top: list[tuple[str, float]] = []
    n = 4  # only the first token matters
    for rnd in range(rounds):
        order = ("ours", "llama") if rnd % 2 == 0 else ("llama", "ours")
        for who in order:
            if who == "ours":
                await ours_round(cold, session, home, env, n, rnd, quiet)
            elif llama is not None:
                await llama_round(cold, session, llama, model, ctx, parallel, threads, home / "cold-llama-server.log",
                                  n, rnd, quiet)
        quiet.wait()
        wall, top = runner_imports(env)
        imports.append(wall)
        print(f"  cold start: round {rnd + 1}/{rounds} done", file=sys.stderr)
    return cold_report(cold, imports, top, targets)
