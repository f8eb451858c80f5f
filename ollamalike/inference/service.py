"""``InferenceService``: generate / chat / embed / count tokens — resolve the model, merge options,
render the prompt, stream from a runner.

The service is built once per daemon (``AppState.create``) from its collaborators: the ``Store``
models resolve from, the ``Scheduler`` that leases runners, and an ``InferenceObserver`` (the
metrics and access log of ``server/ops.py``) told about every finished request. The HTTP handlers
(native, OpenAI, Anthropic, Responses) all call its methods: the one inference path.

``generate`` and ``chat`` yield Ollama's response chunks (``inference/chunks.py``); the last one
carries ``done: true``. The lease on the runner is released when the iterator finishes or is
closed (a client disconnect closes it), which also cancels the sequence in the runner and frees
its slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from ollamalike import options as opts
from ollamalike.errors import BadRequest
from ollamalike.inference.chunks import (
    FinalChunk,
    chat_chunk,
    final_chunk,
    gen_chunk,
    now_rfc3339,
    shorten,
    with_context,
)
from ollamalike.inference.requests import ChatRequest, EmbedRequest, GenerateRequest
from ollamalike.inference.stream import new_call_id
from ollamalike.library.models import ResolvedModel
from ollamalike.runner.like import RunnerLike
from ollamalike.scheduler import Scheduler
from ollamalike.store import Store
from ollamalike.template.parsers import Content, Event, OutputParser, ToolCall, merge, select, template_think

if TYPE_CHECKING:
    from ollamalike.template.render import ModelLike

__all__ = [
    "FinalChunk",
    "InferenceObserver",
    "InferenceRequest",
    "InferenceService",
    "check_think",
    "now_rfc3339",
    "resolve",
    "runner_options",
    "shorten",
    "truncate_tokens",
]

log = logging.getLogger("ollamalike.inference")

InferenceRequest = GenerateRequest | ChatRequest | EmbedRequest
# The runner's text as it streams: output-parser events (template.parsers).
Pieces = AsyncGenerator[list[Event], None]
Chunks = AsyncGenerator[dict[str, Any], None]

# Kept for the tests that reach the vector shortening under its old name.
_shorten = shorten


class InferenceObserver(Protocol):
    """Told about each finished generate/chat/embed: the request and its final fields."""

    def __call__(self, req: InferenceRequest, final: Mapping[str, Any]) -> None: ...


async def resolve(store: Store, name: str) -> ResolvedModel:
    """The ResolvedModel for ``name`` (ModelNotFound -> 404). Catalog reads run off the event loop."""
    from ollamalike.library import resolve_model

    return await asyncio.to_thread(resolve_model, store, name)


def check_think(name: str, model: ResolvedModel, think: bool | str | None) -> None:
    if think and "thinking" not in model.capabilities:
        raise BadRequest(f'"{name}" does not support thinking')


def _check_chat_inputs(model: ResolvedModel, req: ChatRequest) -> None:
    """Tools and images need a model that takes them (chat and count_tokens alike)."""
    check_think(req.model, model, req.think)
    if req.tools and "tools" not in model.capabilities:
        raise BadRequest(f'"{req.model}" does not support tools')
    if any(m.get("images") for m in req.messages) and "vision" not in model.capabilities:
        raise BadRequest("this model is missing data required for image input")


def model_options(model: ResolvedModel) -> opts.Options:
    """The model's stored parameters, checked once per request (a value this version rejects is skipped)."""
    return opts.Options.from_stored(model.parameters or {})


def runner_options(model: ResolvedModel, request_options: opts.Options) -> opts.Options:
    """Modelfile parameters overridden by the request (validated at the edge, not again here); the
    template's stop words when none are set."""
    merged = opts.Options.merge(model_options(model), request_options)
    if not merged.get("stop"):
        from ollamalike.template import stop_for

        stops = stop_for(model)
        if stops:
            merged = merged.replace(stop=tuple(stops))
    return merged


async def _pieces(runner: RunnerLike, tokens: list[int], run_opts: opts.Options,
                  fmt: str | dict[str, Any] | None, parser: OutputParser | None,
                  done: dict[str, Any]) -> Pieces:
    """The runner's text as output-parser events; its final chunk is stored into ``done``."""
    async with contextlib.aclosing(runner.completion(tokens, run_opts.to_json(), fmt)) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            if chunk.get("done"):
                done.update(chunk)
                return
            text = chunk.get("content", "")
            if text:
                yield parser.feed(text) if parser else [Content(text)]


def _calls(calls: list[ToolCall], start: int) -> list[dict[str, Any]]:
    """Ollama's ``tool_calls`` entries, each with an id and its index over the whole output."""
    return [{"id": new_call_id(), "function": {"index": start + i, "name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(calls)]


# -- truncation --------------------------------------------------------------------------------
def prompt_budget(num_ctx: int) -> int:
    """The most prompt tokens a slot of ``num_ctx`` takes: one cell stays free for the first generated token."""
    return max(1, num_ctx - 1)


def truncate_tokens(tokens: list[int], num_ctx: int, num_keep: int) -> list[int]:
    """Keep the first ``num_keep`` tokens and the tail, so the prompt fits the context (Ollama's rule)."""
    if len(tokens) <= num_ctx:
        return tokens
    keep = max(0, min(num_keep, num_ctx // 2))
    return tokens[:keep] + tokens[len(tokens) - (num_ctx - keep) :]


async def _fit_chat(runner: RunnerLike, model: ModelLike, messages: list[dict[str, Any]],
                    tools: list[dict[str, Any]] | None, think: bool | str | None, num_ctx: int) -> tuple[str, list[int]]:
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


# -- the service ------------------------------------------------------------------------------
class InferenceService:
    """The one inference path: every HTTP API's generate, chat, embed and token count."""

    def __init__(self, store: Store, scheduler: Scheduler, observer: InferenceObserver | None = None) -> None:
        self.store = store
        self.scheduler = scheduler
        # Installed after construction by server/ops.py (the metrics exist once the app is set up).
        self.observer = observer

    def _observe(self, req: InferenceRequest, final: Mapping[str, Any]) -> None:
        """Hand a finished request's final fields to the metrics/access log, if an observer is set."""
        if self.observer is not None:
            try:
                self.observer(req, final)
            except Exception:
                log.exception("inference observer failed")

    async def _load_only(self, model: ResolvedModel, options: opts.Options, keep_alive: float | None) -> str:
        """An empty prompt: load the model (or, with keep_alive 0, unload it). Returns the done_reason."""
        if keep_alive == 0:
            await self.scheduler.unload(model)
            return "unload"
        lease = await self.scheduler.acquire(model, options, keep_alive)
        lease.release()
        return "load"

    # -- generate ------------------------------------------------------------------------------
    async def generate(self, req: GenerateRequest) -> Chunks:
        started = time.perf_counter_ns()
        model = await resolve(self.store, req.model)
        caps = model.capabilities
        if "completion" not in caps and caps:
            raise BadRequest(f'"{req.model}" does not support generate')
        check_think(req.model, model, req.think)
        if req.suffix and "insert" not in caps:
            raise BadRequest(f'"{req.model}" does not support insert')
        if req.images and "vision" not in caps:
            raise BadRequest("this model is missing data required for image input")
        options = runner_options(model, req.options)
        if not req.prompt and not req.suffix and not req.context:
            reason = await self._load_only(model, options, req.keep_alive)
            yield {"model": req.model, "created_at": now_rfc3339(), "response": "", "done": True,
                   "done_reason": reason}
            return

        if req.raw:
            prompt = req.prompt
        else:
            from ollamalike.template import render_generate

            prompt = await asyncio.to_thread(
                render_generate, model, req.prompt, system=req.system, suffix=req.suffix,
                template_override=req.template, include_history=not req.context,
                think=template_think(model, req.think))
        lease = await self.scheduler.acquire(model, options, req.keep_alive)
        try:
            runner = lease.runner
            # The previous context stays token-exact (its KV cache can be reused); the new text
            # continues it, so it gets no second BOS.
            prefix = [int(t) for t in req.context or []]
            tokens = prefix + await runner.tokenize(prompt, add_special=not prefix)
            num_keep = opts.int_option(options, "num_keep")
            tokens = truncate_tokens(tokens, prompt_budget(lease.num_ctx),
                                     opts.PARAMETERS["num_keep"].default if num_keep is None else num_keep)
            # Raw prompts are not parsed; otherwise the model's parser (generate has no tool_calls
            # field: calls a family parser finds are dropped, as Ollama drops them).
            parser = None if req.raw else select(model, None, req.think, prompt)
            run_opts = options.with_defaults().replace(num_ctx=lease.num_ctx)
            done: dict[str, Any] = {}
            pieces = _pieces(runner, tokens, run_opts, req.format, parser, done)
            async with contextlib.aclosing(pieces):
                async for events in pieces:
                    content, thinking, _ = merge(events)
                    if thinking or content:
                        yield gen_chunk(req.model, content, thinking)
            if parser:
                content, thinking, _ = merge(parser.finish())
                if thinking or content:
                    yield gen_chunk(req.model, content, thinking)
            final = final_chunk(req.model, {"response": ""}, done, started, lease.load_duration_ns)
            # Ollama puts the context right after done_reason.
            context = tokens + [int(t) for t in done.get("tokens") or []]
            final = with_context(final, context)
            self._observe(req, final)
            yield final
        finally:
            lease.release()

    # -- chat ----------------------------------------------------------------------------------
    async def chat(self, req: ChatRequest) -> Chunks:
        started = time.perf_counter_ns()
        model = await resolve(self.store, req.model)
        caps = model.capabilities
        if "completion" not in caps and caps:
            raise BadRequest(f'"{req.model}" does not support chat')
        _check_chat_inputs(model, req)
        options = runner_options(model, req.options)
        if not req.messages:
            reason = await self._load_only(model, options, req.keep_alive)
            yield {"model": req.model, "created_at": now_rfc3339(),
                   "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": reason}
            return

        lease = await self.scheduler.acquire(model, options, req.keep_alive)
        try:
            runner = lease.runner
            prompt, tokens = await _fit_chat(runner, model, req.messages, req.tools,
                                             template_think(model, req.think), prompt_budget(lease.num_ctx))
            # The model's output parser (template.parsers.select): its family's, or the generic one
            # (tool calls of the offered tools anywhere in the output, <think> when thinking is on).
            parser = select(model, req.tools, req.think, prompt)
            run_opts = options.with_defaults().replace(num_ctx=lease.num_ctx)
            done: dict[str, Any] = {}
            pieces = _pieces(runner, tokens, run_opts, req.format, parser, done)
            count = 0
            async with contextlib.aclosing(pieces):
                async for events in pieces:
                    content, thinking, found = merge(events)
                    if thinking or content or found:
                        yield chat_chunk(req.model, content, thinking, tool_calls=_calls(found, count))
                    count += len(found)
            if parser:
                content, thinking, found = merge(parser.finish())
                if thinking or content or found:
                    yield chat_chunk(req.model, content, thinking, tool_calls=_calls(found, count))
            final = final_chunk(req.model, {"message": {"role": "assistant", "content": ""}}, done, started,
                                lease.load_duration_ns)
            self._observe(req, final)
            yield final
        finally:
            lease.release()

    # -- embed ---------------------------------------------------------------------------------
    async def embed(self, req: EmbedRequest) -> dict[str, Any]:
        started = time.perf_counter_ns()
        model = await resolve(self.store, req.model)
        options = opts.Options.merge(model_options(model), req.options)
        lease = await self.scheduler.acquire(model, options, req.keep_alive, embedding=True)
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
                "embeddings": [shorten([float(v) for v in vec], req.dimensions) for vec in vectors],
                "total_duration": time.perf_counter_ns() - started,
                "load_duration": lease.load_duration_ns,
                "prompt_eval_count": int(count),
            }
            self._observe(req, result)
            return result
        finally:
            lease.release()

    # -- token count ---------------------------------------------------------------------------
    async def count_chat_tokens(self, req: ChatRequest) -> int:
        """How many tokens a chat request's prompt is, by the model's own tokenizer.

        The prompt is rendered exactly as ``chat`` renders it (the model's template, its SYSTEM and
        MESSAGE history, the tools) and tokenized by the model's runner, so the count is what the
        model would be given (before any truncation to num_ctx). Anthropic's count_tokens.
        """
        from ollamalike.template import render_chat

        model = await resolve(self.store, req.model)
        _check_chat_inputs(model, req)
        prompt = await asyncio.to_thread(render_chat, model, req.messages, tools=req.tools,
                                         think=template_think(model, req.think))
        lease = await self.scheduler.acquire(model, runner_options(model, req.options), req.keep_alive)
        try:
            return len(await lease.runner.tokenize(prompt, add_special=True))
        finally:
            lease.release()
