"""Generate and chat for a model served by a remote engine (its Modelfile has an ENGINE line).

The same inference path as a local model's (``InferenceService.generate``/``chat`` hand over here
once the model is resolved and its options merged), on a lease the scheduler gives out as for any
runner (``num_parallel`` in flight, the queue, ``ps``); only the prompt side differs:

- with a TEMPLATE (the model's, or generate's ``template`` field), or ``raw``, the prompt is rendered
  here exactly as for a local model and completed by the engine's ``/v1/completions``, so templates,
  stop words, ``<think>`` splitting and the tool-call parser behave as they do locally;
- otherwise the messages (the model's SYSTEM and MESSAGE history first) and tools go to
  ``/v1/chat/completions`` and the engine applies its own chat template; its tool calls and
  reasoning come back structured. Generate sends its prompt as one user message.

No tokenizer is known here, so nothing is truncated to num_ctx (the engine has its own context
limit and says so) and generate's final chunk carries no ``context``. The counts are the engine's
usage; the durations are measured here (time to the first piece, then to the end).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import TYPE_CHECKING, cast

from ollamalike import options as opts
from ollamalike.errors import InternalError
from ollamalike.inference.chunks import Chunk, FinalChunk, chat_chunk, final_chunk, gen_chunk
from ollamalike.inference.requests import ChatRequest, GenerateRequest
from ollamalike.inference.stream import ToolStream
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.library.models import ResolvedModel
from ollamalike.remote.client import RemoteRunner
from ollamalike.remote.messages import openai_messages
from ollamalike.scheduler import Lease, Scheduler

if TYPE_CHECKING:
    from ollamalike.template import ThinkingParser
    from ollamalike.template.values import ToolCall

Observe = Callable[[FinalChunk], None]
# Ollama's chunk objects, as the service yields them (inference/chunks.py builds them).
Chunks = AsyncGenerator[Chunk, None]


def _remote(lease: Lease) -> RemoteRunner:
    runner = lease.runner
    if not isinstance(runner, RemoteRunner):
        raise InternalError(f"model {lease.model.name!r} has an ENGINE but its runner is local")
    return runner


async def _pieces(stream: AsyncIterator[JSONObject], done: JSONObject
                  ) -> AsyncGenerator[tuple[str, str, list[ToolCall]], None]:
    """(thinking, content, tool calls) of the engine's stream; its final chunk is stored into ``done``."""
    async with contextlib.aclosing(stream) as chunks:  # type: ignore[type-var]
        async for chunk in chunks:
            if chunk.get("done"):
                done.update(chunk)
                return
            calls = chunk.get("tool_calls")
            thinking, content = chunk.get("thinking"), chunk.get("content")
            yield (thinking if isinstance(thinking, str) else "", content if isinstance(content, str) else "",
                   # RemoteRunner builds them in ToolCall's shape (remote/sse.py ToolCalls)
                   cast("list[ToolCall]", [c for c in calls if isinstance(c, dict)]) if isinstance(calls, list) else [])


def _think_split(prompt: str, think: bool | str | None) -> ThinkingParser | None:
    if not think:
        return None
    from ollamalike.template import ThinkingParser, prompt_opens_thinking

    return ThinkingParser(started=prompt_opens_thinking(prompt))


async def generate(scheduler: Scheduler, model: ResolvedModel, req: GenerateRequest, options: opts.Options,
                   started: int, observe: Observe) -> Chunks:
    rendered = req.raw or bool(model.template) or bool(req.template)
    prompt = req.prompt
    if rendered and not req.raw:
        from ollamalike.template import render_generate

        prompt = await asyncio.to_thread(
            render_generate, model, req.prompt, system=req.system, suffix=req.suffix,
            template_override=req.template, include_history=not req.context, think=req.think)
    lease = await scheduler.acquire(model, options, req.keep_alive)
    try:
        runner = _remote(lease)
        if rendered:
            stream = runner.completion(prompt, options, req.format)
        else:
            system = req.system if req.system is not None else model.system
            messages = openai_messages(system, model.messages, [{"role": "user", "content": req.prompt}])
            stream = runner.chat(messages, None, options, req.format)
        splitter = _think_split(prompt, req.think) if rendered else None
        done: JSONObject = {}
        async with contextlib.aclosing(_pieces(stream, done)) as pieces:
            async for thinking, content, _ in pieces:
                if splitter is not None and content:
                    more, content = splitter.feed(content)
                    thinking += more
                if thinking or content:
                    yield gen_chunk(req.model, content, thinking)
        if splitter is not None:
            thinking, content = splitter.flush()
            if thinking or content:
                yield gen_chunk(req.model, content, thinking)
        final = final_chunk(req.model, {"response": ""}, done, started, lease.load_duration_ns)
        observe(final)
        yield final
    finally:
        lease.release()


async def chat(scheduler: Scheduler, model: ResolvedModel, req: ChatRequest, options: opts.Options,
               started: int, observe: Observe) -> Chunks:
    prompt: str | None = None
    if model.template:
        from ollamalike.template import render_chat

        prompt = await asyncio.to_thread(render_chat, model, req.messages, tools=req.tools, think=req.think)
    lease = await scheduler.acquire(model, options, req.keep_alive)
    try:
        runner = _remote(lease)
        tool_stream: ToolStream | None = None
        splitter: ThinkingParser | None = None
        if prompt is not None:
            stream = runner.completion(prompt, options, req.format)
            tool_stream = ToolStream(model, req.tools) if req.tools else None
            splitter = _think_split(prompt, req.think)
        else:
            tools = cast("list[JSONValue]", list(req.tools)) if req.tools else None  # Tool dicts are JSON
            stream = runner.chat(openai_messages(model.system, model.messages, req.messages), tools, options,
                                 req.format)
        done: JSONObject = {}
        async with contextlib.aclosing(_pieces(stream, done)) as pieces:
            async for thinking, content, engine_calls in pieces:
                if splitter is not None and content:
                    more, content = splitter.feed(content)
                    thinking += more
                if tool_stream is not None and content:
                    content, engine_calls = tool_stream.feed(content)
                if thinking or content or engine_calls:
                    yield chat_chunk(req.model, content, thinking, tool_calls=engine_calls)
        thinking, content = splitter.flush() if splitter is not None else ("", "")
        calls: list[ToolCall] = []
        if tool_stream is not None:
            content, calls = tool_stream.feed(content) if content else ("", [])
            rest, more_calls = tool_stream.flush()
            content, calls = content + rest, calls + more_calls
        if thinking or content or calls:
            yield chat_chunk(req.model, content, thinking, tool_calls=calls)
        final = final_chunk(req.model, {"message": {"role": "assistant", "content": ""}}, done, started,
                            lease.load_duration_ns)
        observe(final)
        yield final
    finally:
        lease.release()


