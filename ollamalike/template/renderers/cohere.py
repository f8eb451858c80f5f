"""Cohere renderer ``cohere`` (Cohere's 2026 Command A / North template): turns between
``<|START_OF_TURN_TOKEN|>`` and ``<|END_OF_TURN_TOKEN|>`` with role tokens, text in
``<|START_TEXT|>…<|END_TEXT|>``, an ``# Available Tools`` JSON block in the first system turn
(written even without tools), reasoning in ``<|START_THINKING|>``, calls as a JSON list in
``<|START_ACTION|>`` and a run of tool results as one ``<|START_TOOL_RESULT|>`` list.

Call ids are renumbered 0, 1, … over the conversation, and a tool result names the number of the
call whose id it carries, as the model's template does. Reasoning is on unless the request turns
it off. The template's whitespace (its untrimmed Jinja blocks) is kept.
"""

from __future__ import annotations

from ollamalike.template.renderers.base import (
    Think,
    arguments,
    description_of,
    json_of,
    parameters,
    spaced,
    think_on,
    thinking_of,
)
from ollamalike.template.values import Message, Tool

TURN, END_TURN = "<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>"
SYSTEM, USER, CHATBOT = "<|SYSTEM_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>"
TEXT, END_TEXT = "<|START_TEXT|>", "<|END_TEXT|>"
THINKING, END_THINKING = "<|START_THINKING|>", "<|END_THINKING|>"


def _tools_section(tools: list[Tool]) -> str:
    out = ["# Available Tools\n```json\n[\n"]
    if not tools:
        out.append("\n\n")
    for i, t in enumerate(tools):
        entry = ('{"name": ' + json_of(t["function"]["name"]) + ', "description": ' + json_of(description_of(t))
                 + ', "parameters": ' + spaced(json_of(parameters(t))) + ', "responses": null}')
        out.append("\n    " + entry + ("," if i < len(tools) - 1 else "") + "\n\n")
    out.append("\n]\n```")
    return "".join(out)


def _result(call_id: str, content: str) -> str:
    return ('\n    {\n        "tool_call_id": "' + call_id + '",\n        "results": {\n\n            \n'
            '            "0": ' + spaced(json_of({"content": content})) + '\n\n        },\n        "is_error": null\n    }')


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def render_cohere(messages: list[Message], tools: list[Tool], think: Think) -> str:
    reasoning = think is None or think_on(think)
    rest = messages
    out = [TURN + SYSTEM + TEXT]
    if messages and messages[0]["role"].lower() == "system":
        rest = messages[1:]
        if messages[0]["content"]:
            out.append(messages[0]["content"] + "\n\n\n\n")
    out.append(_tools_section(tools) + END_TEXT + END_TURN)
    numbers: dict[str, str] = {}
    count = 0
    prefill = False
    i = 0
    while i < len(rest):
        m = rest[i]
        role = m["role"].lower()
        if role == "system":
            out.append(TURN + SYSTEM + TEXT + m["content"] + END_TEXT + END_TURN)
        elif role == "user":
            out.append(TURN + USER + TEXT + m["content"] + END_TEXT + END_TURN)
        elif role in ("assistant", "chatbot"):
            out.append(TURN + CHATBOT)
            thought = thinking_of(m)
            if m["tool_calls"]:
                out.append("\n            \n                " + (THINKING + thought + END_THINKING if thought else ""))
                entries = []
                for call in m["tool_calls"]:
                    number, count = str(count), count + 1
                    call_id = _text(call.get("id"))
                    if call_id:
                        numbers.setdefault(call_id, number)
                    entries.append('\n\n    {"tool_call_id": "' + number + '", "tool_name": "' + call["function"]["name"]
                                   + '", "parameters": ' + spaced(json_of(arguments(call))) + "}")
                out.append("<|START_ACTION|>[" + ",".join(entries) + "\n\n]<|END_ACTION|>" + END_TURN)
            else:
                out.append((THINKING + thought + END_THINKING if thought else "") + TEXT + m["content"])
                if i == len(rest) - 1:
                    prefill = True  # the answer continues this text
                else:
                    out.append(END_TEXT + END_TURN)
        elif role == "tool":
            results = []
            while True:
                ref = _text(rest[i].get("tool_call_id"))
                results.append(_result(numbers.get(ref, ref), rest[i]["content"]))
                if i + 1 < len(rest) and rest[i + 1]["role"].lower() == "tool":
                    i += 1
                    continue
                break
            out.append(TURN + SYSTEM + "<|START_TOOL_RESULT|>[" + ",".join(results) + "\n\n]<|END_TOOL_RESULT|>" + END_TURN)
        i += 1
    if not prefill:
        out.append(TURN + CHATBOT + THINKING + ("" if reasoning else END_THINKING))
    return "".join(out)
