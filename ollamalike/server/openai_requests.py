"""Translation of OpenAI ``/v1`` request bodies into ``ollamalike.inference`` request objects.

Pure functions, no I/O: each ``parse_*`` checks an OpenAI-shaped body and returns the same
``ChatRequest`` / ``GenerateRequest`` / ``EmbedRequest`` the native API builds, plus the few
facts the response side needs (stream, include_usage, encoding). Anything the translation
cannot honour faithfully (n > 1, echo, logit_bias, token-array prompts) is a 400, never ignored.
``logprobs``/``top_logprobs`` (chat) and the legacy ``logprobs`` count (completions) become the
request's ``logprobs``/``top_logprobs``, computed by the runner like the native API's.

Request-level extensions Ollama lacks, passed by the openai client's ``extra_body``:
``options`` (any Ollama option), a top-level ``num_ctx``, and ``keep_alive``.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import cast

from ollamalike.errors import BadRequest
from ollamalike.inference.requests import (
    ChatMessage,
    ChatRequest,
    EmbedRequest,
    GenerateRequest,
    parse_keep_alive,
    parse_message,
)
from ollamalike.jsonfields import get_bool, get_int, invalid
from ollamalike.jsontypes import JSONObject, JSONValue
from ollamalike.server.openai_fields import (
    chat_logprobs,
    check_n,
    completion_logprobs,
    context_options,
    model_name,
    reasoning_think,
    sampling_options,
    wants_usage,
)
from ollamalike.server.tool_choice import OPENAI_MODES, apply_tool_choice
from ollamalike.template.values import Tool, ToolFunction

# OpenAI's newer "developer" role is its system prompt under another name.
_ROLE_ALIASES = {"developer": "system"}
_IMAGE_PREFIXES = ("data:image/jpeg;base64,", "data:image/jpg;base64,", "data:image/png;base64,",
                   "data:image/webp;base64,", "data:image/gif;base64,", "data:;base64,")


@dataclass
class ChatTranslation:
    request: ChatRequest
    include_usage: bool


@dataclass
class CompletionTranslation:
    request: GenerateRequest
    include_usage: bool


@dataclass
class EmbeddingTranslation:
    request: EmbedRequest
    encoding_format: str  # "float" or "base64"


# --- chat -----------------------------------------------------------------------------------


def _image(part: JSONObject, where: str) -> str:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise BadRequest(f"{where}.image_url must be a URL string or {{\"url\": ...}}")
    for prefix in _IMAGE_PREFIXES:
        if url.startswith(prefix):
            data = url[len(prefix):]
            try:
                base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                raise BadRequest(f"{where}: image data is not valid base64") from None
            return data
    if url.startswith(("http://", "https://")):
        raise BadRequest(f"{where}: image URLs are not fetched; send the image as a base64 data URL "
                         "(data:image/png;base64,...)")
    raise BadRequest(f"{where}: invalid image input: use a data:image/(png|jpeg|webp|gif);base64,... URL")


def _audio(part: JSONObject, where: str) -> str:
    spec = part.get("input_audio")
    data = spec.get("data") if isinstance(spec, dict) else None
    fmt = spec.get("format") if isinstance(spec, dict) else None
    if not isinstance(data, str) or not data:
        raise BadRequest(f"{where}.input_audio must be {{\"data\": base64, \"format\": \"wav\"}}")
    if fmt != "wav":
        raise BadRequest(f"{where}.input_audio.format {fmt!r} is not supported: send \"wav\"")
    return data


def _content(content: object, where: str) -> tuple[str, list[str]]:
    """Text and base64 images from a string or an array of content parts."""
    if content is None:
        return "", []
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise invalid(f"{where}.content", "a string or an array of content parts", content)
    texts: list[str] = []
    images: list[str] = []
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        if not isinstance(part, dict):
            raise invalid(here, "a content part object", part)
        kind = part.get("type")
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise invalid(f"{here}.text", "a string", text)
            texts.append(text)
        elif kind == "image_url":
            images.append(_image(part, here))
        elif kind == "input_audio":
            images.append(_audio(part, here))  # audio travels with the images, as in Ollama's API
        else:
            raise BadRequest(f"{here}: content part type {kind!r} is not supported "
                             "(use \"text\", \"image_url\" or \"input_audio\")")
    return "\n".join(texts), images


def _tool_name_for(messages: list[JSONValue], call_id: str) -> str | None:
    # The last assistant call with this id wins, as ids may repeat across turns.
    for msg in reversed(messages):
        calls = msg.get("tool_calls") if isinstance(msg, dict) else None
        for call in calls if isinstance(calls, list) else []:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(call, dict) and call.get("id") == call_id and isinstance(fn, dict):
                name = fn.get("name")
                return name if isinstance(name, str) else None
    return None


def _message(msg: object, i: int, messages: list[JSONValue]) -> ChatMessage:
    """An OpenAI message in the native shape, checked by ``parse_message`` as the native API's are."""
    where = f"messages[{i}]"
    if not isinstance(msg, dict):
        raise invalid(where, "a message object", msg)
    role = msg.get("role")
    if isinstance(role, str):
        role = _ROLE_ALIASES.get(role, role)
    if role == "function":
        raise BadRequest(f"{where}: the deprecated 'function' role is not supported; use 'tool'")
    content = msg.get("content")
    if content is None and not msg.get("tool_calls") and role != "assistant":
        raise BadRequest(f"{where}.content is required", param=f"{where}.content")
    text, images = _content(content, where)
    out: JSONObject = {"role": role, "content": text}
    if images:
        out["images"] = [*images]
    if msg.get("tool_calls") is not None:
        out["tool_calls"] = msg["tool_calls"]
    reasoning = msg.get("reasoning", msg.get("reasoning_content"))
    if isinstance(reasoning, str) and reasoning:
        out["thinking"] = reasoning
    if role == "tool":
        call_id = msg.get("tool_call_id")
        if call_id is not None and not isinstance(call_id, str):
            raise invalid(f"{where}.tool_call_id", "a string", call_id)
        name = msg.get("name")
        if name is not None and not isinstance(name, str):
            raise invalid(f"{where}.name", "a string", name)
        if not name and call_id:
            name = _tool_name_for(messages[:i], call_id)
        if name:
            out["tool_name"] = name
        if call_id:
            out["tool_call_id"] = call_id
    return parse_message(out, i)


def _tools(value: object) -> list[Tool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid("tools", "an array of tool objects", value)
    tools: list[Tool] = []
    for i, tool in enumerate(value):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(fn, dict):
            raise BadRequest(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}")
        name = fn.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"tools[{i}].function.name is required", param=f"tools[{i}].function.name")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise invalid(f"tools[{i}].function.parameters", "a JSON schema object", params)
        # The client's function object, its name and parameters checked above.
        tools.append({"type": "function", "function": cast(ToolFunction, fn)})
    return tools or None


def _tool_call_schema(tool: Tool) -> JSONObject:
    fn = tool["function"]
    params: JSONObject = fn.get("parameters") or {"type": "object"}
    return {
        "type": "object",
        "properties": {"name": {"type": "string", "enum": [fn["name"]]}, "arguments": params},
        "required": ["name", "arguments"],
    }


def forced_tool_format(tools: list[Tool]) -> JSONObject:
    """A JSON schema whose every valid instance is a call ``{"name", "arguments"}`` of one of ``tools``.

    Sampling under this schema is how tool_choice "required" or a named function is enforced:
    the model cannot answer with anything but a call, which the chat template's parser reads back.
    """
    if len(tools) == 1:
        return _tool_call_schema(tools[0])
    return {"anyOf": [_tool_call_schema(t) for t in tools]}


def _tool_choice(value: object, tools: list[Tool] | None) -> tuple[list[Tool] | None, bool]:
    """(tools to offer, whether a call is forced)."""
    if value is None:
        return apply_tool_choice("auto", tools)
    if isinstance(value, str) and value in OPENAI_MODES:
        return apply_tool_choice(OPENAI_MODES[value], tools)
    if isinstance(value, dict):
        fn = value.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if value.get("type", "function") != "function" or not isinstance(name, str) or not name:
            raise BadRequest("'tool_choice' object must be {\"type\": \"function\", \"function\": {\"name\": ...}}")
        return apply_tool_choice("named", tools, name)
    raise BadRequest("invalid value for 'tool_choice': use \"none\", \"auto\", \"required\" or a function object", param="tool_choice")


def _response_format(value: object) -> str | JSONObject | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid("response_format", "an object", value)
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise BadRequest("'response_format' of type json_schema needs 'json_schema': {\"name\": ..., \"schema\": {...}}")
        return schema
    raise BadRequest(f"invalid 'response_format' type {kind!r}: use \"text\", \"json_object\" or \"json_schema\"", param="response_format")


def _think(body: JSONObject) -> bool | str | None:
    reasoning = body.get("reasoning")
    effort = reasoning.get("effort") if isinstance(reasoning, dict) else body.get("reasoning_effort")
    param = "reasoning.effort" if isinstance(reasoning, dict) else "reasoning_effort"
    return reasoning_think(effort, param)


def parse_chat_completion(body: JSONObject) -> ChatTranslation:
    model = model_name(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' must be a non-empty array of message objects", param="messages")
    check_n(body)
    logprobs, top_logprobs = chat_logprobs(body)
    for legacy in ("functions", "function_call"):
        if body.get(legacy) is not None:
            raise BadRequest(f"'{legacy}' (deprecated by OpenAI) is not supported: use 'tools' and 'tool_choice'")
    stream = get_bool(body, "stream", False)
    usage = wants_usage(body, stream)
    tools = _tools(body.get("tools"))
    tools, forced = _tool_choice(body.get("tool_choice"), tools)
    fmt = _response_format(body.get("response_format"))
    if forced and tools:
        if fmt is not None:
            raise BadRequest("'response_format' cannot be combined with a forced 'tool_choice'")
        fmt = forced_tool_format(tools)
    request = ChatRequest(
        model=model,
        messages=[_message(m, i, messages) for i, m in enumerate(messages)],
        tools=tools,
        format=fmt,
        options=sampling_options(body),
        stream=stream,
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        think=_think(body),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
    return ChatTranslation(request=request, include_usage=usage)


# --- completions ----------------------------------------------------------------------------


def _prompt(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    if isinstance(value, list) and value and all(isinstance(p, str) for p in value):
        raise BadRequest("'prompt' with several prompts is not supported: send one prompt per request")
    if isinstance(value, list):
        raise BadRequest("'prompt' as token ids is not supported: send the prompt as a string")
    raise invalid("prompt", "a string", value)


def parse_completion(body: JSONObject) -> CompletionTranslation:
    model = model_name(body)
    check_n(body)
    best_of = get_int(body, "best_of", minimum=1)
    if best_of is not None and best_of > 1:
        raise BadRequest("'best_of' > 1 is not supported", param="best_of")
    if get_bool(body, "echo", False):
        raise BadRequest("'echo' is not supported", param="echo")
    logprobs, top_logprobs = completion_logprobs(body)
    stream = get_bool(body, "stream", False)
    usage = wants_usage(body, stream)
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise invalid("suffix", "a string", suffix)
    request = GenerateRequest(
        model=model,
        prompt=_prompt(body.get("prompt")),
        suffix=suffix or None,
        options=sampling_options(body),
        stream=stream,
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        logprobs=logprobs,
        top_logprobs=top_logprobs,
    )
    return CompletionTranslation(request=request, include_usage=usage)


# --- embeddings -----------------------------------------------------------------------------


def parse_embedding(body: JSONObject) -> EmbeddingTranslation:
    model = model_name(body)
    raw = body.get("input")
    if isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        inputs = [x for x in raw if isinstance(x, str)]  # all are
    elif isinstance(raw, list) and raw and all(isinstance(x, (int, list)) and not isinstance(x, bool) for x in raw):
        raise BadRequest("'input' as token ids is not supported: send strings")
    elif raw is None or raw == []:
        raise BadRequest("'input' is required: a string or a non-empty array of strings")
    else:
        raise invalid("input", "a string or an array of strings", raw)
    if any(not text for text in inputs):
        raise BadRequest("'input' must not contain empty strings")
    encoding = body.get("encoding_format")
    if encoding is None:
        encoding = "float"
    if encoding not in ("float", "base64"):
        raise BadRequest(f"invalid 'encoding_format' {encoding!r}: use \"float\" or \"base64\"")
    request = EmbedRequest(
        model=model,
        input=inputs,
        truncate=get_bool(body, "truncate", True),
        options=context_options(body),
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        dimensions=get_int(body, "dimensions", minimum=1),
    )
    return EmbeddingTranslation(request=request, encoding_format=encoding)
