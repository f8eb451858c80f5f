"""``RemoteRunner``: one remote engine's HTTP client, a runner as the scheduler sees it (RunnerLike).

``start`` opens the session and asks the engine for its models (``GET /models``): an engine that is
down, refuses the key or does not serve the model id fails the "load" with a clear error, and the
next request tries again. Requests then go to ``/completions`` (a prompt rendered here: the
RunnerLike ``completion``), ``/chat/completions`` (``chat``: messages and tools, the engine's own
chat template) and ``/embeddings`` (``embed``), always streamed with ``include_usage`` so the token
counts are the engine's.

Failures name the engine. Before the first byte of an answer, a connection error or a 429/503 with
``Retry-After`` is tried once more (the registry's RetryPolicy sets the wait); after it, nothing is
retried (the client has part of the answer). Unreachable or busy: ``EngineUnavailable`` (503);
timeouts, refusals and garbage: ``EngineError`` (502); the engine saying the request itself is bad
(400/422): ``BadRequest``. Connecting may take ``engine_connect_timeout`` seconds and the engine may
go silent for ``engine_read_timeout`` (before its headers or between two stream pieces), no longer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TypeAlias

import aiohttp

from ollamalike.config import Config, env_secret
from ollamalike.errors import BadRequest, EngineError, EngineUnavailable, OllamalikeError
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.media import Media
from ollamalike.registry.retry import RetryPolicy, is_transient
from ollamalike.remote.engine import Engine
from ollamalike.remote.sampling import done_reason, response_format, sampling_fields
from ollamalike.remote.sse import ToolCalls, Usage, data_lines, delta_of, error_text

log = logging.getLogger("ollamalike.remote")

# What a stream yields, like a local runner's chunks: {"content"/"thinking"/"tool_calls"} pieces,
# then one {"done": True, "done_reason", counts and durations}.
Chunk: TypeAlias = dict[str, JSONValue]
MAX_ERROR_BODY = 64 << 10
RETRY_AFTER_STATUS = (429, 503)
# One more try before the first byte, after at most RetryPolicy.max_delay seconds.
RETRY = RetryPolicy(attempts=2, base_delay=0.25, max_delay=5.0)


class RemoteRunner:
    """A remote engine serving one model: what ``Lease.runner`` is for a model with an ENGINE line."""

    def __init__(self, engine: Engine, config: Config, policy: RetryPolicy = RETRY) -> None:
        self.engine = engine
        self.connect_timeout = config.engine_connect_timeout
        self.read_timeout = config.engine_read_timeout
        self.policy = policy
        self._session: aiohttp.ClientSession | None = None
        self._stopped = False

    @classmethod
    async def start(cls, engine: Engine, config: Config) -> RemoteRunner:
        """A runner for ``engine`` whose model the engine serves (checked with ``GET /models``)."""
        runner = cls(engine, config)
        try:
            await runner.check_model()
        except BaseException:
            await runner.stop()
            raise
        return runner

    # -- RunnerLike facts ------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return 0  # no process of ours

    @property
    def alive(self) -> bool:
        # An engine that went down is not "dead": each request says so, and works once it is back.
        return not self._stopped

    @property
    def memory(self) -> dict[str, int]:
        return {"size": 0, "size_vram": 0}  # the engine's memory is not ours to count

    async def stop(self) -> None:
        self._stopped = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- HTTP ------------------------------------------------------------------------------------
    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout, sock_read=self.read_timeout)
            self._session = aiohttp.ClientSession(timeout=timeout)
        return self._session

    def _headers(self) -> dict[str, str]:
        name = self.engine.api_key_env
        if name is None:
            return {}
        key = env_secret(name)
        if key is None:
            raise EngineError(f"{self.engine.label}: the daemon's environment has no {name} "
                              f"(the API key its ENGINE line names with api_key_env={name})")
        return {"Authorization": f"Bearer {key}"}

    async def _request(self, method: str, path: str, body: JSONObject | None = None) -> aiohttp.ClientResponse:
        """The engine's answer with status 200, its body still unread (tried twice before the first byte)."""
        url = self.engine.url + path
        headers = self._headers()
        label = self.engine.label
        for attempt in range(self.policy.attempts):
            last = attempt + 1 >= self.policy.attempts
            try:
                resp = await self._session_now().request(method, url, json=body, headers=headers)
            except asyncio.TimeoutError as e:
                if isinstance(e, aiohttp.ConnectionTimeoutError):
                    raise EngineUnavailable(f"{label} did not accept a connection within {self.connect_timeout:g}s "
                                            "(OLLAMALIKE_ENGINE_CONNECT_TIMEOUT)") from None
                raise EngineError(f"{label} did not answer within {self.read_timeout:g}s "
                                  "(OLLAMALIKE_ENGINE_READ_TIMEOUT)") from None
            except aiohttp.ClientError as e:
                if is_transient(e) and not last:
                    log.info("%s: %s; trying once more", label, e)
                    await self.policy.pause(attempt)
                    continue
                raise EngineUnavailable(f"{label} is unreachable: {e or type(e).__name__}") from None
            if resp.status == 200:
                return resp
            retry_after = resp.headers.get("Retry-After")
            if resp.status in RETRY_AFTER_STATUS and retry_after is not None and not last:
                resp.release()
                log.info("%s answered %d with Retry-After %s; trying once more", label, resp.status, retry_after)
                await self.policy.pause(attempt, retry_after)
                continue
            raise await self._status_error(resp)
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _status_error(self, resp: aiohttp.ClientResponse) -> OllamalikeError:
        label, status = self.engine.label, resp.status
        try:
            raw = await resp.content.read(MAX_ERROR_BODY)
        except (aiohttp.ClientError, asyncio.TimeoutError):
            raw = b""
        finally:
            resp.release()
        text = raw.decode("utf-8", errors="replace").strip()
        try:
            parsed: JSONValue = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and "error" in parsed:
            message = error_text(parsed["error"])
        elif isinstance(parsed, dict) and isinstance(parsed.get("detail"), (str, list, dict)):
            message = error_text(parsed["detail"])  # FastAPI-based engines (llama-cpp-python)
        else:
            message = text[:300] or resp.reason or ""
        if status in (401, 403):
            hint = (f"check the key in {self.engine.api_key_env}" if self.engine.api_key_env
                    else "the ENGINE line names no api_key_env")
            return EngineError(f"{label} refused the API key (HTTP {status}: {message}); {hint}")
        if status == 404:
            return EngineError(f"{label} answered 404 (does it serve model {self.engine.model!r}?): {message}")
        if status in (400, 422):
            return BadRequest(f"{label} refused the request: {message}")
        if status in RETRY_AFTER_STATUS:
            return EngineUnavailable(f"{label} is busy (HTTP {status}): {message}")
        return EngineError(f"{label} answered HTTP {status}: {message}")

    async def _lines(self, resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
        """The body's lines; a broken connection or a silent engine is an EngineError naming it."""
        label = self.engine.label
        try:
            async for line in resp.content:
                yield line
        except asyncio.TimeoutError:
            raise EngineError(f"{label} went silent for {self.read_timeout:g}s mid-stream "
                              "(OLLAMALIKE_ENGINE_READ_TIMEOUT)") from None
        except (aiohttp.ClientError, ValueError) as e:
            raise EngineError(f"{label} broke off the stream: {e or type(e).__name__}") from None

    async def check_model(self) -> None:
        resp = await self._request("GET", "/models")
        try:
            try:
                listing: JSONValue = json.loads(await resp.read())
            except (ValueError, aiohttp.ClientError, asyncio.TimeoutError):
                raise EngineError(f"{self.engine.label}: GET /models did not answer with JSON") from None
        finally:
            resp.release()
        data = listing.get("data") if isinstance(listing, dict) else None
        ids = [m.get("id") for m in data if isinstance(m, dict)] if isinstance(data, list) else []
        # An Ollama-style engine (ollamalike, Ollama) lists "name:latest" and answers to "name" too.
        if self.engine.model not in ids and f"{self.engine.model}:latest" not in ids:
            served = ", ".join(str(i) for i in ids[:10]) or "none"
            raise EngineError(f"{self.engine.label}: the engine does not serve model {self.engine.model!r} "
                              f"(it serves: {served})")

    # -- inference -------------------------------------------------------------------------------
    def _body(self, options: Mapping[str, object] | None, fmt: str | JSONObject | None) -> JSONObject:
        body: JSONObject = {"model": self.engine.model, "stream": True, "stream_options": {"include_usage": True}}
        body.update(sampling_fields(options or {}))
        rf = response_format(fmt)
        if rf is not None:
            body["response_format"] = rf
        return body

    async def _stream(self, path: str, body: JSONObject) -> AsyncIterator[Chunk]:
        started = time.perf_counter_ns()
        first: int | None = None
        finish: str | None = None
        usage: Usage | None = None
        calls = ToolCalls(self.engine.label)
        resp = await self._request("POST", path, body)
        try:
            async for event in data_lines(self._lines(resp), self.engine.label):
                delta = delta_of(event)
                usage = delta.usage or usage
                finish = delta.finish_reason or finish
                calls.feed(delta.tool_calls)
                if delta.content or delta.thinking:
                    first = first or time.perf_counter_ns()
                    piece: Chunk = {"content": delta.content}
                    if delta.thinking:
                        piece["thinking"] = delta.thinking
                    yield piece
        finally:
            resp.release()
        if finish is None:
            raise EngineError(f"{self.engine.label} ended the stream before finishing the response")
        ended = time.perf_counter_ns()
        first = first or ended
        counts = usage or Usage()
        tool_calls = calls.calls()
        if tool_calls:
            yield {"content": "", "tool_calls": list[JSONValue](tool_calls)}
        yield {"done": True, "done_reason": done_reason(finish),
               "prompt_eval_count": counts.prompt_tokens, "prompt_eval_duration": first - started,
               "eval_count": counts.completion_tokens, "eval_duration": ended - first,
               "cached_tokens": counts.cached_tokens}

    def completion(self, prompt: str | list[int], options: Mapping[str, object] | None = None,
                   format: str | JSONObject | None = None, images: Sequence[Media] = (), *,
                   logprobs: int | None = None, shift: bool = True) -> AsyncIterator[Chunk]:
        """A prompt rendered here (the Modelfile's TEMPLATE), completed by ``/completions``. The engine
        applies its own context limit (``shift`` is its business); images and logprobs are not sent."""
        if images:
            raise BadRequest(f"{self.engine.label}: images are not sent to a remote engine")
        if logprobs is not None:
            raise BadRequest(f"{self.engine.label}: logprobs are not available from a remote engine")
        body = self._body(options, format)
        body["prompt"] = prompt if isinstance(prompt, str) else list[JSONValue](prompt)
        return self._stream("/completions", body)

    def chat(self, messages: list[JSONValue], tools: Sequence[JSONValue] | None,
             options: Mapping[str, object] | None = None,
             format: str | JSONObject | None = None) -> AsyncIterator[Chunk]:
        """OpenAI messages (and tools), the engine applying its chat template: ``/chat/completions``."""
        body = self._body(options, format)
        body["messages"] = messages
        if tools:
            body["tools"] = list(tools)
        return self._stream("/chat/completions", body)

    async def embed(self, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], int]:
        """``/embeddings``: the vectors in input order and the engine's prompt token count."""
        resp = await self._request("POST", "/embeddings", {"model": self.engine.model, "input": list[JSONValue](inputs)})
        try:
            answer: JSONValue = json.loads(b"".join([line async for line in self._lines(resp)]))
        except ValueError:
            raise EngineError(f"{self.engine.label}: /embeddings did not answer with JSON") from None
        finally:
            resp.release()
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list) or len(data) != len(inputs):
            raise EngineError(f"{self.engine.label}: /embeddings answered without one vector per input")
        ordered = sorted((d for d in data if isinstance(d, dict)), key=lambda d: _index(d.get("index")))
        vectors: list[list[float]] = []
        for item in ordered:
            vec = item.get("embedding")
            if not isinstance(vec, list) or not all(isinstance(v, (int, float)) for v in vec):
                raise EngineError(f"{self.engine.label}: /embeddings sent a vector that is not a list of numbers")
            vectors.append([float(v) for v in vec if isinstance(v, (int, float))])
        usage = answer.get("usage") if isinstance(answer, dict) else None
        count = usage.get("prompt_tokens") if isinstance(usage, dict) else 0
        return vectors, count if isinstance(count, int) else 0

    async def tokenize(self, text: str, add_special: bool = True, images: Sequence[Media] = ()) -> list[int]:
        raise BadRequest(f"{self.engine.label}: counting tokens needs the model's tokenizer, which only the "
                         "remote engine has")

    async def detokenize(self, tokens: list[int]) -> str:
        raise BadRequest(f"{self.engine.label}: token ids are the remote engine's, not known here")


def _index(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


async def start_remote(engine: Engine, config: Config) -> RemoteRunner:
    """The scheduler's way to start an engine's runner (a ``StartRemote``)."""
    return await RemoteRunner.start(engine, config)


