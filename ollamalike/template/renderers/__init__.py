"""Built-in prompt renderers by name: what ``RENDERER <name>`` (or a pulled model's config) selects.

A renderer is code, not a template: it turns the conversation (the model's SYSTEM and MESSAGE
history already in it), the request's tools and its think value into the prompt text, in one
model family's exact format (``base.Renderer``). ``RENDERERS`` has Ollama's renderer names that
we implement; ``OLLAMA_ONLY`` the names Ollama ships that we do not (a model naming one renders
with its template instead, with a warning in the log). ``check_renderer`` is create's check:
a name in neither is a 400.
"""

from __future__ import annotations

import logging

from ollamalike.errors import BadRequest
from ollamalike.template.renderers.base import Renderer, Think
from ollamalike.template.renderers.cohere import render_cohere
from ollamalike.template.renderers.deepseek import render_cogito, render_deepseek31
from ollamalike.template.renderers.glm import render_glm47, render_glm_ocr
from ollamalike.template.renderers.lfm2 import render_lfm2, render_lfm2_thinking
from ollamalike.template.renderers.olmo import (
    render_olmo3,
    render_olmo3_32b_think,
    render_olmo3_think,
    render_olmo31,
)
from ollamalike.template.renderers.qwen import (
    render_qwen3_coder,
    render_qwen3_vl_instruct,
    render_qwen3_vl_thinking,
)
from ollamalike.template.renderers.qwen35 import render_ornith, render_qwen35, render_qwen38
from ollamalike.template.values import Message, Tool

__all__ = ["OLLAMA_ONLY", "RENDERERS", "Renderer", "Think", "check_renderer", "renderer_for", "renderer_names"]

log = logging.getLogger("ollamalike.template")

RENDERERS: dict[str, Renderer] = {
    "qwen3-coder": render_qwen3_coder,
    "qwen3-vl-instruct": render_qwen3_vl_instruct,
    "qwen3-vl-thinking": render_qwen3_vl_thinking,
    "qwen3.5": render_qwen35,
    "qwen3.8": render_qwen38,
    "ornith": render_ornith,
    "cogito": render_cogito,
    "deepseek3.1": render_deepseek31,
    "olmo3": render_olmo3,
    "olmo3.1": render_olmo31,
    "olmo3-think": render_olmo3_think,
    "olmo3-32b-think": render_olmo3_32b_think,
    "glm-4.7": render_glm47,
    "glm-ocr": render_glm_ocr,
    "lfm2": render_lfm2,
    "lfm2-thinking": render_lfm2_thinking,
    "cohere": render_cohere,
}

# Renderers Ollama's registry has and we do not (yet): accepted at create so that an Ollama
# model's Modelfile rebuilds, but the model's own template renders its prompts.
OLLAMA_ONLY: frozenset[str] = frozenset({
    "nemotron-3-nano", "nemotron-3.5-nano", "gemma4", "gemma4-small",
    "gemma4-large", "functiongemma", "laguna", "poolside-v1", "glimmer",
})

_warned: set[str] = set()


def renderer_names() -> list[str]:
    return sorted(RENDERERS)


def check_renderer(name: str) -> None:
    """Create's check of a RENDERER name: ours or Ollama's, else a 400 naming the known ones."""
    if name not in RENDERERS and name not in OLLAMA_ONLY:
        raise BadRequest(f'unknown renderer "{name}": known renderers are {", ".join(renderer_names())}')


def renderer_for(name: str | None) -> Renderer | None:
    """The renderer a model names, or None: none named, or one we lack (then its template renders)."""
    if not name:
        return None
    found = RENDERERS.get(name)
    if found is None and name not in _warned:
        _warned.add(name)
        log.warning("renderer %r is not built in here: the model's template renders its prompts", name)
    return found


def render(name: str, messages: list[Message], tools: list[Tool], think: Think) -> str:
    """Render with a built-in renderer by name (``KeyError`` when there is none)."""
    return RENDERERS[name](messages, tools, think)
