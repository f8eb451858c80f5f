"""Engines on 127.0.0.1 for the remote-engine tests: llama-cpp-python's own OpenAI server
(``python -m llama_cpp.server``, a real engine, as a process) and ``StubEngine``, a tiny aiohttp
server in a thread whose behaviour each test sets (stall, Retry-After, dropped connections) and
which counts what it was sent."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.daemon import REPO_ROOT, free_port

READY_TIMEOUT = 120.0


@dataclass
class LlamaServer:
    """``python -m llama_cpp.server`` serving one GGUF as model ``alias``."""

    model: Path
    alias: str
    api_key: str | None = None
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> LlamaServer:
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--model_alias", self.alias,
                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048", "--n_threads", "2",
                "--verbose", "false"]
        if self.api_key:
            argv += ["--api_key", self.api_key]
        log = (self.log_path or Path("/dev/null")).open("ab")
        with log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         cwd=str(REPO_ROOT))
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        """Poll GET /v1/models until it answers (bounded)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"llama_cpp.server exited with {self.proc.returncode}: {self.logs()}")
            req = urllib.request.Request(self.url + "/models")
            if self.api_key:
                req.add_header("Authorization", f"Bearer {self.api_key}")
            try:
                with urllib.request.urlopen(req, timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"llama_cpp.server not ready within {READY_TIMEOUT}s: {self.logs()}")

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:] if self.log_path else ""
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chat_chunk(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text},
                                                            "finish_reason": finish}]}


@dataclass
class StubEngine:
    """An OpenAI-compatible stub: ``/v1/models`` lists ``model``; ``/v1/chat/completions`` streams
    ``words`` (one chunk each, ``delay`` seconds apart) then usage, unless told otherwise:
    ``stall`` seconds of silence before the headers, ``stall_after_first`` after the first chunk,
    ``busy`` answers of 503 with Retry-After, ``drop`` connections closed before any answer."""

    model: str = "stub-model"
    words: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " stub"])
    delay: float = 0.0
    stall: float = 0.0
    stall_after_first: float = 0.0
    busy: int = 0
    drop: int = 0
    port: int = field(default_factory=free_port)
    requests: list[dict[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model, "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        if self.drop > 0:
            self.drop -= 1
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if self.busy > 0:
            self.busy -= 1
            return web.json_response({"error": {"message": "engine busy"}}, status=503, headers={"Retry-After": "1"})
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.stall:
                await asyncio.sleep(self.stall)
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for i, word in enumerate(self.words):
                await resp.write(_sse(chat_chunk(word)))
                if i == 0 and self.stall_after_first:
                    await asyncio.sleep(self.stall_after_first)
                if self.delay:
                    await asyncio.sleep(self.delay)
            await resp.write(_sse(chat_chunk("", "stop")))
            await resp.write(_sse({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": len(self.words)}}))
            await resp.write(b"data: [DONE]\n\n")
            return resp
        finally:
            self.in_flight -= 1

    def start(self) -> StubEngine:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/v1/models", self._models)
            app.router.add_post("/v1/chat/completions", self._chat)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
            ready.set()

        def run() -> None:
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "stub engine did not start"
        return self

    def stop(self) -> None:
        async def cleanup() -> None:
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
