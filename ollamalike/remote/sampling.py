"""A request's options (its own merged over the Modelfile's PARAMETERs) onto the engine's fields.

Only options that are set are sent: an unset one leaves the engine's own default (vLLM takes the
model's generation_config, llama-server its command line). OpenAI's standard fields carry what
they can (``max_tokens``, ``temperature``, ``top_p``, ``seed``, ``stop``, the two penalties); the
llama.cpp/vLLM sampling extensions every one of those engines accepts (``top_k``, ``min_p``) are
added when set, and ``repeat_penalty`` goes out under both names in use (llama-server and
llama-cpp-python's ``repeat_penalty``, vLLM's ``repetition_penalty``): an engine ignores the
field it does not know. Load-time options (num_ctx, num_gpu, ...) mean nothing to a remote engine.
"""

from __future__ import annotations

from collections.abc import Mapping

from ollamalike.jsontypes import JSONObject, JSONValue

_STANDARD = {
    "temperature": "temperature",
    "top_p": "top_p",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "top_k": "top_k",
    "min_p": "min_p",
}


def sampling_fields(options: Mapping[str, object]) -> JSONObject:
    """The request body's sampling fields for these (set, not defaulted) options."""
    out: JSONObject = {}
    for ours, theirs in _STANDARD.items():
        value = options.get(ours)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[theirs] = value
    predict = options.get("num_predict")
    if isinstance(predict, int) and not isinstance(predict, bool) and predict >= 0:
        out["max_tokens"] = predict  # negative: until the context is full, the engine's own default
    penalty = options.get("repeat_penalty")
    if isinstance(penalty, (int, float)) and not isinstance(penalty, bool):
        out["repeat_penalty"] = penalty
        out["repetition_penalty"] = penalty
    stop = options.get("stop")
    if isinstance(stop, list) and stop:
        words: list[JSONValue] = [str(s) for s in stop]
        out["stop"] = words
    return out


def response_format(fmt: str | JSONObject | None) -> JSONObject | None:
    """Ollama's ``format`` ("json" or a JSON schema) as OpenAI's ``response_format``."""
    if fmt is None or fmt == "":
        return None
    if isinstance(fmt, str):
        return {"type": "json_object"}
    return {"type": "json_schema", "json_schema": {"name": "response", "schema": fmt, "strict": True}}


def done_reason(finish_reason: str | None) -> str:
    """OpenAI's ``finish_reason`` as Ollama's ``done_reason``: "length" when cut at max_tokens, else "stop"
    (a tool call, a stop sequence and the end of the turn are all "stop" in Ollama)."""
    return "length" if finish_reason == "length" else "stop"
