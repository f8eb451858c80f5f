"""Prompt templates: Ollama's Go text/template subset, well-known named templates, the GGUF's
sandboxed Jinja chat template, tool-call and thinking parsing of model output."""

from __future__ import annotations

from ollamalike.template.detect import NamedTemplate, detect_template, named_template, named_templates
from ollamalike.template.render import (
    ModelLike,
    TemplateInfo,
    check_template,
    go_template_for,
    named_for,
    render_chat,
    render_generate,
    stop_for,
)
from ollamalike.template.thinking import ThinkingParser, prompt_opens_thinking, split_thinking
from ollamalike.template.tools import parse_tool_calls

__all__ = [
    "ModelLike", "NamedTemplate", "TemplateInfo", "ThinkingParser", "check_template", "detect_template",
    "go_template_for", "named_for", "named_template", "named_templates", "parse_tool_calls", "prompt_opens_thinking",
    "render_chat", "render_generate", "split_thinking", "stop_for",
]
