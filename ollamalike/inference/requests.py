"""The inference request dataclasses and their parsing from JSON bodies.

Both the native routes and the OpenAI translation build these objects; every type check of a
request body's fields happens here, so bad input becomes one clear ``BadRequest`` before any model
loads. The body itself arrives as a ``JSONObject``: the HTTP edge (``server.http.read_json``) has
already checked that it is one. Each request parses its model name once, into ``name``
(``ModelName``), which is what the store is asked for; ``model`` stays the name as the client
spelled it (responses echo it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypedDict, cast

from ollamalike.config import parse_duration
from ollamalike.errors import BadRequest
from ollamalike.jsonfields import get_bool, get_int, get_str, invalid, model_field
from ollamalike.jsontypes import JSONObject
from ollamalike.names import ModelName
from ollamalike.options import Options

if TYPE_CHECKING:
    from ollamalike.template.values import Tool, ToolCall

ROLES = ("system", "user", "assistant", "tool")
THINK_LEVELS = ("high", "medium", "low", "max")
MAX_TOP_LOGPROBS = 20  # as Ollama (and OpenAI)

class _ChatMessageHead(TypedDict):
    role: str  # one of ROLES
    content: str


class ChatMessage(_ChatMessageHead, total=False):
    """A chat message as ``parse_message`` checked it: role and content, then what was given of
    images (base64), tool calls (arguments decoded to an object), thinking and a tool result's
    ``tool_name`` / ``tool_call_id``."""

    images: list[str]
    tool_calls: list[ToolCall]
    thinking: str
    tool_name: str
    tool_call_id: str


@dataclass
class _Named:
    """The model name, parsed once when the request is built (``BadRequest`` for a malformed name)."""

    model: str
    name: ModelName = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.name = ModelName.parse(self.model)


@dataclass
class GenerateRequest(_Named):
    prompt: str = ""
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    raw: bool = False
    context: list[int] | None = None
    format: str | JSONObject | None = None  # None | "json" | a JSON schema
    options: Options = field(default_factory=Options)
    stream: bool = True
    keep_alive: float | None = None  # seconds; negative keeps forever; None: the daemon default
    think: bool | str | None = None
    images: list[str] = field(default_factory=list)
    logprobs: bool = False
    top_logprobs: int = 0  # alternatives per token (0-20), with logprobs
    truncate: bool = True  # False: a prompt longer than num_ctx is a 400 instead of being cut
    shift: bool = True  # False: a full context ends the generation ("length") instead of shifting


@dataclass
class ChatRequest(_Named):
    messages: list[ChatMessage]
    tools: list[Tool] | None = None
    format: str | JSONObject | None = None
    options: Options = field(default_factory=Options)
    stream: bool = True
    keep_alive: float | None = None
    think: bool | str | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    truncate: bool = True
    shift: bool = True


@dataclass
class EmbedRequest(_Named):
    input: list[str]
    truncate: bool = True
    options: Options = field(default_factory=Options)
    keep_alive: float | None = None
    dimensions: int | None = None


def parse_keep_alive(value: object) -> float | None:
    """Seconds from a number or a duration string ("5m", "-1"); None keeps the daemon default."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadRequest("keep_alive must be a duration string (e.g. \"5m\") or a number of seconds")
    try:
        return parse_duration(value)
    except BadRequest:
        raise BadRequest(f"invalid keep_alive duration: {value!r}") from None


def parse_format(value: object) -> str | JSONObject | None:
    if value is None or value == "" or value == "null":
        return None
    if value == "json":
        return "json"
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        raise BadRequest(f"invalid format {value!r}: use \"json\" or a JSON schema object")
    raise BadRequest("format must be \"json\" or a JSON schema object")


def parse_think(value: object) -> bool | str | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in THINK_LEVELS:
        return value.lower()
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise BadRequest(f"invalid think value {value!r}: use true, false, \"high\", \"medium\", \"low\" or \"max\"")


def parse_options(value: object) -> Options:
    """A request's ``options`` object, validated once into the ``Options`` every later layer takes."""
    return Options.from_request(value)


def parse_top_logprobs(body: JSONObject, name: str = "top_logprobs") -> int:
    """``top_logprobs`` (0-20, Ollama's range and wording); a non-integer is the usual type error."""
    value = get_int(body, name, 0)
    if not 0 <= value <= MAX_TOP_LOGPROBS:
        raise BadRequest(f"{name} must be between 0 and {MAX_TOP_LOGPROBS}", param=name)
    return value


def runner_logprobs(logprobs: bool, top_logprobs: int) -> int | None:
    """What the runner is asked for: None (no logprobs) or the number of alternatives per token."""
    return top_logprobs if logprobs else None


def _images(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(i, str) for i in value):
        raise BadRequest(f"{where} must be a list of base64-encoded strings")
    return list(value)


def parse_generate_request(body: JSONObject) -> GenerateRequest:
    context = body.get("context")
    if context is not None and (
        not isinstance(context, list)
        or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in context)
    ):
        raise BadRequest("context must be a list of integer token ids (non-negative)")
    return GenerateRequest(
        model=model_field(body),
        prompt=get_str(body, "prompt") or "",
        suffix=get_str(body, "suffix") or None,
        system=get_str(body, "system"),
        template=get_str(body, "template") or None,
        raw=get_bool(body, "raw", False),
        context=[t for t in context if isinstance(t, int)] if context else None,  # all are, checked above
        format=parse_format(body.get("format")),
        options=parse_options(body.get("options")),
        stream=get_bool(body, "stream", True),
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        think=parse_think(body.get("think")),
        images=_images(body.get("images"), "images"),
        logprobs=get_bool(body, "logprobs", False),
        top_logprobs=parse_top_logprobs(body),
        truncate=get_bool(body, "truncate", True),
        shift=get_bool(body, "shift", True),
    )


def _tool_call(call: object, i: int) -> ToolCall:
    fn = call.get("function") if isinstance(call, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if not isinstance(call, dict) or not isinstance(fn, dict) or not isinstance(name, str) or not name:
        raise BadRequest(f"messages[{i}].tool_calls entries need a function with a name")
    args = fn.get("arguments", {})
    if isinstance(args, str):
        # OpenAI-style clients send arguments as a JSON string; the templates want an object.
        import json

        try:
            args = json.loads(args) if args.strip() else {}
        except (ValueError, RecursionError):  # also a 4,300+ digit integer or nesting past the recursion limit
            raise BadRequest(f"messages[{i}].tool_calls arguments must be a JSON object") from None
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise BadRequest(f"messages[{i}].tool_calls arguments must be a JSON object")
    out: ToolCall = {"function": {"name": name, "arguments": args}}
    index = fn.get("index")
    if isinstance(index, int):
        out["function"]["index"] = index
    call_id = call.get("id")
    if isinstance(call_id, str):
        out["id"] = call_id
    return out


def parse_message(msg: object, i: int) -> ChatMessage:
    if not isinstance(msg, dict):
        raise BadRequest(f"messages[{i}] must be an object with a role and content")
    role = msg.get("role")
    if not isinstance(role, str) or not role:
        raise BadRequest(f"messages[{i}].role is required")
    if role not in ROLES:
        raise BadRequest(f"messages[{i}] has invalid role {role!r}: use system, user, assistant or tool")
    content = msg.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise BadRequest(f"messages[{i}].content must be a string")
    out: ChatMessage = {"role": role, "content": content}
    images = _images(msg.get("images"), f"messages[{i}].images")
    if images:
        out["images"] = images
    calls = msg.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise BadRequest(f"messages[{i}].tool_calls must be a list")
        if calls:
            out["tool_calls"] = [_tool_call(c, i) for c in calls]
    for key in ("thinking", "tool_name", "tool_call_id"):
        value = msg.get(key)
        if value is not None:
            if not isinstance(value, str):
                raise BadRequest(f"messages[{i}].{key} must be a string")
            if value:
                out[key] = value  # type: ignore[literal-required]  # key is one of the three str fields
    return out


def _tools(value: object) -> list[Tool] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise invalid("tools", "an array of tool definitions", value)
    for i, tool in enumerate(value):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise BadRequest(f"tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}")
        if tool.get("type", "function") != "function":
            raise BadRequest(f"tools[{i}].type must be \"function\"")
        params = fn.get("parameters")
        if params is not None and not isinstance(params, dict):
            raise BadRequest(f"tools[{i}].function.parameters must be a JSON schema object")
    # Each is an object with a named function and schema parameters, checked above: a Tool.
    return [cast("Tool", dict(t, type="function")) for t in value] or None


def parse_chat_request(body: JSONObject) -> ChatRequest:
    messages = body.get("messages")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise invalid("messages", "an array of message objects", messages)
    return ChatRequest(
        model=model_field(body),
        messages=[parse_message(m, i) for i, m in enumerate(messages)],
        tools=_tools(body.get("tools")),
        format=parse_format(body.get("format")),
        options=parse_options(body.get("options")),
        stream=get_bool(body, "stream", True),
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        think=parse_think(body.get("think")),
        logprobs=get_bool(body, "logprobs", False),
        top_logprobs=parse_top_logprobs(body),
        truncate=get_bool(body, "truncate", True),
        shift=get_bool(body, "shift", True),
    )


def parse_embed_request(body: JSONObject) -> EmbedRequest:
    raw = body.get("input")
    if raw is None:
        inputs: list[str] = []
    elif isinstance(raw, str):
        inputs = [raw]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        inputs = [x for x in raw if isinstance(x, str)]  # all are
    else:
        raise invalid("input", "a string or an array of strings", raw)
    dims = body.get("dimensions")
    if dims is not None and (isinstance(dims, bool) or not isinstance(dims, int) or dims <= 0):
        raise BadRequest("dimensions must be a positive integer")
    return EmbedRequest(
        model=model_field(body),
        input=inputs,
        truncate=get_bool(body, "truncate", True),
        options=parse_options(body.get("options")),
        keep_alive=parse_keep_alive(body.get("keep_alive")),
        dimensions=dims,
    )


def parse_embeddings_request(body: JSONObject) -> EmbedRequest:
    """The legacy ``/api/embeddings`` body: ``{model, prompt}``; an empty prompt embeds nothing."""
    prompt = get_str(body, "prompt") or ""
    return EmbedRequest(
        model=model_field(body),
        input=[prompt] if prompt else [],
        truncate=True,
        options=parse_options(body.get("options")),
        keep_alive=parse_keep_alive(body.get("keep_alive")),
    )
