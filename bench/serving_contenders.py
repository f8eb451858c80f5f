"""The serving benchmark's contenders: how each is started and how one streamed request is sent to it.

  ours    ``ollamalike serve`` (the model made with /api/blobs + /api/create), via /api/generate (raw prompt,
          NDJSON), /v1/chat/completions (SSE) and /api/chat (NDJSON: takes ``options``);
  server  ``python -m llama_cpp.server`` via /v1/completions and /v1/chat/completions (SSE);
  llama   llama.cpp's own ``llama-server --parallel N`` (bench/llamacpp_build.py) via the same two routes;
  raw     ``Llama.create_completion`` / ``create_chat_completion`` in this process (no HTTP at all).
A ``Runner`` takes a prompt (or a message list) and a token budget and returns the ``Timed`` request.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from common import OUT, Timed, proc_status_kib, timed_ollama, timed_openai, tool_env  # type: ignore[import-not-found]

MODEL = "bench-serving"
SEED = 42
KINDS = ("completion", "chat")
NAME = {"ours": "ours", "server": "llama_cpp.server", "llama": "llama-server", "raw": "raw Llama"}
LABEL = {
    ("completion", "ours"): "ours /api/generate",
    ("chat", "ours"): "ours /v1/chat/completions",
    ("completion", "server"): "llama_cpp.server /v1/completions",
    ("chat", "server"): "llama_cpp.server /v1/chat/completions",
    ("completion", "llama"): "llama-server /v1/completions",
    ("chat", "llama"): "llama-server /v1/chat/completions",
    ("completion", "raw"): "raw Llama.create_completion",
    ("chat", "raw"): "raw Llama.create_chat_completion",
}
Messages = list[dict[str, str]]
Runner = Callable[[str, int], Awaitable[Timed]]
# (the request, the answer's text, prompt tokens as the server counted them or 0)
ChatRunner = Callable[[Messages, int], Awaitable[tuple[Timed, str, int]]]


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


def start_llama_cpp_server(path: Path, port: int, ctx: int, threads: int, log: Path) -> subprocess.Popen[bytes]:
    # interrupt_requests=False: by default the server cuts a running stream short whenever another
    # request waits, which would make concurrent clients get fewer tokens than they asked for.
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
            "--port", str(port), "--n_ctx", str(ctx), "--n_batch", "512", "--n_threads", str(threads),
            "--n_threads_batch", str(threads), "--interrupt_requests", "False", "--seed", str(SEED)]
    with log.open("ab") as f:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)


def start_llama_server(binary: Path, path: Path, port: int, ctx: int, parallel: int, threads: int,
                       log: Path) -> subprocess.Popen[bytes]:
    """llama.cpp's server with ``parallel`` slots of ``ctx`` cells each (its -c is the total), the same
    threads as ours, and its own defaults otherwise (flash attention auto, warm-up, host-RAM prompt cache)."""
    args = [str(binary), "-m", str(path), "--host", "127.0.0.1", "--port", str(port), "-c", str(ctx * parallel),
            "--parallel", str(parallel), "-t", str(threads), "-tb", str(threads), "--seed", str(SEED)]
    with log.open("ab") as f:
        return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                env=tool_env(binary))


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


def runners(session: aiohttp.ClientSession, ours: str, servers: dict[str, str], raw: Raw | None,
            count: Callable[[str], int], ours_options: dict[str, Any]) -> dict[tuple[str, str], Runner]:
    """(kind, who) -> runner, for ours, raw (when given) and each OpenAI-style server in ``servers``
    (who -> base URL: "server" for llama_cpp.server, "llama" for llama-server)."""

    async def ours_generate(text: str, n: int) -> Timed:
        body = {"model": MODEL, "prompt": text, "raw": True, "stream": True,
                "options": {"num_predict": n, "temperature": 0, "seed": SEED, **ours_options}}
        return await timed_ollama(session, f"{ours}/api/generate", body)

    async def ours_chat(text: str, n: int) -> Timed:
        body = {"model": MODEL, "messages": [{"role": "user", "content": text}], "max_tokens": n,
                "temperature": 0, "seed": SEED, "stream": True, "stream_options": {"include_usage": True}}
        return await timed_openai(session, f"{ours}/v1/chat/completions", body, count)

    def openai(who: str, base: str) -> tuple[Runner, Runner]:
        common = {"temperature": 0, "repeat_penalty": 1.0, "seed": SEED, "stream": True, **usage(who)}

        async def completion(text: str, n: int) -> Timed:
            body = {"prompt": text, "max_tokens": n, **common}
            return await timed_openai(session, f"{base}/v1/completions", body, count, headers=headers(who))

        async def chat(text: str, n: int) -> Timed:
            body = {"messages": [{"role": "user", "content": text}], "max_tokens": n, **common}
            return await timed_openai(session, f"{base}/v1/chat/completions", body, count, headers=headers(who))

        return completion, chat

    run: dict[tuple[str, str], Runner] = {("completion", "ours"): ours_generate, ("chat", "ours"): ours_chat}
    for who, base in servers.items():
        run[("completion", who)], run[("chat", who)] = openai(who, base)
    if raw is not None:
        local = raw

        async def raw_completion(text: str, n: int) -> Timed:
            return local.completion(text, n)  # blocks the loop on purpose: nothing else runs meanwhile

        async def raw_chat(text: str, n: int) -> Timed:
            return local.chat(text, n)

        run[("completion", "raw")], run[("chat", "raw")] = raw_completion, raw_chat
    return run


def usage(who: str) -> dict[str, Any]:
    # llama-server counts the tokens it sent (include_usage); llama_cpp.server is left as it was
    # measured before (its count follows from finish_reason "length").
    return {"stream_options": {"include_usage": True}} if who == "llama" else {}


def headers(who: str) -> dict[str, str] | None:
    # llama-server closes a connection after a streamed answer although it offers keep-alive, so a pooled
    # connection fails the next request: one connection per request (a loopback connect, microseconds).
    return {"Connection": "close"} if who == "llama" else None


def chat_runners(session: aiohttp.ClientSession, ours: str, servers: dict[str, str], count: Callable[[str], int],
                 ours_options: dict[str, Any]) -> dict[str, ChatRunner]:
    """who -> a streamed chat over a message list that also returns the answer's text (for multi-turn
    workloads): ours through /api/chat (which takes ``options``, the knobs a workload may turn), the
    servers through /v1/chat/completions."""

    async def ours_chat(messages: Messages, n: int) -> tuple[Timed, str, int]:
        body = {"model": MODEL, "messages": messages, "stream": True,
                "options": {"num_predict": n, "temperature": 0, "seed": SEED, **ours_options}}
        texts: list[str] = []
        done: list[dict[str, Any]] = []
        timed = await timed_ollama(session, f"{ours}/api/chat", body, done, texts)
        return timed, "".join(texts), int(done[0].get("prompt_eval_count") or 0)

    def openai(who: str, base: str) -> ChatRunner:
        async def chat(messages: Messages, n: int) -> tuple[Timed, str, int]:
            body = {"messages": messages, "max_tokens": n, "temperature": 0, "repeat_penalty": 1.0, "seed": SEED,
                    "stream": True, **usage(who)}
            texts: list[str] = []
            timed = await timed_openai(session, f"{base}/v1/chat/completions", body, count, texts, headers(who))
            return timed, "".join(texts), 0

        return chat

    return {"ours": ours_chat, **{who: openai(who, base) for who, base in servers.items()}}


def chat_kinds(raw: Raw, n: int) -> tuple[str, ...]:
    """KINDS, less "chat" when the model's greedy chat answer ends before ``n`` tokens for every one of a
    few prompts (a base model, such as the Gemma 3 270M of the real-model tier, answers a chat with EOS)."""
    if any(raw.chat(prompt(f"q{i}"), n).finish == "length" for i in range(5)):
        return KINDS
    return tuple(k for k in KINDS if k != "chat")


def good_prompts(raw: Raw, count: int, n: int, model: Path, kinds: tuple[str, ...] = KINDS) -> list[str]:
    """``count`` prompts whose greedy answer runs the full ``n`` tokens (no EOS) in each of ``kinds``
    (completion, chat), and starts with whole text (``Raw.first_text``), so every request asks for the
    same work. Found once with the raw model and cached in bench/out/ next to the model."""
    import llama_cpp

    cache = OUT / f"serving-prompts-{model.stem}.json"
    stat = model.stat()
    key = {"model": [stat.st_size, stat.st_mtime_ns], "llama_cpp": llama_cpp.__version__}
    if kinds != KINDS:
        key["kinds"] = list(kinds)
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
        run = {"completion": raw.completion, "chat": raw.chat}
        if all(run[kind](text, n).finish == "length" and raw.first_text(kind, text) for kind in kinds):
            good.append(text)
            if len(good) % 20 == 0:
                print(f"  screening prompts (once, cached): {len(good)}/{count}", file=sys.stderr)
    if time.perf_counter() - start > 1:
        print(f"  screened prompts: {len(good)} good ({time.perf_counter() - start:.0f}s)", file=sys.stderr)
        cache.write_text(json.dumps({"key": key, "tokens": n, "prompts": good}, indent=1))
    if len(good) < count:
        raise RuntimeError(f"only {len(good)} of {count} prompts run {n} tokens without EOS")
    return good[:count]


