"""JSON schema to GBNF grammar: llama-cpp-python's converter, plus integer bounds it leaves out.

The converter ignores ``minimum``/``maximum`` (and the exclusive forms) on integers, so a schema
asking for ``{"type": "integer", "minimum": 1, "maximum": 5}`` could still get ``42``. Here such an
integer becomes an alternation of digit patterns that matches exactly the decimal spellings (no
leading zeros, ``-`` for negatives) of the integers in range. Unbounded sides stop at 16 digits,
one more than the converter's own integers allow. Bounds on non-integer numbers stay unenforced.
"""

from __future__ import annotations

import json
import math

from llama_cpp.llama_grammar import RESERVED_NAMES, SchemaConverter

from ollamalike.errors import BadRequest
from ollamalike.jsontypes import JSONObject, JSONValue

LIMIT = 10**16 - 1  # the largest magnitude an unbounded side allows


def _digit_class(low: int, high: int) -> str:
    return f'"{low}"' if low == high else f"[{low}-{high}]"


def _same_length(a: str, b: str) -> list[list[str]]:
    """Digit patterns (each a list of GBNF items) for the numerals ``a``..``b`` of equal length."""
    if a == b:
        return [[f'"{d}"' for d in a]]
    i = next(k for k in range(len(a)) if a[k] != b[k])
    prefix = [f'"{d}"' for d in a[:i]]
    lo, hi = int(a[i]), int(b[i])
    rest = len(a) - i - 1
    if rest == 0:
        return [[*prefix, _digit_class(lo, hi)]]
    low_full = a[i + 1 :] == "0" * rest  # every suffix under a[i] is in range
    high_full = b[i + 1 :] == "9" * rest
    out: list[list[str]] = []
    if not low_full:
        out += [[*prefix, f'"{lo}"', *tail] for tail in _same_length(a[i + 1 :], "9" * rest)]
    first, last = (lo if low_full else lo + 1), (hi if high_full else hi - 1)
    if first <= last:
        out.append([*prefix, _digit_class(first, last), *(["[0-9]"] * rest)])
    if not high_full:
        out += [[*prefix, f'"{hi}"', *tail] for tail in _same_length("0" * rest, b[i + 1 :])]
    return out


def _magnitudes(low: int, high: int) -> list[list[str]]:
    """Patterns for the non-negative integers ``low``..``high``, as written without leading zeros."""
    out: list[list[str]] = []
    for length in range(len(str(low)), len(str(high)) + 1):
        first = str(low) if length == len(str(low)) else "1" + "0" * (length - 1)
        last = str(high) if length == len(str(high)) else "9" * length
        out += _same_length(first, last)
    return out


def integer_range(low: int | None, high: int | None) -> str:
    """A GBNF rule body for the integers in ``[low, high]`` (None: unbounded on that side)."""
    lo = -LIMIT if low is None else max(low, -LIMIT)
    hi = LIMIT if high is None else min(high, LIMIT)
    if lo > hi:
        raise BadRequest(f"invalid JSON schema in format: no integer lies between {low} and {high}")
    alternatives: list[str] = []
    if lo < 0:
        # -1 .. -n: a minus sign, then the magnitudes from max(1, -hi) to -lo.
        alternatives += ['"-" ' + " ".join(p) for p in _magnitudes(max(1, -hi), -lo)]
    if hi >= 0:
        alternatives += [" ".join(p) for p in _magnitudes(max(0, lo), hi)]
    return "(" + " | ".join(alternatives) + ") space"


def integer_bounds(schema: JSONObject) -> tuple[int | None, int | None]:
    """The inclusive integer bounds a schema sets with (exclusive)minimum/maximum."""

    def number(key: str) -> float | None:
        value = schema.get(key)
        if value is None or isinstance(value, bool):
            return None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise BadRequest(f"invalid JSON schema in format: '{key}' must be a number")
        return float(value)

    low = number("minimum")
    high = number("maximum")
    ex_low = number("exclusiveMinimum")
    ex_high = number("exclusiveMaximum")
    # Draft 4 spelled exclusivity as booleans beside minimum/maximum.
    if schema.get("exclusiveMinimum") is True and low is not None:
        ex_low, low = low, None
    if schema.get("exclusiveMaximum") is True and high is not None:
        ex_high, high = high, None
    lows = [math.ceil(x) for x in (low,) if x is not None] + [math.floor(x) + 1 for x in (ex_low,) if x is not None]
    highs = [math.floor(x) for x in (high,) if x is not None] + [math.ceil(x) - 1 for x in (ex_high,) if x is not None]
    return (max(lows) if lows else None), (min(highs) if highs else None)


BOUND_KEYS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")


class _Converter(SchemaConverter):  # type: ignore[misc]
    def visit(self, schema: JSONValue, name: str) -> str:
        """The rule name for ``schema`` (llama.cpp's converter returns it; it is untyped)."""
        if isinstance(schema, dict) and schema.get("type") == "integer" and any(k in schema for k in BOUND_KEYS):
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            return str(self._add_rule(rule_name, integer_range(*integer_bounds(schema))))
        return str(super().visit(schema, name))


def schema_to_gbnf(schema: JSONObject) -> str:
    """GBNF for a JSON schema; ``BadRequest`` when the converter cannot take it."""
    try:
        converter = _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
        resolved = converter.resolve_refs(json.loads(json.dumps(schema)), "stdin")
        converter.visit(resolved, "")
        return str(converter.format_grammar())
    except BadRequest:
        raise
    except Exception as e:  # the converter raises bare Exceptions/ValueErrors on unsupported schemas
        raise BadRequest(f"invalid JSON schema in format: {e}") from None
