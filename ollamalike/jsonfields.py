"""Typed getters for fields of a JSON request body, shared by every API surface.

One wording for a field of the wrong type everywhere (``invalid value for 'stream': expected a
boolean, got a number``). HTTP-agnostic: the inference and library layers parse bodies with it too.
"""

from __future__ import annotations

from typing import Literal, TypeVar, overload

from ollamalike.errors import BadRequest
from ollamalike.jsontypes import JSONArray, JSONObject

T = TypeVar("T")


def type_name(value: object) -> str:
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


def invalid(name: str, expected: str, value: object) -> BadRequest:
    return BadRequest(f"invalid value for '{name}': expected {expected}, got {type_name(value)}", param=name)


@overload
def get_str(body: JSONObject, name: str, default: None = None, *, required: Literal[True]) -> str: ...
@overload
def get_str(body: JSONObject, name: str, default: None = None, required: bool = False) -> str | None: ...
@overload
def get_str(body: JSONObject, name: str, default: T, required: bool = False) -> str | T: ...
def get_str(body: JSONObject, name: str, default: object = None, required: bool = False) -> object:
    value = body.get(name)
    if value is None:
        if required:
            raise BadRequest(f"'{name}' is required", param=name)
        return default
    if not isinstance(value, str):
        raise invalid(name, "a string", value)
    return value


@overload
def get_bool(body: JSONObject, name: str, default: None = None) -> bool | None: ...
@overload
def get_bool(body: JSONObject, name: str, default: T) -> bool | T: ...
def get_bool(body: JSONObject, name: str, default: object = None) -> object:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(name, "a boolean", value)
    return value


@overload
def get_int(body: JSONObject, name: str, default: None = None, minimum: int | None = None) -> int | None: ...
@overload
def get_int(body: JSONObject, name: str, default: T, minimum: int | None = None) -> int | T: ...
def get_int(body: JSONObject, name: str, default: object = None, minimum: int | None = None) -> object:
    """An integer (``2.0`` counts; ``true`` does not), optionally at least ``minimum``."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise invalid(name, "an integer", value)
    if minimum is not None and value < minimum:
        raise BadRequest(f"invalid value for '{name}': must be at least {minimum}, got {int(value)}", param=name)
    return int(value)


@overload
def get_number(body: JSONObject, name: str, default: None = None) -> float | None: ...
@overload
def get_number(body: JSONObject, name: str, default: T) -> float | T: ...
def get_number(body: JSONObject, name: str, default: object = None) -> object:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(name, "a number", value)
    return value


@overload
def get_dict(body: JSONObject, name: str, default: None = None) -> JSONObject | None: ...
@overload
def get_dict(body: JSONObject, name: str, default: T) -> JSONObject | T: ...
def get_dict(body: JSONObject, name: str, default: object = None) -> object:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, dict):
        raise invalid(name, "an object", value)
    return value


@overload
def get_list(body: JSONObject, name: str, default: None = None) -> JSONArray | None: ...
@overload
def get_list(body: JSONObject, name: str, default: T) -> JSONArray | T: ...
def get_list(body: JSONObject, name: str, default: object = None) -> object:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, list):
        raise invalid(name, "an array", value)
    return value


@overload
def model_field(body: JSONObject, required: Literal[True] = True) -> str: ...
@overload
def model_field(body: JSONObject, required: bool) -> str | None: ...
def model_field(body: JSONObject, required: bool = True) -> str | None:
    """``model``, or Ollama's older alias ``name``; "model is required" is the wording Ollama clients see."""
    model = get_str(body, "model")
    if not model:
        model = get_str(body, "name")
    if required and not model:
        raise BadRequest("model is required")
    return model
