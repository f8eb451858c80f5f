"""The registry of output parsers by name: Ollama's parser names, plus a few of ours.

``PARSER <name>`` in a Modelfile (or a pulled model's config) picks one; ``parsers.detect`` picks
one from the template when none is named. Each entry says whether the family yields tool calls and
thinking (what the model's capabilities gain from its parser).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ollamalike.template.parsers.base import Content, Event, OutputParser, ParserContext, ToolCall
from ollamalike.template.parsers.calls import (
    deepseek_call,
    gemma_call,
    glm_call,
    json_calls,
    pythonic_calls,
    xml_function,
)
from ollamalike.template.parsers.generic import GenericParser
from ollamalike.template.parsers.harmony import HarmonyParser
from ollamalike.template.parsers.tagged import CallFormat, Decoder, TaggedFormat, TaggedParser
from ollamalike.template.thinking import ThinkingParser
from ollamalike.template.toolformats import BARE, KNOWN_TAGS, Tag

Builder = Callable[[ParserContext], OutputParser]


@dataclass(frozen=True)
class Family:
    name: str
    build: Builder
    tools: bool
    thinking: bool
    ollama: bool = True  # a name Ollama's own registry has


class Passthrough:
    """Every piece is content (Ollama's ``passthrough``)."""

    def feed(self, text: str) -> list[Event]:
        return [Content(text)] if text else []

    def finish(self) -> list[Event]:
        return []


def _first(*decoders: Decoder) -> Decoder:
    def decode(body: str, ctx: ParserContext) -> list[ToolCall] | None:
        for d in decoders:
            calls = d(body, ctx)
            if calls:
                return calls
        return None
    return decode


THINK = ("<think>", "</think>")
HERMES = CallFormat("<tool_call>", "</tool_call>", json_calls, lenient_end=True)
QWEN_XML = CallFormat("<tool_call>", "</tool_call>", xml_function)
DEEPSEEK = CallFormat("<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", deepseek_call, lenient_end=True)
DEEPSEEK_WRAPPERS = ("<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>")
GLM = CallFormat("<tool_call>", "</tool_call>", glm_call)
LFM2 = CallFormat("<|tool_call_start|>", "<|tool_call_end|>", _first(json_calls, pythonic_calls), lenient_end=True)
COHERE_ACTION = CallFormat("<|START_ACTION|>", "<|END_ACTION|>", json_calls, lenient_end=True)
COHERE_WRAPPERS = ("<|START_RESPONSE|>", "<|END_RESPONSE|>", "<|START_TEXT|>", "<|END_TEXT|>",
                   "<|END_OF_TURN_TOKEN|>")
FUNCTION_GEMMA = CallFormat("<start_function_call>", "<end_function_call>", gemma_call)
GEMMA4 = CallFormat("<|tool_call>", "<tool_call|>", gemma_call)
TOOL_CODE = CallFormat("```tool_code", "```", pythonic_calls, lenient_end=True)
OLMO3 = CallFormat("<function_calls>", "</function_calls>", pythonic_calls, lenient_end=True)


def _tagged(fmt: TaggedFormat) -> Builder:
    return lambda ctx: TaggedParser(fmt, ctx)


def _generic(tags: tuple[Tag, ...], think: tuple[str, str] | None = None) -> Builder:
    def build(ctx: ParserContext) -> OutputParser:
        splitter = None
        if think is not None and ctx.think is not False:
            splitter = ThinkingParser(think[0], think[1], started=ctx.prompt_ends_with(think[0]))
        # As Ollama's template-driven tool parser, these formats are parsed only when tools are offered
        # (a JSON answer with a "name" key is no call then), and only as calls of the offered tools.
        if not ctx.tools:
            return GenericParser(splitter, None, None)
        return GenericParser(splitter, tags, ctx.tool_names())
    return build


def _family(name: str, fmt: TaggedFormat, ollama: bool = True) -> Family:
    return Family(name, _tagged(fmt), tools=bool(fmt.calls), thinking=fmt.think is not None, ollama=ollama)


_QWEN3 = TaggedFormat(calls=(HERMES,))
_QWEN3_THINKING = TaggedFormat(think=THINK, calls=(HERMES,), think_prefilled=True)
_QWEN35 = TaggedFormat(think=THINK, calls=(QWEN_XML,), think_prefilled=True)
_DEEPSEEK3 = TaggedFormat(think=THINK, calls=(DEEPSEEK,), call_wrappers=DEEPSEEK_WRAPPERS, think_prefilled=True)
_GLM46 = TaggedFormat(think=THINK, calls=(GLM,))
_GLM47 = TaggedFormat(think=THINK, calls=(GLM,), think_prefilled=True)
_LFM2 = TaggedFormat(calls=(LFM2,))
_LFM2_THINKING = TaggedFormat(think=THINK, calls=(LFM2,))
_COHERE = TaggedFormat(think=("<|START_THINKING|>", "<|END_THINKING|>"), calls=(COHERE_ACTION,),
                       wrappers=COHERE_WRAPPERS)
_GEMMA4 = TaggedFormat(think=("<|channel>", "<channel|>"), calls=(GEMMA4,))

FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("passthrough", lambda ctx: Passthrough(), tools=False, thinking=False),
    Family("harmony", HarmonyParser, tools=True, thinking=True),
    _family("qwen3", _QWEN3),
    _family("qwen3-thinking", _QWEN3_THINKING),
    _family("qwen3-coder", TaggedFormat(calls=(QWEN_XML,))),
    _family("qwen3.5", _QWEN35),
    _family("ornith", _QWEN35),
    _family("qwen3-vl-instruct", _QWEN3),
    _family("qwen3-vl-thinking", _QWEN3_THINKING),
    _family("nemotron-3-nano", _QWEN35),
    _family("nemotron-3.5-nano", _QWEN35),
    _family("deepseek3", _DEEPSEEK3),
    _family("cogito", _DEEPSEEK3),
    _family("glm-4.6", _GLM46, ollama=False),
    _family("glm-4.7", _GLM47),
    _family("lfm2", _LFM2),
    _family("lfm2-thinking", _LFM2_THINKING),
    _family("cohere", _COHERE),
    _family("functiongemma", TaggedFormat(calls=(FUNCTION_GEMMA,))),
    _family("gemma4", _GEMMA4),
    _family("gemma4-no-thinking", TaggedFormat(calls=(GEMMA4,))),
    _family("olmo3", TaggedFormat(calls=(OLMO3,))),
    _family("olmo3-think", TaggedFormat(think=THINK, calls=(OLMO3,), think_prefilled=True)),
    Family("ministral", _generic((Tag("[TOOL_CALLS]"),), ("[THINK]", "[/THINK]")), tools=True, thinking=True),
    # Ours: names for the JSON formats Ollama parses with its template-driven tool parser.
    _family("deepseek-r1", _DEEPSEEK3, ollama=False),
    _family("hermes", TaggedFormat(think=THINK, calls=(HERMES,)), ollama=False),
    _family("gemma3-tool-code", TaggedFormat(calls=(TOOL_CODE,)), ollama=False),
    Family("mistral", _generic((Tag("[TOOL_CALLS]"),)), tools=True, thinking=False, ollama=False),
    Family("llama3", _generic((Tag("<|python_tag|>"), BARE)), tools=True, thinking=False, ollama=False),
    Family("command-r", _generic((Tag("<|START_ACTION|>", "<|END_ACTION|>"),
                                  Tag("Action: ```json", "```", anywhere=False))),
           tools=True, thinking=False, ollama=False),
    Family("granite", _generic((Tag("<|tool_call|>"), *KNOWN_TAGS), THINK), tools=True, thinking=True,
           ollama=False),
)}
