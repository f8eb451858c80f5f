"""generate / chat / embed: resolve the model, merge options, render the prompt, stream from a runner.

Each function yields Ollama's response chunks (dicts); the last one carries ``done: true``, the
``done_reason`` and measured durations in nanoseconds. The lease on the runner is released when
the iterator finishes or is closed (a client disconnect closes it), which also cancels the
sequence in the runner and frees its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import time
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import datetime, timezone
from typing import Any

from ollamalike import options as opts
from ollamalike.errors import BadRequest, OllamalikeError, RunnerError
from ollamalike.inference.requests import ChatRequest, EmbedRequest, GenerateRequest
from ollamalike.inference.stream import ToolStream

log = logging.getLogger("ollamalike.inference")


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


async def resolve(state: Any, name: str) -> Any:
    """The ResolvedModel for ``name`` (ModelNotFound -> 404). Catalog reads run off the event loop."""
    from ollamalike.library import resolve_model

    if inspect.iscoroutinefunction(resolve_model):
        return await resolve_model(state.store, name)
    return await asyncio.to_thread(resolve_model, state.store, name)


def _capabilities(model: Any) -> list[str]:
    return list(getattr(model, "capabilities", None) or [])


def _display(name: str, model: Any) -> str:
    full = getattr(model, "name", None)
    return str(getattr(full, "display", None) or full or name)


def check_think(name: str, model: Any, think: bool | str | None) -> None:
    if think and "thinking" not in _capabilities(model):
        raise BadRequest(f'"{name}" does not support thinking')


def model_options(model: Any) -> opts.Options:
    """The model's stored parameters, checked once per request (a value this version rejects is skipped)."""
    return opts.Options.from_stored(getattr(model, "parameters", None) or {})


def runner_options(model: Any, request_options: opts.Options) -> opts.Options:
    """Modelfile parameters overridden by the request (validated at the edge, not again here); the
    template's stop words when none are set."""
    merged = opts.Options.merge(model_options(model), request_options)
    if not merged.get("stop"):
        from ollamalike.template import stop_for

        stops = stop_for(model)
        if stops:
            merged = merged.replace(stop=tuple(stops))
    return merged


def _observe(state: Any, req: Any, final: dict[str, Any]) -> None:
    """Hand a finished request's final fields to the metrics/access log (server/ops.py), if installed."""
    observer = getattr(state, "extras", {}).get("inference_observer")
    if observer is not None:
        try:
            observer(req, final)
        except Exception:
            log.exception("inference observer failed")


class FinalChunk(dict[str, Any]):
    """The last chunk of a generate/chat stream. ``cached_tokens`` (how many prompt tokens the prefix
    cache served) is no field of Ollama's response; translations read it (OpenAI's
    ``usage.prompt_tokens_details.cached_tokens``)."""

    cached_tokens: int = 0


def _final_chunk(model: str, head: dict[str, Any], done: dict[str, Any], started_ns: int,
                 load_ns: int) -> dict[str, Any]:
    """The last chunk: ``head`` (the empty response or message) then the runner's stats and durations.

    ``prompt_eval_count`` is the whole prompt, cached or not (as Ollama); ``prompt_eval_duration``
    the time measured evaluating what was not cached.
    """
    if not done:
        raise RunnerError("the model runner stopped before finishing the response")
    final = FinalChunk({
        "model": model,
        "created_at": now_rfc3339(),
        **head,
        "done": True,
        "done_reason": done.get("done_reason") or "stop",
        "total_duration": time.perf_counter_ns() - started_ns,
        "load_duration": load_ns,
        "prompt_eval_count": int(done.get("prompt_eval_count") or 0),
        "prompt_eval_duration": int(done.get("prompt_eval_duration") or 0),
        "eval_count": int(done.get("eval_count") or 0),
        "eval_duration": int(done.get("eval_duration") or 0),
    })
    final.cached_tokens = int(done.get("cached_tokens") or 0)
    return final


def _with_context(final: dict[str, Any], context: list[int]) -> FinalChunk:
    """``final`` with generate's ``context`` right after done_reason, where Ollama puts it."""
    items = list(final.items())
    out = FinalChunk({**dict(items[:5]), "context": context, **dict(items[5:])})
    out.cached_tokens = getattr(final, "cached_tokens", 0)
    return out


async def _pieces(runner: Any, tokens: list[int], run_opts: opts.Options, fmt: Any, splitter: Any,
                  done: dict[str, Any]) -> AsyncGenerator[tuple[str, str], None]:
    """The runner's text as (thinking, content) pieces; its final chunk is stored into ``done``."""
    async with contextlib.aclosing(runner.completion(tokens, run_opts.to_json(), fmt)) as chunks:
        async for chunk in chunks:
            if chunk.get("done"):
                done.update(chunk)
                return
            text = chunk.get("content", "")
            if text:
                yield splitter.feed(text) if splitter else ("", text)


async def _load_only(state: Any, req_model: str, model: Any, options: opts.Options,
                     keep_alive: float | None) -> str:
    """An empty prompt: load the model (or, with keep_alive 0, unload it). Returns the done_reason."""
    if keep_alive == 0:
        await state.scheduler.unload(model)
        return "unload"
    lease = await state.scheduler.acquire(model, options, keep_alive)
    lease.release()
    return "load"


# -- truncation --------------------------------------------------------------------------------
# The service owns truncation: it knows the chat messages (whole turns are dropped) and num_keep.
# The runner refuses, never cuts, a prompt that does not fit its slot, so the tokens sent are
# exactly the tokens the model sees and generate's ``context`` is what the model saw plus its output.
def prompt_budget(num_ctx: int) -> int:
    """The most prompt tokens a slot of ``num_ctx`` takes: one cell stays free for the first generated token."""
    return max(1, num_ctx - 1)


def truncate_tokens(tokens: list[int], num_ctx: int, num_keep: int) -> list[int]:
    """Keep the first ``num_keep`` tokens and the tail, so the prompt has at most ``num_ctx`` tokens (Ollama's rule)."""
    if len(tokens) <= num_ctx:
        return tokens
    keep = max(0, min(num_keep, num_ctx // 2))
    return tokens[:keep] + tokens[len(tokens) - (num_ctx - keep) :]


async def _fit_chat(runner: Any, model: Any, messages: list[dict[str, Any]], tools: Any, think: Any,
                    num_ctx: int) -> tuple[str, list[int]]:
    """Render the chat, dropping the oldest non-system messages until the prompt fits num_ctx.

    Dropping more messages never makes the prompt longer, so the smallest number to drop is found
    by bisection: a few tokenizations even for a very long history.
    """
    from ollamalike.template import render_chat

    droppable = [i for i, m in enumerate(messages) if m["role"] != "system"]
    rendered: dict[int, tuple[str, list[int]]] = {}

    async def attempt(k: int) -> tuple[str, list[int]]:
        if k not in rendered:
            gone = set(droppable[:k])
            keep = [m for i, m in enumerate(messages) if i not in gone]
            # Off the event loop: a pathological template may take its whole time budget.
            prompt = await asyncio.to_thread(render_chat, model, keep, tools=tools, think=think)
            rendered[k] = (prompt, await runner.tokenize(prompt, add_special=True))
        return rendered[k]

    prompt, tokens = await attempt(0)
    if len(tokens) <= num_ctx:
        return prompt, tokens
    lo, hi = 1, max(len(droppable) - 1, 0)  # the latest message always stays
    if hi < lo or len((await attempt(hi))[1]) > num_ctx:
        # Even the latest message alone is too long: keep its tail, as generate does.
        prompt, tokens = await attempt(max(hi, 0))
        log.info("chat prompt truncated to the last %d tokens to fit num_ctx %d", num_ctx, num_ctx)
        return prompt, truncate_tokens(tokens, num_ctx, 0)
    while lo < hi:
        mid = (lo + hi) // 2
        if len((await attempt(mid))[1]) <= num_ctx:
            hi = mid
        else:
            lo = mid + 1
    log.info("chat prompt truncated: dropped the %d oldest messages to fit num_ctx %d", lo, num_ctx)
    return await attempt(lo)


# -- generate ----------------------------------------------------------------------------------
async def generate(state: Any, req: GenerateRequest) -> AsyncIterator[dict[str, Any]]:
    started = time.perf_counter_ns()
    model = await resolve(state, req.model)
    caps = _capabilities(model)
    if "completion" not in caps and caps:
        raise BadRequest(f'"{req.model}" does not support generate')
    check_think(req.model, model, req.think)
    if req.suffix and "insert" not in caps:
        raise BadRequest(f'"{req.model}" does not support insert')
    if req.images and "vision" not in caps:
        raise BadRequest("this model is missing data required for image input")
    options = runner_options(model, req.options)
    if not req.prompt and not req.suffix and not req.context:
        reason = await _load_only(state, req.model, model, options, req.keep_alive)
        yield {"model": req.model, "created_at": now_rfc3339(), "response": "", "done": True, "done_reason": reason}
        return

    if req.raw:
        prompt = req.prompt
    else:
        from ollamalike.template import render_generate

        prompt = await asyncio.to_thread(
            render_generate, model, req.prompt, system=req.system, suffix=req.suffix,
            template_override=req.template, include_history=not req.context, think=req.think)
    lease = await state.scheduler.acquire(model, options, req.keep_alive)
    try:
        runner = lease.runner
        # The previous context stays token-exact (its KV cache can be reused); the new text
        # continues it, so it gets no second BOS.
        prefix = [int(t) for t in req.context or []]
        tokens = prefix + await runner.tokenize(prompt, add_special=not prefix)
        num_keep = opts.int_option(options, "num_keep")
        tokens = truncate_tokens(tokens, prompt_budget(lease.num_ctx),
                                 opts.PARAMETERS["num_keep"].default if num_keep is None else num_keep)
        splitter = _think_parser(prompt) if req.think else None
        run_opts = options.with_defaults().replace(num_ctx=lease.num_ctx)
        done: dict[str, Any] = {}
        async with contextlib.aclosing(_pieces(runner, tokens, run_opts, req.format, splitter, done)) as pieces:
            async for thinking, content in pieces:
                if thinking or content:
                    yield _gen_chunk(req.model, content, thinking)
        if splitter:
            thinking, content = splitter.flush()
            if thinking or content:
                yield _gen_chunk(req.model, content, thinking)
        final = _final_chunk(req.model, {"response": ""}, done, started, lease.load_duration_ns)
        # Ollama puts the context right after done_reason.
        context = tokens + [int(t) for t in done.get("tokens") or []]
        final = _with_context(final, context)
        _observe(state, req, final)
        yield final
    finally:
        lease.release()


def _think_parser(prompt: str) -> Any:
    from ollamalike.template import ThinkingParser, prompt_opens_thinking

    return ThinkingParser(started=prompt_opens_thinking(prompt))


def _gen_chunk(model: str, content: str, thinking: str) -> dict[str, Any]:
    chunk: dict[str, Any] = {"model": model, "created_at": now_rfc3339(), "response": content}
    if thinking:
        chunk["thinking"] = thinking
    chunk["done"] = False
    return chunk


# -- chat ---------------------------------------------------------------------------------------
async def chat(state: Any, req: ChatRequest) -> AsyncIterator[dict[str, Any]]:
    started = time.perf_counter_ns()
    model = await resolve(state, req.model)
    caps = _capabilities(model)
    if "completion" not in caps and caps:
        raise BadRequest(f'"{req.model}" does not support chat')
    check_think(req.model, model, req.think)
    if req.tools and "tools" not in caps:
        raise BadRequest(f'"{req.model}" does not support tools')
    if any(m.get("images") for m in req.messages) and "vision" not in caps:
        raise BadRequest("this model is missing data required for image input")
    options = runner_options(model, req.options)
    if not req.messages:
        reason = await _load_only(state, req.model, model, options, req.keep_alive)
        yield {"model": req.model, "created_at": now_rfc3339(), "message": {"role": "assistant", "content": ""},
               "done": True, "done_reason": reason}
        return

    lease = await state.scheduler.acquire(model, options, req.keep_alive)
    try:
        runner = lease.runner
        prompt, tokens = await _fit_chat(runner, model, req.messages, req.tools, req.think,
                                         prompt_budget(lease.num_ctx))
        splitter = _think_parser(prompt) if req.think else None
        # With tools, content goes through the tool-call parser: calls anywhere in the output come
        # out as tool_calls (only of the offered tools), everything else as content.
        tool_stream = ToolStream(model, req.tools) if req.tools else None
        run_opts = options.with_defaults().replace(num_ctx=lease.num_ctx)
        done: dict[str, Any] = {}
        async with contextlib.aclosing(_pieces(runner, tokens, run_opts, req.format, splitter, done)) as pieces:
            async for thinking, content in pieces:
                calls: list[dict[str, Any]] = []
                if tool_stream is not None and content:
                    content, calls = tool_stream.feed(content)
                if thinking or content or calls:
                    yield _chat_chunk(req.model, content, thinking, tool_calls=calls)
        thinking, content = splitter.flush() if splitter else ("", "")
        calls = []
        if tool_stream is not None:
            content, calls = tool_stream.feed(content) if content else ("", [])
            rest, more = tool_stream.flush()
            content, calls = content + rest, calls + more
        if thinking or content or calls:
            yield _chat_chunk(req.model, content, thinking, tool_calls=calls)
        final = _final_chunk(req.model, {"message": {"role": "assistant", "content": ""}}, done, started,
                             lease.load_duration_ns)
        _observe(state, req, final)
        yield final
    finally:
        lease.release()


def _chat_chunk(model: str, content: str, thinking: str, tool_calls: list[dict[str, Any]] | None = None
                ) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if thinking:
        message["thinking"] = thinking
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"model": model, "created_at": now_rfc3339(), "message": message, "done": False}


# -- embed --------------------------------------------------------------------------------------
def _shorten(vector: list[float], dims: int | None) -> list[float]:
    """Matryoshka-style truncation: keep the first ``dims`` values and normalize again."""
    if dims is None or dims >= len(vector):
        return vector
    head = vector[:dims]
    norm = math.sqrt(sum(v * v for v in head))
    return [v / norm for v in head] if norm > 0 else head


async def embed(state: Any, req: EmbedRequest) -> dict[str, Any]:
    started = time.perf_counter_ns()
    model = await resolve(state, req.model)
    options = opts.Options.merge(model_options(model), req.options)
    lease = await state.scheduler.acquire(model, options, req.keep_alive, embedding=True)
    try:
        vectors: list[list[float]] = []
        count = 0
        if req.input:
            vectors, count = await lease.runner.embed(req.input, req.truncate)
        width = len(vectors[0]) if vectors else 0
        if req.dimensions is not None and vectors and req.dimensions > width:
            raise BadRequest(f"dimensions {req.dimensions} is larger than the model's embedding size {width}")
        result = {
            "model": req.model,
            "embeddings": [_shorten([float(v) for v in vec], req.dimensions) for vec in vectors],
            "total_duration": time.perf_counter_ns() - started,
            "load_duration": lease.load_duration_ns,
            "prompt_eval_count": int(count),
        }
        _observe(state, req, result)
        return result
    finally:
        lease.release()


# -- non-streamed responses ------------------------------------------------------------------------
async def collect(chunks: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """Join a generate/chat stream into the one object a ``stream: false`` request answers with."""
    parts: list[str] = []
    thinking: list[str] = []
    calls: list[dict[str, Any]] = []
    last: dict[str, Any] = {}
    is_chat = False
    async with contextlib.aclosing(chunks) as stream:  # type: ignore[type-var]
        async for chunk in stream:
            last = chunk
            if "message" in chunk:
                is_chat = True
                msg = chunk["message"]
                parts.append(msg.get("content") or "")
                thinking.append(msg.get("thinking") or "")
                calls.extend(msg.get("tool_calls") or [])
            else:
                parts.append(chunk.get("response") or "")
                thinking.append(chunk.get("thinking") or "")
    if not last.get("done"):
        raise OllamalikeError("the response ended before it was complete")
    out = dict(last)
    if is_chat:
        message: dict[str, Any] = {"role": "assistant", "content": "".join(parts)}
        if any(thinking):
            message["thinking"] = "".join(thinking)
        if calls:
            message["tool_calls"] = calls
        out["message"] = message
    else:
        out["response"] = "".join(parts)
        if any(thinking):
            out["thinking"] = "".join(thinking)
        # Keep Ollama's field order: model, created_at, response, thinking, done, ...
        out = {k: out[k] for k in ("model", "created_at", "response", "thinking") if k in out} | {
            k: v for k, v in out.items() if k not in ("model", "created_at", "response", "thinking")
        }
    return out
