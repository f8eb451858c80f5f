"""The daemon's side of a runner: start the process, talk to it over its Unix socket, stop it.

``RunnerProcess.start(spec, config)`` spawns ``python -m ollamalike.runner`` and returns once the
model is loaded, or raises ``RunnerError`` with llama.cpp's reason (from the runner's stderr).
Streams come back as dicts; a runner that dies mid-stream raises ``RunnerError``. Every process
started here is reaped. This module never imports llama_cpp (the daemon must not load it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import aiohttp

from ollamalike.config import Config
from ollamalike.errors import BadRequest, RunnerDied, RunnerError
from ollamalike.jsontypes import JSONObject
from ollamalike.media import Media
from ollamalike.runner.spec import RunnerSpec

__all__ = ["RunnerProcess", "RunnerSpec"]

log = logging.getLogger("ollamalike.runner")

_SOCKET_PATH_MAX = 100
_ARGPARSE_ERROR = "python -m ollamalike.runner: error: "  # the runner's argument parser refusing a value  # sun_path is 104-108 bytes depending on the OS


def _ints(body: JSONObject, name: str) -> list[int]:
    """A list of integers the runner answered with (token ids)."""
    values = body.get(name)
    if not isinstance(values, list):
        raise RunnerError(f"the runner answered without {name}")
    return [v for v in values if isinstance(v, int)]


def _socket_path(config: Config) -> str:
    name = f"runner-{uuid.uuid4().hex[:12]}.sock"
    try:
        config.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = str(config.run_dir / name)
        if len(path.encode()) <= _SOCKET_PATH_MAX:
            return path
    except OSError:
        pass
    return str(Path(tempfile.gettempdir()) / name)


class RunnerProcess:
    def __init__(self, spec: RunnerSpec, proc: asyncio.subprocess.Process, socket_path: str) -> None:
        self.spec = spec
        self._proc = proc
        self.socket_path = socket_path
        self._stderr: deque[str] = deque(maxlen=60)
        self._stderr_task = asyncio.get_running_loop().create_task(self._read_stderr())
        self._session = aiohttp.ClientSession(
            base_url="http://runner", connector=aiohttp.UnixConnector(path=socket_path), timeout=aiohttp.ClientTimeout(total=None)
        )
        self.memory: dict[str, int] = {"size": 0, "size_vram": 0}
        self.health: JSONObject = {}
        self._stopped = False

    # --- lifecycle -------------------------------------------------------------------------
    @classmethod
    async def start(cls, spec: RunnerSpec, config: Config) -> RunnerProcess:
        for path in map(Path, (spec.model_path, *spec.model_splits)):
            if not path.is_file():
                raise RunnerError(f"model file not found: {path}")
        socket_path = _socket_path(config)
        env = dict(os.environ)
        if config.cuda_visible_devices is not None:
            env["CUDA_VISIBLE_DEVICES"] = config.cuda_visible_devices
        if config.hip_visible_devices is not None:
            env["HIP_VISIBLE_DEVICES"] = config.hip_visible_devices
        proc = await asyncio.create_subprocess_exec(
            config.runner_python, "-m", "ollamalike.runner", *spec.argv(socket_path),
            *(["--verbose"] if config.debug else []),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        runner = cls(spec, proc, socket_path)
        try:
            await runner._wait_loaded(config.load_timeout)
        except BaseException:
            await runner.stop()
            raise
        return runner

    async def _wait_loaded(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            if self._proc.returncode is not None:
                await self._drain_stderr()
                raise RunnerError(f"llama runner failed to load model: {self._reason(self._exit_text('loading'))}")
            if os.path.exists(self.socket_path):
                with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError):
                    async with self._session.get("/health", timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        body = await resp.json()
                    if body.get("status") == "ok":
                        self.health = body
                        self.memory = dict(body.get("memory") or self.memory)
                        return
                    if body.get("status") == "error":
                        raise RunnerError(f"llama runner failed to load model: {body.get('error')}")
            if time.monotonic() > deadline:
                raise RunnerError(f"timed out after {timeout:.0f}s waiting for the model to load")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    async def stop(self) -> None:
        """Ask politely, then terminate, then kill; always wait() so no zombie is left."""
        if self._stopped:
            return
        self._stopped = True
        proc = self._proc
        if proc.returncode is None:
            with contextlib.suppress(aiohttp.ClientError, OSError, asyncio.TimeoutError):
                async with self._session.post("/shutdown", timeout=aiohttp.ClientTimeout(total=2)):
                    pass
            for sig, wait in ((None, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 10.0)):
                if sig is not None and proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(proc.wait(), wait)
                if proc.returncode is not None:
                    break
        await proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
        await self._session.close()
        self._stderr_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._stderr_task
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.returncode is None and not self._stopped

    @property
    def stderr_tail(self) -> list[str]:
        return list(self._stderr)

    # --- requests --------------------------------------------------------------------------
    async def completion(
        self, prompt: str | list[int], options: Mapping[str, object] | None = None,
        format: str | JSONObject | None = None, images: Sequence[Media] = (), *, logprobs: int | None = None,
        shift: bool = True,
    ) -> AsyncIterator[JSONObject]:
        """Chunks {"content": ...} (with "logprobs" when ``logprobs`` is the number of top alternatives
        wanted), then one {"done": True, ...}. Stopping early cancels the sequence.

        With ``images``, ``prompt`` is text whose ``[img-N]`` tags place them (runner/vision.py)."""
        body: dict[str, object] = {"prompt": prompt, "options": options or {}, "format": format}
        if images:
            body["images"] = [img.to_wire() for img in images]
        if logprobs is not None:
            body["logprobs"] = logprobs
        if not shift:
            body["shift"] = False
        done = False
        try:
            async with self._session.post("/completion", json=body) as resp:
                await self._check(resp)
                try:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event: JSONObject = json.loads(line)
                        if "error" in event:
                            raise RunnerError(str(event["error"]))
                        if event.get("done"):
                            done = True
                        yield event
                        if done:
                            return
                finally:
                    if not done:
                        resp.close()  # drop the connection: the runner cancels the sequence at once
        except (aiohttp.ClientError, OSError, json.JSONDecodeError) as e:
            raise await self._died(e) from None
        if not done:
            raise await self._died(None)

    async def tokenize(self, text: str, add_special: bool = True, images: Sequence[Media] = ()) -> list[int]:
        """Token ids; with ``images``, each image's positions are negative ids (one per image chunk)."""
        payload: dict[str, object] = {"content": text, "add_special": add_special}
        if images:
            payload["images"] = [img.to_wire() for img in images]
        body = await self._call("/tokenize", payload)
        return _ints(body, "tokens")

    async def detokenize(self, tokens: list[int]) -> str:
        body = await self._call("/detokenize", {"tokens": list(tokens)})
        return str(body["content"])

    async def embed(self, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        """Vectors and the tokens evaluated. Cancelling it drops the connection, and the runner drops the job."""
        body = await self._call("/embedding", {"input": list(inputs), "truncate": truncate})
        if "error" in body:  # the runner failed after it had started answering
            raise RunnerError(str(body["error"]))
        vectors = body.get("embeddings")
        count = body.get("prompt_eval_count")
        if not isinstance(vectors, list) or not isinstance(count, int):
            raise RunnerError("the runner answered /embedding without embeddings")
        return [[float(x) for x in v if isinstance(x, (int, float))] for v in vectors if isinstance(v, list)], count

    async def get_health(self) -> JSONObject:
        return await self._call("/health", None)

    async def _call(self, path: str, payload: Mapping[str, object] | None) -> JSONObject:
        try:
            method = self._session.get(path) if payload is None else self._session.post(path, json=payload)
            async with method as resp:
                await self._check(resp)
                try:
                    data = await resp.json()
                except BaseException:
                    resp.close()  # cancelled mid-answer: hang up, so the runner stops the work
                    raise
                return data if isinstance(data, dict) else {}
        except (aiohttp.ClientError, OSError) as e:
            raise await self._died(e) from None

    async def _check(self, resp: aiohttp.ClientResponse) -> None:
        if resp.status == 200:
            return
        try:
            message = str((await resp.json(content_type=None)).get("error") or resp.reason)
        except (ValueError, aiohttp.ClientError):
            message = f"runner answered HTTP {resp.status}"
        if resp.status == 400:
            raise BadRequest(message)
        raise RunnerError(message)

    async def _died(self, cause: BaseException | None) -> RunnerError:
        """The error for a broken connection: the process's fate and its last words, if it is gone.

        ``RunnerDied`` when the process exited, or when its socket refused the connection (nobody
        serves it any more, whether or not the exit has been reaped yet): the request may then be
        retried on a fresh runner. A connection lost to a live process is a plain ``RunnerError``."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._proc.wait(), 2.0)
        rc = self._proc.returncode
        if rc is None:
            message = f"lost the connection to the runner: {cause or 'stream ended early'}"
            refused = isinstance(cause, aiohttp.ClientConnectorError)
            return RunnerDied(message) if refused else RunnerError(message)
        await self._drain_stderr()
        tail = self._reason(default="")
        return RunnerDied(f"runner process exited unexpectedly ({self._how(rc)})" + (f": {tail}" if tail else ""))

    @staticmethod
    def _how(rc: int) -> str:
        return f"signal {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals() else f"status {rc}"

    def _exit_text(self, doing: str) -> str:
        """What happened, in words, for a runner that ended without saying why (a crash, an abort)."""
        rc = self._proc.returncode
        if rc is None:
            return f"model runner stopped answering while {doing}"
        verb = "crashed" if rc < 0 else "exited"
        return f"model runner {verb} while {doing} ({self._how(rc)}); the server log has its output"

    # --- stderr ----------------------------------------------------------------------------
    async def _read_stderr(self) -> None:
        stream = self._proc.stderr
        if stream is None:
            return
        while True:
            line = await stream.readline()
            if not line:
                return
            text = line.decode("utf-8", errors="replace").rstrip()
            if text:
                self._stderr.append(text)
                log.debug("runner %s: %s", self._proc.pid, text)

    async def _drain_stderr(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._stderr_task), 2.0)

    def _reason(self, default: str = "the runner exited without saying why") -> str:
        """The runner's own error line ("error: ..." from the runner, or its argument parser's), if it
        wrote one. Nothing else of its stderr (llama.cpp's log, an abort's backtrace, a Python
        traceback) ever reaches a client: it goes to the server log, and ``default`` says what happened."""
        lines = list(self._stderr)
        for line in reversed(lines):
            if line.startswith("error: "):
                return line[len("error: "):]
            if line.startswith(_ARGPARSE_ERROR):
                return line[len(_ARGPARSE_ERROR):]
        if lines:
            log.warning("runner %s ended; its last output:\n%s", self._proc.pid, "\n".join(lines[-20:]))
        return default
