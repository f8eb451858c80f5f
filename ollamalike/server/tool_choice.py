"""What a request's tool choice does to its tools, once each API's own ``tool_choice`` shape has
been read: offer them (auto), drop them (none), force a call of one of them (required: OpenAI's
"required", Anthropic's "any") or of the named one (a function or tool object).
"""

from __future__ import annotations

from typing import Literal

from ollamalike.errors import BadRequest
from ollamalike.template.values import Tool

Mode = Literal["auto", "none", "required", "named"]
# OpenAI's wording (chat completions and Responses); Anthropic passes its own.
REQUIRED_ERROR = "'tool_choice' is \"required\" but no 'tools' were given"
NAMED_ERROR = "'tool_choice' names function {name!r}, which is not among 'tools'"
# The string values of OpenAI's tool_choice (chat completions and Responses).
OPENAI_MODES: dict[str, Mode] = {"auto": "auto", "none": "none", "required": "required"}
# The "type" of Anthropic's tool_choice object.
ANTHROPIC_MODES: dict[str, Mode] = {"auto": "auto", "none": "none", "any": "required", "tool": "named"}


def apply_tool_choice(mode: Mode, tools: list[Tool] | None, name: object = None, *,
                      required_error: str = REQUIRED_ERROR, named_error: str = NAMED_ERROR
                      ) -> tuple[list[Tool] | None, bool]:
    """(tools to offer, whether a call is forced); a forced choice without a matching tool is a 400."""
    if mode == "auto":
        return tools, False
    if mode == "none":
        return None, False
    if mode == "required":
        if not tools:
            raise BadRequest(required_error, param="tool_choice")
        return tools, True
    chosen = [t for t in tools or [] if t["function"]["name"] == name]
    if not chosen:
        raise BadRequest(named_error.format(name=name), param="tool_choice")
    return chosen, True
