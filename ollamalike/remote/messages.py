"""Ollama chat messages as OpenAI's, for an engine's ``/v1/chat/completions``.

The model's own context comes first, as a local model's template would put it: its SYSTEM (unless
the request starts with a system message) and its MESSAGE history. Then the request's messages:
assistant ``tool_calls`` get OpenAI's ``type``/``id`` and JSON-text arguments, a ``tool`` result
names the call it answers (its ``tool_call_id``, else the earlier call of the same tool name, else
the earlier calls in order), and ``images`` become ``image_url`` parts with data URLs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from ollamalike.jsontypes import JSONObject, JSONValue


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _image_url(data: str) -> str:
    if data.startswith("data:"):
        return data
    # Ollama's images are base64 without a media type; JPEG and PNG both decode under image/png
    # in the engines we target (they sniff the bytes).
    return "data:image/png;base64," + data


def openai_messages(system: str | None, history: Sequence[Mapping[str, object]],
                    messages: Sequence[Mapping[str, object]]) -> list[JSONValue]:
    """The whole conversation the engine is sent."""
    out: list[JSONValue] = []
    if system and not (messages and messages[0].get("role") == "system"):
        out.append({"role": "system", "content": system})
    pending: list[tuple[str, str]] = []  # (call id, tool name) of calls not yet answered
    counter = 0
    for m in [*history, *messages]:
        role = _text(m.get("role"))
        msg: JSONObject = {"role": role, "content": _text(m.get("content"))}
        images = m.get("images")
        if isinstance(images, list) and images:
            parts: list[JSONValue] = [{"type": "text", "text": _text(m.get("content"))}]
            parts += [{"type": "image_url", "image_url": {"url": _image_url(img)}} for img in images
                      if isinstance(img, str)]
            msg["content"] = parts
        calls = m.get("tool_calls")
        if role == "assistant" and isinstance(calls, list) and calls:
            wire: list[JSONValue] = []
            for call in calls:
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    continue
                call_id = _text(call.get("id") if isinstance(call, dict) else None)
                if not call_id:
                    counter += 1
                    call_id = f"call_{counter}"
                name = _text(fn.get("name"))
                args = fn.get("arguments")
                wire.append({"id": call_id, "type": "function",
                             "function": {"name": name, "arguments": args if isinstance(args, str) else
                                          json.dumps(args if args is not None else {})}})
                pending.append((call_id, name))
            msg["tool_calls"] = wire
        if role == "tool":
            call_id = _text(m.get("tool_call_id"))
            name = _text(m.get("tool_name")) or _text(m.get("name"))
            if not call_id and pending:
                match = next((p for p in pending if name and p[1] == name), pending[0])
                call_id = match[0]
            pending = [p for p in pending if p[0] != call_id]
            if call_id:
                msg["tool_call_id"] = call_id
            if name:
                msg["name"] = name
        out.append(msg)
    return out
