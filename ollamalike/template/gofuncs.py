"""The functions Go templates can call: comparison, collections, fmt's print family and Ollama's extras."""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import TypeGuard, TypeVar

from ollamalike.template.govalues import (
    ExecError,
    GoValue,
    Struct,
    as_list,
    fmt_v,
    go_float,
    go_json,
    go_type_name,
    kind_of,
    truth,
)


def _basic_eq(a: GoValue, b: GoValue) -> bool:
    ka, kb = kind_of(a), kind_of(b)
    if ka == "nil" or kb == "nil":
        if ka == kb:
            return True
        if ka == "other" or kb == "other":
            return False
        raise ExecError("incompatible types for comparison")
    if ka == "other" or kb == "other":
        raise ExecError(f"non-comparable type {go_type_name(a if ka == 'other' else b)}")
    if ka != kb:
        raise ExecError("incompatible types for comparison")
    return bool(a == b)


def f_eq(arg1: GoValue, *args: GoValue) -> bool:
    if not args:
        raise ExecError("missing argument for comparison")
    return any(_basic_eq(arg1, a) for a in args)


def f_ne(a: GoValue, b: GoValue) -> bool:
    return not _basic_eq(a, b)


_ORDERED_KINDS = ("int", "float", "string")
_Ordered = TypeVar("_Ordered", str, float)


def _check_ordered(a: GoValue, b: GoValue) -> None:
    ka, kb = kind_of(a), kind_of(b)
    if ka not in _ORDERED_KINDS or kb not in _ORDERED_KINDS:
        raise ExecError(f"invalid type for comparison: {go_type_name(a if ka not in _ORDERED_KINDS else b)}")
    if ka != kb:
        raise ExecError("incompatible types for comparison")


def _compare(op: str, x: _Ordered, y: _Ordered) -> bool:
    if op == "lt":
        return x < y
    if op == "le":
        return x <= y
    if op == "gt":
        return x > y
    return x >= y


def _ordered(op: str, a: GoValue, b: GoValue) -> bool:
    """``lt``/``le``/``gt``/``ge``: both ints, both floats or both strings (bool is not ordered)."""
    _check_ordered(a, b)
    if isinstance(a, str) and isinstance(b, str):
        return _compare(op, a, b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return _compare(op, a, b)
    raise AssertionError("unreachable: _check_ordered admits only numbers and strings")


def f_lt(a: GoValue, b: GoValue) -> bool:
    return _ordered("lt", a, b)


def f_le(a: GoValue, b: GoValue) -> bool:
    return _ordered("le", a, b)


def f_gt(a: GoValue, b: GoValue) -> bool:
    return _ordered("gt", a, b)


def f_ge(a: GoValue, b: GoValue) -> bool:
    return _ordered("ge", a, b)


def f_not(a: GoValue) -> bool:
    return not truth(a)


# ---- collections ----------------------------------------------------------------------------

def f_len(v: GoValue) -> int:
    if isinstance(v, str):
        return len(v.encode("utf-8"))
    if isinstance(v, (list, tuple, dict)):
        return len(v)
    raise ExecError(f"error calling len: len of type {go_type_name(v)}")


def _is_int(v: GoValue) -> TypeGuard[int]:
    """A Go int: Python's bool is an int subclass, but Go's bool is its own kind."""
    return isinstance(v, int) and not isinstance(v, bool)


def _int_index(i: GoValue) -> int:
    if isinstance(i, bool) or not isinstance(i, int):
        raise ExecError(f"cannot index slice/array with type {go_type_name(i)}")
    return i


def f_index(item: GoValue, *indexes: GoValue) -> GoValue:
    v = item
    for i in indexes:
        if isinstance(v, dict):
            v = v.get(i)
        elif isinstance(v, (list, tuple, str)):
            k = _int_index(i)
            if k < 0 or k >= (len(v.encode()) if isinstance(v, str) else len(v)):
                raise ExecError(f"error calling index: index out of range: {k}")
            v = v.encode()[k] if isinstance(v, str) else v[k]
        elif v is None:
            raise ExecError("error calling index: index of untyped nil")
        else:
            raise ExecError(f"error calling index: can't index item of type {go_type_name(v)}")
    return v


def f_slice(item: GoValue, *indexes: GoValue) -> GoValue:
    if not isinstance(item, (list, tuple, str)):
        raise ExecError(f"error calling slice: can't slice item of type {go_type_name(item)}")
    if len(indexes) > 3 or (isinstance(item, str) and len(indexes) > 2):
        raise ExecError(f"error calling slice: too many slice indexes: {len(indexes)}")
    size = len(item.encode()) if isinstance(item, str) else len(item)
    idx = [_int_index(i) for i in indexes]
    start = idx[0] if idx else 0
    end = idx[1] if len(idx) > 1 else size
    if not 0 <= start <= end <= size:
        raise ExecError(f"error calling slice: index out of range: {end if end > size else start}")
    if isinstance(item, str):
        return item.encode()[start:end].decode("utf-8", "replace")
    return list(item[start:end])


# ---- fmt ------------------------------------------------------------------------------------

def f_print(*args: GoValue) -> str:
    out: list[str] = []
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(fmt_v(a))
    return "".join(out)


def f_println(*args: GoValue) -> str:
    return " ".join(fmt_v(a) for a in args) + "\n"


_VERB = re.compile(r"%([-+# 0]*)(\d+|\*)?(?:\.(\d+|\*)?)?([a-zA-Z%])")


def f_printf(fmt: GoValue, *args: GoValue) -> str:
    if not isinstance(fmt, str):
        raise ExecError(f"wrong type for value; expected string; got {go_type_name(fmt)}")
    out: list[str] = []
    pos = 0
    argi = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos:m.start()])
        pos = m.end()
        flags, width, prec, verb = m.group(1), m.group(2), m.group(3), m.group(4)
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        out.append(_format_one(flags, width, prec, verb, arg))
    out.append(fmt[pos:])
    if argi < len(args):
        extra = ", ".join(f"{go_type_name(a)}={fmt_v(a)}" for a in args[argi:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _pad(text: str, flags: str, width: str | None) -> str:
    if not width or width == "*":
        return text
    w = int(width)
    if "-" in flags:
        return text.ljust(w)
    if "0" in flags and text[:1] in "-+0123456789":
        sign = text[0] if text[0] in "+-" else ""
        return sign + text[len(sign):].rjust(w - len(sign), "0")
    return text.rjust(w)


def _format_one(flags: str, width: str | None, prec: str | None, verb: str, arg: GoValue) -> str:
    bad = f"%!{verb}({go_type_name(arg)}={fmt_v(arg)})"
    if verb == "v":
        text = go_json(arg) if "#" in flags and isinstance(arg, str) else fmt_v(arg)
        if "+" in flags and (_is_int(arg) or isinstance(arg, float)) and not text.startswith("-"):
            text = "+" + text
    elif verb == "s":
        if isinstance(arg, (bool, int, float)) or arg is None:
            return bad if arg is not None else "%!s(<nil>)"
        text = fmt_v(arg)
        if prec is not None and prec != "*":
            text = text[:int(prec)]
    elif verb == "q":
        if isinstance(arg, str):
            text = _go_quote(arg)
        elif _is_int(arg):
            text = "'" + chr(arg) + "'" if 0 <= arg < 0x110000 else bad
        else:
            return bad
    elif verb == "d":
        if not _is_int(arg):
            return bad
        text = ("+" if "+" in flags and arg >= 0 else "") + str(arg)
    elif verb in "xX":
        if _is_int(arg):
            text = format(arg, "x" if verb == "x" else "X")
        elif isinstance(arg, str):
            text = arg.encode().hex()
            text = text.upper() if verb == "X" else text
        else:
            return bad
    elif verb in "feEgG":
        if not isinstance(arg, float):
            return bad
        if verb in "gG" and prec is None:
            text = go_float(arg)
        else:
            p = 6 if prec is None or prec == "*" else int(prec)
            text = format(arg, f".{p}{verb}")
            if verb in "eE":
                text = re.sub(r"([eE][+-])(\d)$", r"\g<1>0\2", text)
        if "+" in flags and not text.startswith("-"):
            text = "+" + text
    elif verb == "t":
        if not isinstance(arg, bool):
            return bad
        text = fmt_v(arg)
    elif verb == "c":
        if not _is_int(arg):
            return bad
        text = chr(arg)
    else:
        return f"%!{verb}({go_type_name(arg)}={fmt_v(arg)})"
    return _pad(text, flags, width)


def _go_quote(s: str) -> str:
    out = ['"']
    for ch in s:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif not ch.isprintable() and code > 0x7F:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---- Ollama's extra functions ---------------------------------------------------------------

def f_json(v: GoValue) -> str:
    return go_json(v)


def f_current_date(*args: str) -> str:
    return datetime.date.today().strftime("%Y-%m-%d")


def f_yesterday_date(*args: str) -> str:
    return (datetime.date.today() - datetime.timedelta(days=1)).strftime("%Y-%m-%d")


def f_to_typescript_type(v: GoValue) -> str:
    """A tool parameter's JSON-schema type as a TypeScript type (Ollama uses this in some templates)."""
    if not isinstance(v, Struct) or v.type_name != "api.ToolProperty":
        return "any"
    return _ts_type(v)


def _ts_type(prop: Struct) -> str:
    any_of = as_list(prop.fields.get("AnyOf"))
    if any_of:
        return " | ".join(_ts_type(p) if isinstance(p, Struct) else "any" for p in any_of)
    enum = as_list(prop.fields.get("Enum"))
    if enum:
        return " | ".join(go_json(e) for e in enum)
    raw = dict((name, value) for name, value, _ in prop.json_fields or []).get("type")
    types = [raw] if isinstance(raw, str) else [t for t in as_list(raw) if isinstance(t, str)]
    if not types:
        return "any"
    parts = []
    for t in types:
        if t == "array":
            items = prop.fields.get("Items")
            inner = items.get("type") if isinstance(items, dict) else None
            parts.append(f"{_ts_scalar(inner) if isinstance(inner, str) else 'any'}[]")
        else:
            parts.append(_ts_scalar(t))
    return " | ".join(parts)


def _ts_scalar(t: str) -> str:
    return {"string": "string", "number": "number", "integer": "number", "boolean": "boolean",
            "null": "null", "object": "Record<string, any>"}.get(t, "any")


BUILTINS: dict[str, Callable[..., GoValue]] = {
    "eq": f_eq, "ne": f_ne, "lt": f_lt, "le": f_le, "gt": f_gt, "ge": f_ge, "not": f_not,
    "len": f_len, "index": f_index, "slice": f_slice,
    "print": f_print, "printf": f_printf, "println": f_println,
    "json": f_json, "currentDate": f_current_date, "yesterdayDate": f_yesterday_date,
    "toTypeScriptType": f_to_typescript_type,
}
# and/or are evaluated lazily by the executor (Go short-circuits them); call is not offered.
FUNC_NAMES = set(BUILTINS) | {"and", "or"}
