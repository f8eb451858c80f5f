"""Go values for templates: structs and maps, printing, truthiness and encoding/json output.

Values are plain Python data: ``dict`` is a Go map (keys sorted when ranged or printed),
``list`` a slice, ``Struct`` a Go struct (unknown fields are errors; some print as JSON,
like Ollama's tool types with a ``String()`` method), ``None`` a nil interface. ``GoValue`` names
that union; code that needs one kind narrows it with ``isinstance``.
"""

from __future__ import annotations

import decimal
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, Union

# What a template can see: nil, the JSON scalars, Go structs, slices and string-keyed maps. The
# containers are the read-only ABCs so that decoded JSON (``JSONValue``) is a ``GoValue`` as it is;
# at run time they are ``list``/``dict`` (and the subclasses below).
GoValue: TypeAlias = Union[None, bool, int, float, str, "Struct", Sequence["GoValue"], Mapping[str, "GoValue"]]


class ExecError(Exception):
    """A runtime template error; the executor adds the line."""


@dataclass
class Struct:
    """A Go struct value. ``json_fields``: (json name, value, omitempty) in declaration order;
    ``stringer``: printing it gives its JSON (Ollama's template types define ``String()`` so)."""

    type_name: str
    fields: dict[str, GoValue]
    json_fields: list[tuple[str, GoValue, bool]] | None = None
    stringer: bool = False


class JSONMap(dict[str, GoValue]):
    """A Go map with a ``String()`` method returning its JSON (tool-call arguments, tool properties)."""


class NilSlice(list[GoValue]):
    """An empty Go slice that is nil: prints as ``[]``, has length 0, encodes to JSON as ``null``."""


class JSONList(list[GoValue]):
    """A Go slice with a ``String()`` method returning its JSON (``.Tools``)."""


class NilJSONList(JSONList, NilSlice):
    """``.Tools`` when a request has none: false in ``if``, printed (and encoded) as ``null``."""


def as_list(v: GoValue) -> list[GoValue]:
    """``list(v or [])`` over a value that came from a client's JSON: a string gives its characters,
    a map its keys, a slice its items; a number or a struct is not iterable (``TypeError``, as ``list``)."""
    if not v:
        return []
    if isinstance(v, (str, list, tuple)):
        return list(v)
    if isinstance(v, Mapping):
        return list(v.keys())
    raise TypeError(f"'{type(v).__name__}' object is not iterable")


# ---- printing -------------------------------------------------------------------------------

def go_float(f: float, json_mode: bool = False) -> str:
    """Go's ``%v`` for float64 (strconv 'g', shortest: %e when exp < -4 or >= 6), or encoding/json's form."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1, f) < 0 and not json_mode else "0"
    sign, digits_t, exp = decimal.Decimal(repr(f)).as_tuple()
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    assert isinstance(exp, int)
    dp = len("".join(map(str, digits_t))) + exp  # position of the decimal point
    x = dp - 1
    use_exp = (abs(f) < 1e-6 or abs(f) >= 1e21) if json_mode else (x < -4 or x >= 6)
    prefix = "-" if sign else ""
    if use_exp:
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        width = 1 if json_mode else 2
        return f"{prefix}{mant}e{'+' if x >= 0 else '-'}{abs(x):0{width}d}"
    if dp <= 0:
        return f"{prefix}0.{'0' * -dp}{digits}"
    if dp >= len(digits):
        return prefix + digits + "0" * (dp - len(digits))
    return f"{prefix}{digits[:dp]}.{digits[dp:]}"


def fmt_v(value: GoValue, top: bool = True) -> str:
    """fmt's ``%v`` (what ``print`` uses)."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, (JSONMap, JSONList)):
        return go_json(value)
    if isinstance(value, Struct):
        if value.stringer:
            return go_json(value)
        # text/template dereferences pointers before printing, so no "&" even for *templateMessage.
        return "{" + " ".join(fmt_v(v, False) for v in value.fields.values()) + "}"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{fmt_v(k, False)}:{fmt_v(value[k], False)}" for k in sorted_keys(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(fmt_v(v, False) for v in value) + "]"
    return str(value)


def print_value(value: GoValue) -> str:
    """What ``{{ pipeline }}`` writes: like ``%v`` but a nil interface prints as ``<no value>``."""
    if value is None:
        return "<no value>"
    return fmt_v(value)


def sorted_keys(d: Mapping[str, GoValue]) -> list[str]:
    try:
        return sorted(d)
    except TypeError:
        return sorted(d, key=str)


def go_json(value: GoValue) -> str:
    """encoding/json's Marshal: compact, map keys sorted, struct fields in order, <>& escaped."""
    return "".join(_json_parts(value))


def _json_parts(value: GoValue) -> list[str]:
    if value is None or (isinstance(value, NilSlice) and not value):
        return ["null"]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ["null"]
        return [go_float(value, json_mode=True)]
    if isinstance(value, str):
        return [_json_str(value)]
    if isinstance(value, Struct):
        if value.json_fields is None:
            pairs = [(k, v) for k, v in value.fields.items()]
        else:
            pairs = [(k, v) for k, v, omit in value.json_fields if not (omit and _is_empty(v))]
        return _json_object(pairs)
    if isinstance(value, dict):
        return _json_object([(str(k), value[k]) for k in sorted_keys(value)])
    if isinstance(value, (list, tuple)):
        out = ["["]
        for i, item in enumerate(value):
            if i:
                out.append(",")
            out.extend(_json_parts(item))
        out.append("]")
        return out
    return [_json_str(str(value))]


def _json_object(pairs: list[tuple[str, GoValue]]) -> list[str]:
    out = ["{"]
    for i, (k, v) in enumerate(pairs):
        if i:
            out.append(",")
        out.append(_json_str(k) + ":")
        out.extend(_json_parts(v))
    out.append("}")
    return out


def _json_str(s: str) -> str:
    text = json.dumps(s, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _is_empty(v: GoValue) -> bool:
    return v is None or v is False or (isinstance(v, (str, list, dict, tuple)) and len(v) == 0) or (
        isinstance(v, (int, float)) and not isinstance(v, bool) and v == 0)


# ---- truth and comparison -------------------------------------------------------------------

def truth(value: GoValue) -> bool:
    if value is None:
        return False
    if isinstance(value, Struct):
        return True
    if isinstance(value, (bool, int, float, str, list, dict, tuple)):
        return bool(value)
    return True


def kind_of(v: GoValue) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if v is None:
        return "nil"
    return "other"


def go_type_name(v: GoValue) -> str:
    if isinstance(v, Struct):
        return v.type_name
    return {"bool": "bool", "int": "int", "float": "float64", "string": "string", "nil": "<nil>"}.get(
        kind_of(v), "map[string]interface {}" if isinstance(v, dict) else "[]interface {}")


