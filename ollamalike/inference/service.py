"""``InferenceService``: generate / chat / embed / count tokens — resolve the model, merge options,
render the prompt, stream from a runner.

The service is built once per daemon (``AppState.create``) from its collaborators: the ``Store``
models resolve from, the ``Scheduler`` that leases runners, and an ``InferenceObserver`` (the
metrics and access log of ``server/ops.py``) told about every finished request. The HTTP handlers
(native, OpenAI, Anthropic, Responses) all call its methods: the one inference path.

``generate`` and ``chat`` yield Ollama's response chunks (``inference/chunks.py``); the last one
carries ``done: true``. The lease on the runner is released when the iterator finishes or is
closed (a client disconnect closes it), which also cancels the sequence in the runner and frees
its slot. Leases are taken through ``inference/retry.py``: a runner found dead before it answered
is evicted and the request retried once on a fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Protocol

from ollamalike import options as opts
from ollamalike.errors import BadRequest
from ollamalike.inference.chunks import (
    Chunk,
    EmbedResponse,
    FinalChunk,
    chat_chunk,
    final_chunk,
    gen_chunk,
    generated_tokens,
    now_rfc3339,
    shorten,
    with_context,
)
from ollamalike.inference.fit import check_fits, fit_chat, prompt_budget, too_many_images, truncate_tokens
from ollamalike.inference.requests import (
    ChatMessage,
    ChatRequest,
    EmbedRequest,
    GenerateRequest,
    runner_logprobs,
)
from ollamalike.inference.retry import acquire_retrying
from ollamalike.inference.stream import new_call_id
from ollamalike.jsontypes import JSONObject
from ollamalike.library.models import ResolvedModel
from ollamalike.media import Audio, Media, decode_images, tag_messages, tag_prompt
from ollamalike.names import ModelName
from ollamalike.runner.like import RunnerLike
from ollamalike.scheduler import Scheduler
from ollamalike.store import Store
from ollamalike.template.parsers import Content, Event, OutputParser, merge, select, template_think
from ollamalike.template.parsers import ToolCall as FoundCall

if TYPE_CHECKING:
    from ollamalike.template.render import ModelLike
    from ollamalike.template.values import Tool, ToolCall

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
MEDIA_CAPS = {"vision", "audio"}  # what a model needs to take any item of ``images``
# The runner's text as it streams: output-parser events (template.parsers), with the logprob
# entries of the runner chunk they came from.
Pieces = AsyncGenerator[tuple[list[Event], list[object]], None]
Chunks = AsyncGenerator[Chunk, None]

# Kept for the tests that reach the vector shortening under its old name.
_shorten = shorten


class InferenceObserver(Protocol):
    """Told about each finished generate/chat/embed: the request and its final fields."""

    def __call__(self, req: InferenceRequest, final: Mapping[str, object]) -> None: ...


async def resolve(store: Store, name: ModelName) -> ResolvedModel:
    """The ResolvedModel for ``name``, the request's name parsed at the edge (ModelNotFound -> 404).
    Catalog reads run off the event loop."""
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
    if any(m.get("images") for m in req.messages) and not MEDIA_CAPS & set(model.capabilities):
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


async def _pieces(runner: RunnerLike, tokens: list[int] | str, run_opts: opts.Options,
                  fmt: str | JSONObject | None, parser: OutputParser | None,
                  done: JSONObject, req: GenerateRequest | ChatRequest, images: list[Media] | None = None) -> Pieces:
    """The runner's text as output-parser events, with logprob entries; its final chunk is stored into
    ``done``. With images the prompt is text (the runner places them at its tags).

    Logprob entries go on with the events of the runner chunk that carried them, even when the
    parser holds its text back (as Ollama sends them while a parser buffers)."""
    stream = runner.completion(tokens, run_opts.to_json(), fmt, images or (),
                               logprobs=runner_logprobs(req.logprobs, req.top_logprobs), shift=req.shift)
    async with contextlib.aclosing(stream) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            if chunk.get("done"):
                done.update(chunk)
                return
            raw_text = chunk.get("content")
            text = raw_text if isinstance(raw_text, str) else ""
            raw_logprobs = chunk.get("logprobs")
            logprobs: list[object] = list(raw_logprobs) if isinstance(raw_logprobs, list) else []
            if text or logprobs:
                events: list[Event] = (parser.feed(text) if parser else [Content(text)]) if text else []
                yield events, logprobs


def _calls(calls: list[FoundCall], start: int) -> list[ToolCall]:
    """Ollama's ``tool_calls`` entries, each with an id and its index over the whole output."""
    return [{"id": new_call_id(), "function": {"index": start + i, "name": c.name, "arguments": c.arguments}}
            for i, c in enumerate(calls)]


# -- truncation (inference/fit.py) -------------------------------------------------------------
async def _fit_chat(runner: RunnerLike, model: ModelLike, messages: list[ChatMessage],
                    tools: list[Tool] | None, think: bool | str | None, num_ctx: int) -> tuple[str, list[int]]:
    """A text-only chat fitted to num_ctx: the prompt and its tokens (``fit_chat`` without images)."""
    prompt, tokens, _ = await fit_chat(runner, model, messages, tools, think, num_ctx)
    return prompt, tokens


# -- the service ------------------------------------------------------------------------------
class InferenceService:
    """The one inference path: every HTTP API's generate, chat, embed and token count."""

    def __init__(self, store: Store, scheduler: Scheduler, observer: InferenceObserver | None = None) -> None:
        self.store = store
        self.scheduler = scheduler
        # Installed after construction by server/ops.py (the metrics exist once the app is set up).
        self.observer = observer

    async def _decode(self, model: ResolvedModel, texts: list[list[str]], where: list[str]) -> list[list[Media]]:
        """Every image (or audio clip) of a request decoded and checked (off the event loop), before any
        model loads; each kind needs a projector that takes it."""
        if not any(texts):
            return [[] for _ in texts]
        limit = self.scheduler.config.max_image_pixels

        def run() -> list[list[Media]]:
            return [decode_images(t, limit, w) if t else [] for t, w in zip(texts, where, strict=True)]

        decoded = await asyncio.to_thread(run)
        items = [m for ms in decoded for m in ms]
        if any(isinstance(m, Audio) for m in items) and "audio" not in model.capabilities:
            raise BadRequest(f'"{model.name}" does not support audio input')
        if any(not isinstance(m, Audio) for m in items) and "vision" not in model.capabilities:
            raise BadRequest("this model is missing data required for image input")
        return decoded

    def _observe(self, req: InferenceRequest, final: Mapping[str, object]) -> None:
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
        model = await resolve(self.store, req.name)
        caps = model.capabilities
        if "completion" not in caps and caps:
            raise BadRequest(f'"{req.model}" does not support generate')
        check_think(req.model, model, req.think)
        if req.suffix and "insert" not in caps:
            raise BadRequest(f'"{req.model}" does not support insert')
        if req.images and not MEDIA_CAPS & set(caps):
            raise BadRequest("this model is missing data required for image input")
        options = runner_options(model, req.options)
        images = (await self._decode(model, [req.images], ["images"]))[0]
        if images and req.context:
            raise BadRequest("context cannot be combined with images: send the conversation to /api/chat instead")
        if not req.prompt and not req.suffix and not req.context and not images:
            reason = await self._load_only(model, options, req.keep_alive)
            yield FinalChunk({"model": req.model, "created_at": now_rfc3339(), "response": "", "done": True,
                              "done_reason": reason})
            return
        if model.engine is not None:
            from ollamalike.inference import remote

            async with contextlib.aclosing(remote.generate(self.scheduler, model, req, options, started,
                                                           lambda final: self._observe(req, final))) as chunks:
                async for chunk in chunks:
                    yield chunk
            return

        text = tag_prompt(req.prompt, len(images)) if images else req.prompt
        if req.raw:
            prompt = text
        else:
            from ollamalike.template import render_generate

            prompt = await asyncio.to_thread(
                render_generate, model, text, system=req.system, suffix=req.suffix,
                template_override=req.template, include_history=not req.context,
                think=template_think(model, req.think))
        lease = await acquire_retrying(self.scheduler, model, options, req.keep_alive)
        try:
            runner = lease.runner
            # The previous context stays token-exact (its KV cache can be reused); the new text
            # continues it, so it gets no second BOS.
            prefix = [int(t) for t in req.context or []]
            if images:  # an image is never cut in two: too long is refused, not truncated
                tokens = await runner.tokenize(prompt, add_special=True, images=images)
                if len(tokens) > prompt_budget(lease.num_ctx):
                    raise too_many_images(len(images), len(tokens), prompt_budget(lease.num_ctx))
            else:
                tokens = prefix + await runner.tokenize(prompt, add_special=not prefix)
                num_keep = opts.int_option(options, "num_keep")
                if not req.truncate:
                    check_fits(tokens, lease.num_ctx)
                tokens = truncate_tokens(tokens, prompt_budget(lease.num_ctx),
                                         opts.PARAMETERS["num_keep"].default if num_keep is None else num_keep)
            # Raw prompts are not parsed; otherwise the model's parser (generate has no tool_calls
            # field: calls a family parser finds are dropped, as Ollama drops them).
            parser = None if req.raw else select(model, None, req.think, prompt)
            run_opts = options.with_defaults().replace(num_ctx=lease.num_ctx)
            done: JSONObject = {}
            pieces = _pieces(runner, prompt if images else tokens, run_opts, req.format, parser, done, req, images)
            async with contextlib.aclosing(pieces):
                async for events, logprobs in pieces:
                    content, thinking, _ = merge(events)
                    if thinking or content or logprobs:
                        yield gen_chunk(req.model, content, thinking, logprobs)
            if parser:
                content, thinking, _ = merge(parser.finish())
                if thinking or content:
                    yield gen_chunk(req.model, content, thinking)
            final = final_chunk(req.model, {"response": ""}, done, started, lease.load_duration_ns)
            # Ollama puts the context right after done_reason. A prompt with images has none: its image
            # positions are no token ids a client could send back, and the text alone would continue a
            # conversation that silently lost its images (send the conversation to /api/chat instead).
            if not images:
                final = with_context(final, tokens + generated_tokens(done))
            self._observe(req, final)
            yield final
        finally:
            lease.release()

    # -- chat ----------------------------------------------------------------------------------
    async def chat(self, req: ChatRequest) -> Chunks:
        started = time.perf_counter_ns()
        model = await resolve(self.store, req.name)
        caps = model.capabilities
        if "completion" not in caps and caps:
            raise BadRequest(f'"{req.model}" does not support chat')
        _check_chat_inputs(model, req)
        options = runner_options(model, req.options)
        images = await self._chat_images(model, req)
        if not req.messages:
            reason = await self._load_only(model, options, req.keep_alive)
            yield FinalChunk({"model": req.model, "created_at": now_rfc3339(),
                              "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": reason})
            return
        if model.engine is not None:
            from ollamalike.inference import remote

            async with contextlib.aclosing(remote.chat(self.scheduler, model, req, options, started,
                                                       lambda final: self._observe(req, final))) as chunks:
                async for chunk in chunks:
                    yield chunk
            return

        lease = await acquire_retrying(self.scheduler, model, options, req.keep_alive)
        try:
            runner = lease.runner
            prompt, tokens, imgs = await fit_chat(runner, model, req.messages, req.tools,
                                                  template_think(model, req.think), prompt_budget(lease.num_ctx),
                                                  images, truncate=req.truncate)
            if not req.truncate:
                check_fits(tokens, lease.num_ctx)
            # The model's output parser (template.parsers.select): its family's, or the generic one
            # (tool calls of the offered tools anywhere in the output, <think> when thinking is on).
            parser = select(model, req.tools, req.think, prompt)
            run_opts = options.with_defaults().replace(num_ctx=lease.num_ctx)
            done: JSONObject = {}
            pieces = _pieces(runner, prompt if imgs else tokens, run_opts, req.format, parser, done, req, imgs)
            count = 0
            async with contextlib.aclosing(pieces):
                async for events, logprobs in pieces:
                    content, thinking, found = merge(events)
                    if thinking or content or found or logprobs:
                        yield chat_chunk(req.model, content, thinking, tool_calls=_calls(found, count),
                                         logprobs=logprobs)
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

    async def _chat_images(self, model: ResolvedModel, req: ChatRequest) -> list[list[Media]] | None:
        """Each message's decoded images (None when the chat has none)."""
        texts = [list(m.get("images") or []) for m in req.messages]
        if not any(texts):
            return None
        return await self._decode(model, texts, [f"messages[{i}].images" for i in range(len(texts))])

    # -- embed ---------------------------------------------------------------------------------
    async def embed(self, req: EmbedRequest) -> EmbedResponse:
        started = time.perf_counter_ns()
        most = self.scheduler.config.max_embed_inputs
        if len(req.input) > most:  # before any model is resolved or loaded
            raise BadRequest(f"too many inputs: {len(req.input)} in one embed request, at most {most} "
                             "(OLLAMALIKE_MAX_EMBED_INPUTS)")
        model = await resolve(self.store, req.name)
        options = opts.Options.merge(model_options(model), req.options)
        lease = await acquire_retrying(self.scheduler, model, options, req.keep_alive, embedding=True)
        try:
            vectors: list[list[float]] = []
            count = 0
            if req.input:
                vectors, count = await lease.runner.embed(req.input, req.truncate)
            width = len(vectors[0]) if vectors else 0
            if req.dimensions is not None and vectors and req.dimensions > width:
                raise BadRequest(f"dimensions {req.dimensions} is larger than the model's embedding size {width}")
            result: EmbedResponse = {
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

        model = await resolve(self.store, req.name)
        _check_chat_inputs(model, req)
        images = await self._chat_images(model, req)
        messages, imgs = tag_messages(req.messages, images or [[] for _ in req.messages])
        prompt = await asyncio.to_thread(render_chat, model, messages, tools=req.tools,
                                         think=template_think(model, req.think))
        lease = await acquire_retrying(self.scheduler, model, runner_options(model, req.options), req.keep_alive)
        try:
            if imgs:
                return len(await lease.runner.tokenize(prompt, add_special=True, images=imgs))
            return len(await lease.runner.tokenize(prompt, add_special=True))
        finally:
            lease.release()
