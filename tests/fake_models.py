"""A model for template tests: a small dataclass that implements ``ollamalike.template.ModelLike``
(the fields of a ResolvedModel that rendering reads), instead of a whole resolved model."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FakeInfo:
    """The GGUF metadata rendering reads (``TemplateInfo``): a GGUFInfo's Jinja template and tokens."""

    chat_template: str | None = None
    bos_token: str | None = None
    eos_token: str | None = None


@dataclass
class FakeModel:
    """A model's TEMPLATE, SYSTEM and MESSAGE history, and its GGUF's metadata."""

    template: str | None = None
    system: str | None = None
    messages: list[dict[str, object]] = field(default_factory=list)
    info: FakeInfo = field(default_factory=FakeInfo)
    renderer: str | None = None

