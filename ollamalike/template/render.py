"""Turning a request into prompt text: the model's built-in renderer when it names one we have
(``RENDERER``, ``template/renderers/``), else the Modelfile's Go TEMPLATE when there is one, else the GGUF's
own Jinja chat template rendered as Hugging Face transformers' ``apply_chat_template`` renders it (its
default system prompt, tools JSON and turn structure intact), else Ollama's ``{{ .Prompt }}``.

``model`` is a ``ModelLike``: ``template``, ``system``, the MESSAGE history and ``info`` (the GGUF's
``chat_template``, ``bos_token``, ``eos_token``). The library's ResolvedModel is one; test fakes are
small dataclasses.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Protocol

from ollamalike.errors import BadRequest
from ollamalike.template.detect import NamedTemplate, named_template, named_templates
from ollamalike.template.goexec import GoTemplate, parse_go_template
from ollamalike.template.goparse import Action, FieldNode, Pipe, Tree
from ollamalike.template.goparse import Command as GoCommand
from ollamalike.template.govalues import GoValue
from ollamalike.template.jinja import render_jinja
from ollamalike.template.renderers import renderer_for
from ollamalike.template.values import (
    Message,
    Tool,
    collate,
    message_struct,
    normalize_messages,
    tools_value,
    validate_tools,
)

DEFAULT_TEMPLATE = "{{ .Prompt }}"
THINK_LEVELS = ("high", "medium", "low", "max")  # Ollama's ThinkValue strings (api/types.go)


class TemplateInfo(Protocol):
    """What rendering reads from a model's GGUF metadata (``GGUFInfo`` is one)."""

    @property
    def chat_template(self) -> str | None: ...

    @property
    def bos_token(self) -> str | None: ...

    @property
    def eos_token(self) -> str | None: ...


class ModelLike(Protocol):
    """What rendering needs from a model (read-only, so a dataclass with these fields is one)."""

    @property
    def template(self) -> str | None: ...

    @property
    def system(self) -> str | None: ...

    @property
    def messages(self) -> Sequence[Mapping[str, object]]: ...

    @property
    def info(self) -> TemplateInfo: ...

    @property
    def renderer(self) -> str | None:
        """A built-in renderer's name (``RENDERER``), or None."""
        ...


def check_template(text: str) -> None:
    """Raise ``BadRequest("template: line N: …")`` when a TEMPLATE does not parse."""
    _compile(text)


@functools.lru_cache(maxsize=64)
def _compile(text: str) -> tuple[GoTemplate, frozenset[str]]:
    tmpl = parse_go_template(text)
    idents = frozenset(tmpl.identifiers())
    if "messages" not in idents and "response" not in idents:
        # Ollama appends {{ .Response }} to templates that mention neither, so history renders.
        root = [*tmpl.tree.root, Action(Pipe(0, cmds=[GoCommand([FieldNode(["Response"])], 0)]))]
        tmpl = GoTemplate(text, Tree(root, tmpl.tree.defines))
    return tmpl, idents


def _chat_template_text(model: ModelLike) -> str | None:
    text = model.info.chat_template
    return text if isinstance(text, str) and text.strip() else None


def named_for(model: ModelLike) -> NamedTemplate | None:
    """The named template a model's TEMPLATE is, text for text (what a pull or a Modelfile naming one
    stores), or None. A GGUF's Jinja template is never swapped for a named one: it renders as is."""
    text = model.template
    return _named_by_text().get(text) if text else None


def stop_for(model: ModelLike) -> list[str]:
    """Default stop sequences: those of the named template the TEMPLATE is, else none. When the GGUF's
    Jinja template renders, the runner already ends on the vocabulary's end-of-generation tokens
    (``<|im_end|>``, ``<end_of_turn>``, ``<|eot_id|>`` …). A Modelfile's stop params win."""
    named = named_for(model)
    return list(named.stop) if named else []


@functools.lru_cache(maxsize=1)
def _named_by_text() -> dict[str, NamedTemplate]:
    return {nt.template: nt for nt in (named_template(n) for n in named_templates())}


def go_template_for(model: ModelLike) -> str | None:
    """The Go template text used for a model: its TEMPLATE, else None when the GGUF carries a Jinja
    chat template (rendered with Hugging Face semantics), else Ollama's default ``{{ .Prompt }}``."""
    if model.template:
        return model.template
    if _chat_template_text(model):
        return None
    return DEFAULT_TEMPLATE


def _history(model: ModelLike) -> list[Message]:
    """The model's MESSAGE history, checked like a request's messages (it comes from a model file)."""
    return normalize_messages(list(model.messages))


def _with_model_context(model: ModelLike, messages: list[Message]) -> list[Message]:
    msgs = _history(model) + messages
    system = model.system or ""
    if system and (not messages or messages[0]["role"] != "system"):
        msgs = [{"role": "system", "content": system, "tool_calls": []}, *msgs]
    return msgs


def _think_values(think: bool | str | None) -> dict[str, GoValue]:
    if think is None:
        return {"Think": False, "ThinkLevel": "", "IsThinkSet": False}
    if isinstance(think, bool):
        return {"Think": think, "ThinkLevel": "", "IsThinkSet": True}
    if isinstance(think, str) and think in THINK_LEVELS:
        return {"Think": True, "ThinkLevel": think, "IsThinkSet": True}
    raise BadRequest(f"invalid think value: {think!r} (use true, false, \"high\", \"medium\", \"low\" or \"max\")")


def _jinja(model: ModelLike, msgs: list[Message], tools: list[Tool], think: bool | str | None) -> str:
    # The Jinja renderer takes plain dicts (the tools are the client's own, shallow-copied).
    return render_jinja(str(_chat_template_text(model)), [dict(m) for m in msgs], [dict(t) for t in tools], think,
                        bos_token=model.info.bos_token or "", eos_token=model.info.eos_token or "")


def render_chat(model: ModelLike, messages: object, tools: object = None, think: bool | str | None = None) -> str:
    """The prompt for /api/chat: MESSAGE history and SYSTEM from the model, then the request's messages.
    ``messages`` and ``tools`` are checked here (``BadRequest`` on a wrong shape)."""
    msgs = _with_model_context(model, normalize_messages(messages))
    tool_list = validate_tools(tools)
    think_values = _think_values(think)
    renderer = renderer_for(model.renderer)
    if renderer is not None:
        return renderer(msgs, tool_list, think)
    text = go_template_for(model)
    if text is None:
        return _jinja(model, msgs, tool_list, think)
    return execute(text, msgs, tool_list, think_values)


def render_generate(model: ModelLike, prompt: str, system: str | None = None, suffix: str | None = None,
                    template_override: str | None = None, include_history: bool = True,
                    think: bool | str | None = None) -> str:
    """The prompt for /api/generate (not ``raw``): system, MESSAGE history (unless continuing a
    ``context``), then the prompt as a user message; with a suffix, .Prompt/.Suffix only."""
    if not isinstance(prompt, str):
        raise BadRequest("prompt must be a string")
    think_values = _think_values(think)
    text = template_override or go_template_for(model)
    if suffix:
        if text is None or "suffix" not in _compile(text)[1]:
            raise BadRequest("this model does not support insert (its template has no .Suffix)")
        tmpl, _ = _compile(text)
        return _run(tmpl, {"Prompt": prompt, "Suffix": suffix, "Response": "", **think_values})
    msgs: list[Message] = []
    sys_text = system or model.system or ""
    if sys_text:
        msgs.append({"role": "system", "content": sys_text, "tool_calls": []})
    if include_history:
        msgs += _history(model)
    msgs.append({"role": "user", "content": prompt, "tool_calls": []})
    renderer = None if template_override else renderer_for(model.renderer)
    if renderer is not None:
        return renderer(msgs, [], think)
    if text is None:
        return _jinja(model, msgs, [], think)
    return execute(text, msgs, [], think_values)


def _run(tmpl: GoTemplate, data: dict[str, GoValue]) -> str:
    try:
        return tmpl.execute(data)
    except RecursionError:
        raise BadRequest("template: nesting too deep") from None


def execute(text: str, messages: list[Message], tools: list[Tool], think_values: dict[str, GoValue]) -> str:
    """Ollama's Template.Execute over already-prepared messages."""
    tmpl, idents = _compile(text)
    system, collated = collate(messages)
    if "messages" in idents:
        return _run(tmpl, {
            "System": system, "Messages": [message_struct(m) for m in collated],
            "Tools": tools_value(tools), "Response": "", **think_values,
        })
    # Legacy .System/.Prompt/.Response templates: one execution per exchange.
    out: list[str] = []
    sys_text, prompt, response = "", "", ""

    def flush() -> None:
        nonlocal sys_text, prompt, response
        out.append(_run(tmpl, {"System": sys_text, "Prompt": prompt, "Response": response, **think_values}))
        sys_text, prompt, response = "", "", ""

    for m in collated:
        if m["role"] == "system":
            if prompt or response:
                flush()
            sys_text = m["content"]
        elif m["role"] == "user":
            if response:
                flush()
            prompt = m["content"]
        elif m["role"] == "assistant":
            response = m["content"]
    # The last exchange stops right after .Response, so a trailing assistant message is a prefill.
    out.append(_run(tmpl.cut_after_response(),
                    {"System": sys_text, "Prompt": prompt, "Response": response, **think_values}))
    return "".join(out)
