"""Typed getters for fields of a JSON request body, shared by every API surface.

One wording for a field of the wrong type everywhere (``invalid value for 'stream': expected a
boolean, got a number``). HTTP-agnostic: the inference and library layers parse bodies with it too.
"""

from __future__ import annotations

from typing import Any

from ollamalike.errors import BadRequest

_MISSING: Any = object()


def type_name(value: Any) -> str:
    """How a JSON value's type reads in an error message ("a number", "an array", "null")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def invalid(name: str, expected: str, value: Any) -> BadRequest:
    return BadRequest(f"invalid value for '{name}': expected {expected}, got {type_name(value)}", param=name)


def get_str(body: dict[str, Any], name: str, default: Any = None, required: bool = False) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise BadRequest(f"'{name}' is required", param=name)
        return default
    if not isinstance(value, str):
        raise invalid(name, "a string", value)
    return value


def get_bool(body: dict[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(name, "a boolean", value)
    return value


def get_int(body: dict[str, Any], name: str, default: Any = None, minimum: int | None = None) -> Any:
    """An integer (``2.0`` counts; ``true`` does not), optionally at least ``minimum``."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise invalid(name, "an integer", value)
    if minimum is not None and value < minimum:
        raise BadRequest(f"invalid value for '{name}': must be at least {minimum}, got {int(value)}", param=name)
    return int(value)


def get_number(body: dict[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(name, "a number", value)
    return value


def get_dict(body: dict[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise invalid(name, "an object", value)
    return value


def get_list(body: dict[str, Any], name: str, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, list):
        raise invalid(name, "an array", value)
    return value


def model_field(body: dict[str, Any], required: bool = True) -> Any:
    """``model``, or Ollama's older alias ``name``; "model is required" is the wording Ollama clients see."""
    model = get_str(body, "model")
    if not model:
        model = get_str(body, "name")
    if required and not model:
        raise BadRequest("model is required")
    return model
