"""Lexer for Go's text/template syntax: splits text and ``{{ … }}`` actions into tokens.

Handles the ``{{-``/``-}}`` trim markers (which need a space next to the dash, as in Go),
``{{/* comments */}}``, interpreted and raw string literals, numbers, fields, variables and
the punctuation pipelines use. Errors are ``BadRequest("template: line N: …")``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ollamalike.errors import BadRequest

LEFT, RIGHT = "{{", "}}"


@dataclass(frozen=True)
class Token:
    kind: str  # text, lbrace, rbrace, ident, field, chain (.X right after a term), var, string, number, char, lparen, rparen, pipe, declare, assign, comma, dot, keyword, eof
    value: str
    line: int


KEYWORDS = {"if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
            "true", "false", "nil"}

_SPACE = " \t\r\n"
_NUMBER = re.compile(r"[+-]?(0[xX][0-9a-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(\d[\d_]*)?\.?\d[\d_]*([eE][+-]?\d+)?i?)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def template_error(line: int, message: str) -> BadRequest:
    return BadRequest(f"template: line {line}: {message}")


def lex(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos, line, n = 0, 1, len(text)
    while pos < n:
        start = text.find(LEFT, pos)
        if start < 0:
            tokens.append(Token("text", text[pos:], line))
            break
        body_start = start + 2
        trim_left = text.startswith("-", body_start) and body_start + 1 < n and text[body_start + 1] in _SPACE
        chunk = text[pos:start]
        if trim_left:
            chunk = chunk.rstrip(_SPACE)
        if chunk:
            tokens.append(Token("text", chunk, line))
        line += text.count("\n", pos, start)
        pos = body_start + (2 if trim_left else 0)
        # comments: {{/* ... */}} possibly with trim markers around
        stripped = pos
        while stripped < n and text[stripped] in _SPACE and trim_left:
            stripped += 1
        if text.startswith("/*", stripped):
            end = text.find("*/", stripped + 2)
            if end < 0:
                raise template_error(line, "unclosed comment")
            after = end + 2
            trim_right = False
            if text.startswith(" -" + RIGHT, after) or text.startswith("\t-" + RIGHT, after) or text.startswith("\n-" + RIGHT, after):
                trim_right = True
                after += 1
            if not text.startswith(RIGHT, after) and not text.startswith("-" + RIGHT, after):
                raise template_error(line, "comment ends before closing delimiter")
            if text.startswith("-" + RIGHT, after):
                trim_right = True
                after += 1
            line += text.count("\n", pos, after + 2)
            pos = after + 2
            if trim_right:
                while pos < n and text[pos] in _SPACE:
                    line += text[pos] == "\n"
                    pos += 1
            continue
        tokens.append(Token("lbrace", LEFT, line))
        pos, line = _lex_action(text, pos, line, tokens)
    tokens.append(Token("eof", "", line))
    return tokens


def _lex_action(text: str, pos: int, line: int, tokens: list[Token]) -> tuple[int, int]:
    """Tokenise one action's body; returns the position after ``}}`` (and any trimmed space)."""
    n = len(text)
    depth = 0
    while True:
        if pos >= n:
            raise template_error(line, "unclosed action")
        c = text[pos]
        if c in _SPACE:
            # " -}}" closes with trimming
            if text.startswith("-" + RIGHT, pos + 1):
                tokens.append(Token("rbrace", RIGHT, line))
                line += c == "\n"
                pos += 4
                while pos < n and text[pos] in _SPACE:
                    line += text[pos] == "\n"
                    pos += 1
                return pos, line
            line += c == "\n"
            pos += 1
            continue
        if text.startswith(RIGHT, pos):
            if depth:
                raise template_error(line, "unclosed left paren")
            tokens.append(Token("rbrace", RIGHT, line))
            return pos + 2, line
        if c == "(":
            depth += 1
            tokens.append(Token("lparen", c, line))
            pos += 1
        elif c == ")":
            if depth == 0:
                raise template_error(line, "unexpected right paren")
            depth -= 1
            tokens.append(Token("rparen", c, line))
            pos = _lex_field_chain(text, pos + 1, line, tokens)
        elif c == "|":
            tokens.append(Token("pipe", c, line))
            pos += 1
        elif c == ",":
            tokens.append(Token("comma", c, line))
            pos += 1
        elif text.startswith(":=", pos):
            tokens.append(Token("declare", ":=", line))
            pos += 2
        elif c == "=":
            tokens.append(Token("assign", "=", line))
            pos += 1
        elif c == '"':
            end = pos + 1
            while True:
                if end >= n or text[end] == "\n":
                    raise template_error(line, "unterminated quoted string")
                if text[end] == "\\":
                    end += 2
                    continue
                if text[end] == '"':
                    break
                end += 1
            tokens.append(Token("string", _unquote(text[pos:end + 1], line), line))
            pos = end + 1
        elif c == "`":
            end = text.find("`", pos + 1)
            if end < 0:
                raise template_error(line, "unterminated raw quoted string")
            tokens.append(Token("string", text[pos + 1:end], line))
            line += text.count("\n", pos, end)
            pos = end + 1
        elif c == "'":
            end = pos + 1
            while end < n and text[end] != "'":
                end += 2 if text[end] == "\\" else 1
            if end >= n:
                raise template_error(line, "unterminated character constant")
            value = _unquote('"' + text[pos + 1:end] + '"', line)
            if len(value) != 1:
                raise template_error(line, f"malformed character constant: {text[pos:end + 1]}")
            tokens.append(Token("char", value, line))
            pos = end + 1
        elif c == "$":
            m = _IDENT.match(text, pos + 1)
            name = "$" + (m.group(0) if m else "")
            tokens.append(Token("var", name, line))
            pos += len(name)
            pos = _lex_field_chain(text, pos, line, tokens)
        elif c == ".":
            m = _IDENT.match(text, pos + 1)
            if m is None:
                if pos + 1 < n and text[pos + 1].isdigit():
                    pos = _lex_number(text, pos, line, tokens)
                    continue
                tokens.append(Token("dot", ".", line))
                pos += 1
            else:
                tokens.append(Token("field", m.group(0), line))
                pos = _lex_field_chain(text, m.end(), line, tokens)
        elif c.isdigit() or (c in "+-" and pos + 1 < n and (text[pos + 1].isdigit() or text[pos + 1] == ".")):
            pos = _lex_number(text, pos, line, tokens)
        elif c.isalpha() or c == "_":
            m = _IDENT.match(text, pos)
            assert m is not None
            word = m.group(0)
            tokens.append(Token("keyword" if word in KEYWORDS else "ident", word, line))
            pos = m.end()
            if word not in KEYWORDS:
                pos = _lex_field_chain(text, pos, line, tokens)
        else:
            raise template_error(line, f"unexpected {c!r} in command")


def _lex_field_chain(text: str, pos: int, line: int, tokens: list[Token]) -> int:
    """Fields directly following a value (``.A.B``, ``$x.A``, ``(…).A``) without spaces."""
    while text.startswith(".", pos):
        m = _IDENT.match(text, pos + 1)
        if m is None:
            raise template_error(line, f"bad character {text[pos + 1:pos + 2]!r} after '.'")
        tokens.append(Token("chain", m.group(0), line))
        pos = m.end()
    return pos


def _lex_number(text: str, pos: int, line: int, tokens: list[Token]) -> int:
    m = _NUMBER.match(text, pos)
    if m is None or not m.group(0) or m.group(0) in "+-":
        raise template_error(line, f"bad number syntax: {text[pos:pos + 10]!r}")
    end = m.end()
    if end < len(text) and (text[end].isalnum() or text[end] == "_"):
        raise template_error(line, f"bad number syntax: {text[pos:end + 1]!r}")
    tokens.append(Token("number", m.group(0), line))
    return end


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v", "0": "\0"}


def _unquote(quoted: str, line: int) -> str:
    body = quoted[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1:i + 2]
        if nxt in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2:i + 2 + width]
            if len(digits) != width or not all(ch in "0123456789abcdefABCDEF" for ch in digits):
                raise template_error(line, f"invalid syntax in string {quoted}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif nxt in _ESCAPES:
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            raise template_error(line, f"invalid syntax in string {quoted}")
    return "".join(out)


def parse_number(text: str, line: int) -> int | float:
    clean = text.replace("_", "")
    if clean.endswith("i"):
        raise template_error(line, f"complex numbers are not supported: {text}")
    try:
        if clean.lower().lstrip("+-").startswith(("0x", "0b", "0o")):
            return int(clean, 0)
        if any(c in clean for c in ".eE"):
            return float(clean)  # Go evaluates a constant written with . or an exponent as float64
        if len(clean.lstrip("+-")) > 1 and clean.lstrip("+-").startswith("0"):
            return int(clean.lstrip("+-"), 8) * (-1 if clean.startswith("-") else 1)
        return int(clean)
    except ValueError:
        raise template_error(line, f"bad number syntax: {text}") from None
