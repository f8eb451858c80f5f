"""Output parsers for model families: a model's streamed text -> content, thinking and tool calls.

One Protocol (``OutputParser``: ``feed(text) -> events``, ``finish() -> events``) and one registry
by name (``families.FAMILIES``: Ollama's parser names and a few of ours). ``select`` picks the
parser for one request:

1. the model's named parser (Modelfile ``PARSER``, a pulled model's config), when it is known;
2. else one detected from the template: harmony as Ollama detects it (a gpt-oss model whose template
   writes ``<|start|>`` and ``<|end|>``), and, when the GGUF's own Jinja template renders the prompt,
   the family whose call format that template teaches (markers no other family writes);
3. else the generic parser, as chats always had it: ``<think>`` splitting when thinking is on, and
   JSON tool calls (the template's tag and the well-known ones) of the offered tools when tools are.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ollamalike.template.parsers.base import (
    Content,
    Event,
    OutputParser,
    ParserContext,
    Think,
    Thinking,
    ToolCall,
    coalesce,
    merge,
)
from ollamalike.template.parsers.families import FAMILIES, Family
from ollamalike.template.parsers.generic import GenericParser
from ollamalike.template.render import ModelLike, TemplateInfo

__all__ = [
    "FAMILIES", "Content", "Event", "Family", "OutputParser", "ParserContext", "Think", "Thinking", "ToolCall",
    "coalesce", "detect", "family", "merge", "parser_names", "select", "template_think",
]

log = logging.getLogger("ollamalike.template")

_HARMONY_FAMILIES = ("gptoss", "gpt-oss")
# Call markers that only one family's Jinja template writes, most specific first.
_JINJA_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("harmony", ("<|start|>", "<|channel|>", "<|message|>")),
    ("deepseek3", ("<｜tool▁call▁begin｜>", "<｜tool▁sep｜>")),
    ("glm-4.7", ("<arg_key>", "<arg_value>")),
    ("qwen3.5", ("<function=", "<parameter=", "<think>")),
    ("qwen3-coder", ("<function=", "<parameter=")),
    ("functiongemma", ("<start_function_call>",)),
    ("cohere", ("<|START_ACTION|>", "<|START_THINKING|>")),
)


class ModelInfo(TemplateInfo, Protocol):
    @property
    def architecture(self) -> str: ...


class ParsedModel(ModelLike, Protocol):
    """What choosing a parser reads of a model (``ResolvedModel`` is one): what rendering reads
    (the generic parser finds the template's own call tag), the parser name and the architecture."""

    @property
    def parser(self) -> str | None: ...

    @property
    def info(self) -> ModelInfo: ...


def parser_names() -> list[str]:
    return sorted(FAMILIES)


def family(name: str | None) -> Family | None:
    return FAMILIES.get(name) if name else None


def detect(model: ParsedModel) -> str | None:
    """The parser the model's template implies when none is named, or None (the generic parser)."""
    text = model.template or model.info.chat_template or ""
    if model.info.architecture.lower() in _HARMONY_FAMILIES and "<|start|>" in text and "<|end|>" in text:
        return "harmony"
    if model.template:
        return None  # a Go template: Ollama's template-driven tool parsing (the generic parser)
    for name, markers in _JINJA_MARKERS:
        if all(m in text for m in markers):
            return name
    return None


def select(model: ParsedModel, tools: object, think: Think, prompt: str) -> OutputParser | None:
    """The parser for one chat or generate output, or None when the text goes out as it is.

    ``tools`` is the request's tools (None or empty for none, and always for generate)."""
    from ollamalike.template.thinking import ThinkingParser, prompt_opens_thinking
    from ollamalike.template.toolformats import tags_for, tool_names

    ctx = ParserContext.create(tools, think, prompt)
    name = model.parser or detect(model)
    chosen = family(name)
    if chosen is not None:
        return chosen.build(ctx)
    if name:
        log.warning("unknown parser %r: the generic tool-call and thinking parsing is used", name)
    splitter = ThinkingParser(started=prompt_opens_thinking(prompt)) if think else None
    if splitter is None and not tools:
        return None
    tags = tags_for(model) if tools else None
    return GenericParser(splitter, tags, tool_names(tools) if tools else None)


def template_think(model: ParsedModel, think: Think) -> Think:
    """The think value the template is given: harmony knows only low/medium/high, so ``"max"`` is
    ``"high"`` for a harmony model (as Ollama maps it); every other value as requested."""
    if think == "max" and (model.parser or detect(model)) == "harmony":
        return "high"
    return think
