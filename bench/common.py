"""Shared helpers for the serving benchmark: the bench model, child-process memory, HTTP stream timing, tables.

Everything here talks only to 127.0.0.1. A ``Timed`` records what one streamed request looked like from
the client: when the first text arrived, when the stream ended, how many tokens the server says it
generated and why it stopped, so throughput and latency are measured the same way for every server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

REPO_ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from ollamalike.testmodels import write_bench_llama  # noqa: E402


def bench_model() -> Path:
    """The ~100M-parameter Q4_0 random llama under bench/out/ (the same file bench/engine.py uses)."""
    path = OUT / "bench-100m-q4_0.gguf"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        # Written next to the target and renamed, so an interrupted run never leaves a truncated model.
        tmp = path.with_suffix(".gguf.tmp")
        write_bench_llama(tmp)
        tmp.replace(path)
        print(f"generated {path.name} in {time.perf_counter() - start:.1f}s", file=sys.stderr)
    return path


MODEL_CHOICES = "PATH, starter, qwen, gemma or bench"


def resolve_model(choice: str | None) -> Path:
    """``--model``: a GGUF path, a real model from the package index (``qwen``/``starter``, ``gemma``;
    see docs/models.md) or ``bench`` (the random 100M llama). Default: Qwen when it is fetched."""
    from ollamalike import realmodels

    if choice is None:
        choice = "qwen" if realmodels.is_fetched("qwen") else "bench"
    if choice == "bench":
        return bench_model()
    key = "qwen" if choice == "starter" else choice
    if key in ("qwen", "gemma"):
        if not realmodels.is_fetched(key):
            raise SystemExit(f"{key} is not fetched: run .venv/bin/python -m ollamalike.realmodels fetch {key}")
        return realmodels.cached_path(key)
    path = Path(choice).expanduser()
    if not path.is_file():
        raise SystemExit(f"--model: no such file {path} (give {MODEL_CHOICES})")
    return path


def describe_model(path: Path) -> str:
    """"name (size MB, 494M params, Q4_K_M, 151936-token vocabulary)" from the GGUF's own metadata."""
    from ollamalike.gguf_info import read_gguf_info

    info = read_gguf_info(path, verbose=True)
    vocab = len(info.model_info.get("tokenizer.ggml.tokens") or []) or "?"
    return (f"{path.name} ({path.stat().st_size / 1e6:.0f} MB, {info.parameter_size} params, {info.file_type}, "
            f"{vocab}-token vocabulary)")


def proc_status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmHWM: peak resident set, VmRSS: current), in KiB; 0 if gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


def memory_mib(pids: list[int]) -> tuple[float, float]:
    """(sum of VmHWM, sum of VmRSS) in MiB over the processes."""
    return (sum(proc_status_kib(p, "VmHWM") for p in pids) / 1024, sum(proc_status_kib(p, "VmRSS") for p in pids) / 1024)


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (Linux: "5" into /proc/<pid>/clear_refs), so that a
    later peak is the peak since now. False where the kernel does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def tool_env(binary: Path) -> dict[str, str]:
    """The environment to run a built llama.cpp tool in: its shared libraries are beside it (the
    build's RUNPATH names the directory it was built in, which may since have moved)."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(binary.parent), env.get("LD_LIBRARY_PATH", "")) if p)
    return env


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 30 s; always reaped."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Poll ``url`` until it answers 200; fail at once if ``proc`` exits, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} while starting")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise RuntimeError(f"{what} did not answer {url} within {timeout:.0f}s")


@dataclass
class Timed:
    """One streamed request as the client saw it (times are time.perf_counter() seconds)."""

    start: float
    first: float  # first chunk carrying text
    end: float  # stream finished
    tokens: int  # generated tokens, as the server counted them (or derived from finish_reason "length")
    finish: str  # "length" when the token budget was used up, else the server's reason
    exact: bool  # tokens is the server's own count or implied by "length", not an estimate

    @property
    def ttft(self) -> float:
        return self.first - self.start

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def decode_rate(self) -> float:
        """Tokens after the first over the time after the first: the client-side decode speed."""
        return (self.tokens - 1) / max(self.end - self.first, 1e-9)


async def ndjson(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    async for raw in resp.content:
        line = raw.strip()
        if line:
            yield json.loads(line)


async def sse(resp: aiohttp.ClientResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON payloads of a server-sent event stream, up to ``data: [DONE]``."""
    async for raw in resp.content:
        line = raw.strip()
        if not line.startswith(b"data:"):
            continue  # comments/pings (": ping ...") and blank separators
        data = line[5:].strip()
        if data == b"[DONE]":
            return
        yield json.loads(data)


async def post_stream(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                      headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    try:
        resp = await session.post(url, json=body, headers=headers)
    except aiohttp.ServerDisconnectedError:
        # A pooled connection the server closed while idle (uvicorn drops keep-alive after 5 s, and the
        # quiet-machine waits are longer): nothing was sent on it, so once more on a new connection.
        resp = await session.post(url, json=body, headers=headers)
    if resp.status != 200:
        text = await resp.text()
        resp.release()
        raise RuntimeError(f"POST {url} -> {resp.status}: {text[:300]}")
    return resp


async def timed_ollama(session: aiohttp.ClientSession, url: str, body: dict[str, Any],
                       done: list[dict[str, Any]] | None = None, texts: list[str] | None = None) -> Timed:
    """Ollama's native NDJSON stream (/api/generate: text in ``response``; /api/chat: in ``message.content``),
    counts on the final ``done`` line, which is appended to ``done`` when given (load_duration and the rest);
    the text pieces go to ``texts`` when given."""
    start = time.perf_counter()
    first = 0.0
    async with await post_stream(session, url, body) as resp:
        async for chunk in ndjson(resp):
            if "error" in chunk:
                raise RuntimeError(f"{url}: {chunk['error']}")
            text = chunk.get("response") or (chunk.get("message") or {}).get("content")
            if text and texts is not None:
                texts.append(text)
            if not first and text:
                first = time.perf_counter()
            if chunk.get("done"):
                end = time.perf_counter()
                if done is not None:
                    done.append(chunk)
                return Timed(start, first or end, end, int(chunk["eval_count"]), str(chunk.get("done_reason")), True)
    raise RuntimeError(f"{url}: stream ended without a done line")


async def timed_openai(
    session: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    count_text: Callable[[str], int],
    texts: list[str] | None = None,
    headers: dict[str, str] | None = None,
) -> Timed:
    """An OpenAI-style SSE stream (/v1/completions or /v1/chat/completions).

    The token count comes from ``usage`` when the server sends it (stream_options.include_usage),
    else from finish_reason "length" (exactly max_tokens); a stream that stopped early without usage
    is counted with ``count_text`` on its text and marked inexact.
    """
    start = time.perf_counter()
    first = 0.0
    finish = ""
    usage: int | None = None
    parts: list[str] = [] if texts is None else texts
    async with await post_stream(session, url, body, headers) as resp:
        async for event in sse(resp):
            if "error" in event:
                raise RuntimeError(f"{url}: {event['error']}")
            if event.get("usage"):
                usage = int(event["usage"]["completion_tokens"])
            for choice in event.get("choices") or []:
                text = choice.get("text")
                if text is None:
                    text = (choice.get("delta") or {}).get("content")
                if text:
                    parts.append(text)
                    if not first:
                        first = time.perf_counter()
                if choice.get("finish_reason"):
                    finish = str(choice["finish_reason"])
    end = time.perf_counter()
    if not finish:
        raise RuntimeError(f"{url}: stream ended without a finish_reason")
    if usage is not None:
        return Timed(start, first or end, end, usage, finish, True)
    if finish == "length":
        return Timed(start, first or end, end, int(body["max_tokens"]), finish, True)
    return Timed(start, first or end, end, count_text("".join(parts)), finish, False)


async def run_concurrent(jobs: Sequence[Callable[[], Any]]) -> tuple[list[Timed], float]:
    """Start all jobs together; (their results, wall time from the first start to the last end)."""
    start = time.perf_counter()
    results: list[Timed] = await asyncio.gather(*(job() for job in jobs))
    return results, time.perf_counter() - start


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def ratio(a: float, b: float) -> str:
    if not b or b != b or a != a:
        return "-"
    return f"{a / b:.2f}x"


def winner(ours: float, theirs: float, higher_is_better: bool, tie: float = 0.05, name: str = "llama_cpp.server") -> str:
    """Which server wins a metric; within ``tie`` (relative) it is a tie: these machines are noisy."""
    if ours != ours or theirs != theirs or not theirs:
        return "-"
    rel = ours / theirs
    if abs(rel - 1.0) <= tie:
        return "tie"
    return "ours" if (rel > 1.0) == higher_is_better else name


def cpu_busy(window: float = 0.5) -> float:
    """Fraction of all CPUs busy (not idle, not waiting for I/O) over ``window`` seconds, from /proc/stat."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields[:8]), idle

    total0, idle0 = sample()
    time.sleep(window)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


@dataclass
class Quiet:
    """Waits, before each measurement, until the machine is quiet: another process's work on a shared
    2-core machine changes every figure. ``max_wait`` 0 turns the wait off (smoke runs)."""

    below: float = 0.15
    max_wait: float = 60.0
    waits: int = 0
    busy_starts: int = 0  # measurements started busy because the wait ran out

    def wait(self) -> None:
        if self.max_wait <= 0:
            return
        self.waits += 1
        deadline = time.monotonic() + self.max_wait
        while cpu_busy() > self.below:
            if time.monotonic() > deadline:
                self.busy_starts += 1
                return

    def summary(self) -> str:
        if self.max_wait <= 0:
            return "no wait for a quiet machine (--quiet-wait 0)"
        return (f"each of {self.waits} measurements waited (up to {self.max_wait:.0f}s) for < {self.below:.0%} CPU busy; "
                f"{self.busy_starts} started busy after the wait ran out")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], align_right_from: int = 1) -> str:
    out = ["| " + " | ".join(headers) + " |"]
    out.append("|" + "|".join("---" if i < align_right_from else "---:" for i in range(len(headers))) + "|")
    out.extend("| " + " | ".join(row) + " |" for row in rows)
    return "\n".join(out)
