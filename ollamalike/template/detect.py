"""Named templates (ours, in ``named/``) and detecting which one a GGUF's Jinja chat template is.

Rendering never swaps a GGUF's Jinja template for a named one (``render`` renders the Jinja itself).
Detection serves what needs a Go template for a Jinja one: a Hugging Face pull stores the named
template as the TEMPLATE layer, as Hugging Face's Ollama endpoint serves one. It looks for the
distinctive markers of each format in the Jinja text; unknown formats return None.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class NamedTemplate:
    name: str
    template: str
    stop: tuple[str, ...]


@functools.cache
def named_template(name: str) -> NamedTemplate:
    base = resources.files("ollamalike.template") / "named"
    text = (base / f"{name}.gotmpl").read_text(encoding="utf-8")
    params = json.loads((base / f"{name}.json").read_text(encoding="utf-8"))
    return NamedTemplate(name, text, tuple(params.get("stop", [])))


def named_templates() -> list[str]:
    base = resources.files("ollamalike.template") / "named"
    return sorted(p.name[:-len(".gotmpl")] for p in base.iterdir() if p.name.endswith(".gotmpl"))


def _has(*markers: str) -> Callable[[str], bool]:
    return lambda t: all(m in t for m in markers)


def _any(*markers: str) -> Callable[[str], bool]:
    return lambda t: any(m in t for m in markers)


# Most specific first: several formats share markers (phi-3 and zephyr both use <|user|>).
_RULES: list[tuple[str, Callable[[str], bool]]] = [
    ("command-r", _has("<|START_OF_TURN_TOKEN|>")),
    ("llama3-instruct", _has("<|start_header_id|>")),
    ("gemma3-instruct", lambda t: "<start_of_turn>" in t and ("first_user_prefix" in t or "<start_of_image>" in t)),
    ("gemma-instruct", _has("<start_of_turn>")),
    ("chatml", _has("<|im_start|>")),
    ("llama2-chat", _has("[INST]", "<<SYS>>")),
    ("mistral-instruct", _has("[INST]")),
    ("phi-3", lambda t: "<|end|>" in t and ("<|user|>" in t or "<|assistant|>" in t)),
    ("zephyr", _has("<|user|>")),
    ("openchat", _has("GPT4 Correct")),
    ("codellama-70b-instruct", _has("Source:", "<step>")),
    ("magicoder", _has("@@ Instruction")),
    ("alpaca", _has("### Instruction:")),
    ("starcoder2-instruct", _has("### Instruction")),
    ("alfred", _has("<start_user>")),
    ("solar-instruct", _has("### User:", "### Assistant:")),
    ("granite-instruct", _has("Question:", "Answer:")),
    ("falcon-instruct", _has("Falcon:")),
    ("vicuna", _has("USER:", "ASSISTANT:")),
    ("chatqa", _has("User:", "Assistant:")),
]


def _normalize(text: str) -> str:
    # Escaped newlines ("\\n" inside Jinja string literals) and real ones look the same here.
    return text.replace("\\n", "\n")


def detect_name(jinja_text: str) -> str | None:
    text = _normalize(jinja_text)
    for name, rule in _RULES:
        if rule(text):
            return name
    return None


def detect_template(jinja_text: str) -> NamedTemplate | None:
    """The named template for a GGUF Jinja chat template, or None (render the Jinja instead).

    A Jinja template that does more than our named one would (reasoning blocks, or tools when
    ours has no tool support) is rendered as is rather than mapped to a poorer equivalent."""
    name = detect_name(jinja_text)
    if name is None:
        return None
    named = named_template(name)
    if any(m in jinja_text for m in ("enable_thinking", "<think>", "reasoning_content")):
        return None
    if "tools" in jinja_text and ".Tools" not in named.template:
        return None
    return named
