"""Type checks and option mapping shared by the ``/v1`` request translations.

Each check names the OpenAI field it rejects (``invalid value for 'temperature': expected a number,
got a string``). ``sampling_options`` maps OpenAI's sampling fields and the request-level extras
(``options``, ``num_ctx``) onto Ollama options, validated like the native API's: each value once,
into the same ``Options`` the native API builds (the extras and the named fields are validated
separately, then merged without a second check, so the named fields win).
"""

from __future__ import annotations

import json

from ollamalike.errors import BadRequest
from ollamalike.inference.requests import parse_top_logprobs
from ollamalike.jsonfields import get_bool, get_int, get_number, get_str, invalid
from ollamalike.jsontypes import JSONObject
from ollamalike.options import Options

# OpenAI's reasoning efforts onto the native think values, as Ollama maps them (openai.go): the
# ends of OpenAI's scale clamp to the nearest level ("minimal" -> "low", "xhigh"/"ultra" -> "max").
REASONING_EFFORTS: dict[str, bool | str] = {
    "none": False, "minimal": "low", "low": "low", "medium": "medium", "high": "high", "max": "max",
    "xhigh": "max", "ultra": "max",
}


def reasoning_think(effort: object, param: str) -> bool | str | None:
    """The think value of a ``reasoning_effort`` / ``reasoning.effort`` (None: the model's default)."""
    if effort is None:
        return None
    if not isinstance(effort, str) or effort not in REASONING_EFFORTS:
        raise BadRequest(f"invalid reasoning effort {effort!r} for '{param}': use one of "
                         f"{', '.join(REASONING_EFFORTS)}", param=param)
    return REASONING_EFFORTS[effort]


def model_name(body: JSONObject) -> str:
    model = get_str(body, "model")
    if not model:
        raise BadRequest("'model' is required", param="model")
    return str(model)


def stop_list(value: object) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    raise invalid("stop", "a string or an array of strings", value)


def wants_usage(body: JSONObject, stream: bool) -> bool:
    opts = body.get("stream_options")
    if opts is None:
        return False
    if not isinstance(opts, dict):
        raise invalid("stream_options", "an object", opts)
    if not stream:
        raise BadRequest("'stream_options' is only allowed when 'stream' is true", param="stream_options")
    return bool(get_bool(opts, "include_usage", False))


def check_n(body: JSONObject) -> None:
    n = get_int(body, "n", minimum=1)
    if n is not None and n > 1:
        raise BadRequest(f"'n' = {n} is not supported: only one choice per request (n=1)", param="n")


def sampling_options(body: JSONObject) -> Options:
    """Ollama options from the request-level ``options``/``num_ctx`` extras and OpenAI's own fields.

    OpenAI's named fields win over the same option in ``options``. Fields left out keep the
    model's Modelfile parameters (Ollama forces temperature=1/top_p=1 here; a local model's
    tuned defaults are what a user of it expects).
    """
    extras = context_options(body)
    named: dict[str, object] = {}
    for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
        named[name] = get_number(body, name)
    named["seed"] = get_int(body, "seed")
    max_tokens = get_int(body, "max_completion_tokens", minimum=0)
    if max_tokens is None:
        max_tokens = get_int(body, "max_tokens", minimum=0)
    named["num_predict"] = max_tokens
    named["stop"] = stop_list(body.get("stop"))
    return named_options(extras, named)


def named_options(extras: Options, named: dict[str, object]) -> Options:
    """``extras`` overridden by an API's named sampling fields (``None``: not given), each validated once."""
    return Options.merge(extras, Options.from_request(named))


def _reject_logit_bias(body: JSONObject) -> None:
    if body.get("logit_bias") not in (None, {}):
        raise BadRequest("'logit_bias' is not supported", param="logit_bias")


def chat_logprobs(body: JSONObject) -> tuple[bool, int]:
    """Chat's ``logprobs`` (a boolean) and ``top_logprobs`` (0-20, only with ``logprobs``, as OpenAI)."""
    _reject_logit_bias(body)
    wanted = get_bool(body, "logprobs", False)
    top = parse_top_logprobs(body)
    if top and not wanted:
        raise BadRequest("'top_logprobs' requires 'logprobs' to be true", param="top_logprobs")
    return wanted, top


def completion_logprobs(body: JSONObject) -> tuple[bool, int]:
    """The legacy completions ``logprobs``: null (none), or how many alternatives per token (0-20)."""
    _reject_logit_bias(body)
    if body.get("logprobs") is None:
        return False, 0
    return True, parse_top_logprobs(body, "logprobs")


def context_options(body: JSONObject) -> Options:
    """Only the extras (``options`` and a top-level ``num_ctx``): what embeddings take."""
    extras = Options.from_request(body.get("options"))
    return named_options(extras, {"num_ctx": get_int(body, "num_ctx", minimum=1)})


def tool_arguments_json(arguments: object) -> str:
    """OpenAI carries tool-call arguments as a JSON string; Ollama as an object."""
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments if arguments is not None else {}, ensure_ascii=False, separators=(",", ":"))
