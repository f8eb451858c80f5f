"""The Go text/template engine, construct by construct: expected strings are what Go's text/template
prints for the same template and data (Go's documented semantics), plus parse and runtime errors."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ollamalike.errors import BadRequest
from ollamalike.template import check_template
from ollamalike.template.goexec import parse_go_template
from ollamalike.template.govalues import JSONMap, Struct

MSGS = [
    Struct("*template.templateMessage", {"Role": "user", "Content": "hi", "ToolCalls": []}),
    Struct("*template.templateMessage", {"Role": "assistant", "Content": "yo", "ToolCalls": [
        Struct("call", {"Function": Struct("fn", {"Name": "f", "Arguments": JSONMap({"b": 2, "a": "x<y"})})})]}),
]
DATA: dict[str, Any] = {
    "System": "sys", "Prompt": "p", "Empty": "", "Zero": 0, "T": True, "F": False, "Nil": None,
    "L": ["a", "b", "c"], "M": {"z": 1, "a": 2, "m": 3}, "N": 3, "Fl": 1.5, "Big": 1e21, "Messages": MSGS,
    "Nested": {"A": {"B": "deep"}},
}

CASES: list[tuple[str, str, str]] = [
    # text, trim markers, comments
    ("plain", "hello", "hello"),
    ("trim both", "a  {{- .Prompt -}}  \n b", "apb"),
    ("trim left only", "a \n{{- .Prompt }} b", "ap b"),
    ("dash without space is a number", "{{-3}}", "-3"),
    ("comment", "a{{/* note */}}b", "ab"),
    ("trimmed comment", "a \n {{- /* note */ -}} \n b", "ab"),
    # fields, variables, missing values
    ("field", "{{ .System }}", "sys"),
    ("nested map fields", "{{ .Nested.A.B }}", "deep"),
    ("missing key prints no value", "{{ .Nope }}", "<no value>"),
    ("nil value prints no value", "{{ .Nil }}", "<no value>"),
    ("root variable", "{{ range .L }}{{ $.System }}{{ end }}", "syssyssys"),
    ("declare", "{{ $x := .Prompt }}[{{ $x }}]", "[p]"),
    ("assign updates outer in range", "{{ $x := 0 }}{{ range $i, $e := .L }}{{ $x = $i }}{{ end }}{{ $x }}", "2"),
    ("shadowing inside if stays inside", "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}", "21"),
    ("struct fields", "{{ range .Messages }}{{ .Role }}:{{ .Content }};{{ end }}", "user:hi;assistant:yo;"),
    ("tool call args print as JSON", "{{ range .Messages }}{{ range .ToolCalls }}{{ .Function.Name }}{{ .Function.Arguments }}{{ end }}{{ end }}",
     'f{"a":"x\\u003cy","b":2}'),
    # literals
    ("string escapes", '{{ "a\\tb\\n" }}', "a\tb\n"),
    ("raw string", "{{ `a\\n` }}", "a\\n"),
    ("numbers", "{{ 42 }} {{ 1.5 }} {{ 0x1F }} {{ 1e3 }}", "42 1.5 31 1000"),
    ("bools", "{{ true }} {{ false }}", "true false"),
    ("char constant", "{{ 'a' }}", "97"),
    # if / else if / else and truthiness
    ("if true", "{{ if .T }}y{{ end }}", "y"),
    ("if empty string", "{{ if .Empty }}y{{ else }}n{{ end }}", "n"),
    ("if zero", "{{ if .Zero }}y{{ else }}n{{ end }}", "n"),
    ("if missing", "{{ if .Nope }}y{{ else }}n{{ end }}", "n"),
    ("if empty list", "{{ if slice .L 0 0 }}y{{ else }}n{{ end }}", "n"),
    ("if struct always true", "{{ if index .Messages 0 }}y{{ end }}", "y"),
    ("else if chain", "{{ if eq .N 1 }}one{{ else if eq .N 3 }}three{{ else }}other{{ end }}", "three"),
    ("if with declaration", "{{ if $v := .Prompt }}{{ $v }}{{ end }}", "p"),
    # range
    ("range slice", "{{ range .L }}{{ . }}{{ end }}", "abc"),
    ("range index and elem", "{{ range $i, $e := .L }}{{ $i }}{{ $e }}{{ end }}", "0a1b2c"),
    ("range single var gets element", "{{ range $e := .L }}{{ $e }}{{ end }}", "abc"),
    ("range map sorted keys", "{{ range $k, $v := .M }}{{ $k }}={{ $v }} {{ end }}", "a=2 m=3 z=1 "),
    ("range else", "{{ range .Nope }}x{{ else }}empty{{ end }}", "empty"),
    ("range int", "{{ range 3 }}{{ . }}{{ end }}", "012"),
    ("break", "{{ range .L }}{{ if eq . \"b\" }}{{ break }}{{ end }}{{ . }}{{ end }}", "a"),
    ("continue", "{{ range .L }}{{ if eq . \"b\" }}{{ continue }}{{ end }}{{ . }}{{ end }}", "ac"),
    # with
    ("with sets dot", "{{ with .Nested.A }}{{ .B }}{{ end }}", "deep"),
    ("with else", "{{ with .Empty }}x{{ else }}none{{ end }}", "none"),
    ("with declaration", "{{ with $s := .System }}{{ $s }}{{ . }}{{ end }}", "syssys"),
    ("else with", "{{ with .Empty }}a{{ else with .System }}{{ . }}{{ end }}", "sys"),
    # pipelines and parentheses
    ("pipeline final arg", "{{ .Prompt | printf \"%s-%s\" \"x\" }}", "x-p"),
    ("parenthesised call", "{{ printf \"%d\" (len .L) }}", "3"),
    ("field of parenthesised value", "{{ (index .Messages 1).Role }}", "assistant"),
    # comparison and logic
    ("eq multiple args", "{{ eq .N 1 2 3 }}", "true"),
    ("ne", "{{ ne .Prompt \"p\" }}", "false"),
    ("lt le gt ge", "{{ lt 1 2 }} {{ le 2 2 }} {{ gt 1 2 }} {{ ge \"b\" \"a\" }}", "true true false true"),
    ("and returns first falsy", "{{ and 1 0 2 }}", "0"),
    ("and returns last", "{{ and 1 \"x\" }}", "x"),
    ("or returns first truthy", "{{ or .Empty \"fallback\" }}", "fallback"),
    ("or short-circuits", "{{ or .T (index .L 99) }}", "true"),
    ("and short-circuits", "{{ and .F (index .L 99) }}", "false"),
    ("not", "{{ not .Empty }} {{ not .L }}", "true false"),
    # len, index, slice
    ("len string counts bytes", "{{ len \"héllo\" }}", "6"),
    ("len map", "{{ len .M }}", "3"),
    ("index slice", "{{ index .L 1 }}", "b"),
    ("index map", "{{ index .M \"m\" }}", "3"),
    ("index missing map key", "{{ index .M \"q\" }}", "<no value>"),
    ("slice from", "{{ slice .L 1 }}", "[b c]"),
    ("slice range", "{{ slice .L 1 2 }}", "[b]"),
    ("slice string", "{{ slice \"hello\" 1 3 }}", "el"),
    ("last message idiom", "{{ range $i, $_ := .Messages }}{{ if eq (len (slice $.Messages $i)) 1 }}{{ .Role }}{{ end }}{{ end }}", "assistant"),
    # print family
    ("print adds spaces between non-strings", "{{ print 1 2 \"a\" \"b\" 3 }}", "1 2ab3"),
    ("println", "{{ println \"a\" 1 }}", "a 1\n"),
    ("printf verbs", "{{ printf \"%s|%d|%v|%q|%5.2f|%-4s|%03d|%%\" \"s\" 7 .L \"q\\\"\" 3.14159 \"ab\" 5 }}",
     "s|7|[a b c]|\"q\\\"\"| 3.14|ab  |005|%"),
    ("printf %v of map", "{{ printf \"%v\" .M }}", "map[a:2 m:3 z:1]"),
    ("printf missing arg", "{{ printf \"%s %s\" \"a\" }}", "a %!s(MISSING)"),
    ("printf wrong type", "{{ printf \"%d\" \"a\" }}", "%!d(string=a)"),
    ("printf extra arg", "{{ printf \"x\" 1 }}", "x%!(EXTRA int=1)"),
    ("printf system join idiom", "{{ $s := \"a\" }}{{ $s = printf \"%s\\n\\n%s\" $s \"b\" }}{{ $s }}", "a\n\nb"),
    ("float printing", "{{ .Fl }} {{ .Big }} {{ 100000000.0 }}", "1.5 1e+21 1e+08"),
    ("list printing", "{{ .L }}", "[a b c]"),
    ("nil in print", "{{ print nil }}", "<nil>"),
    # json
    ("json string", "{{ json .Prompt }}", "\"p\""),
    ("json map sorted and escaped", "{{ json .Nested }}", "{\"A\":{\"B\":\"deep\"}}"),
    ("json html chars", "{{ json \"<a&b>\" }}", "\"\\u003ca\\u0026b\\u003e\""),
    ("json float", "{{ json 3.0 }} {{ json 1.25 }}", "3 1.25"),
    # define / template / block
    ("define and template", "{{ define \"T\" }}[{{ . }}]{{ end }}{{ template \"T\" .Prompt }}", "[p]"),
    ("template without data", "{{ define \"T\" }}{{ . }}{{ end }}{{ template \"T\" }}", "<no value>"),
    ("block", "{{ block \"B\" .System }}<{{ . }}>{{ end }}", "<sys>"),
]


@pytest.mark.parametrize("name,template,expected", CASES, ids=[c[0] for c in CASES])
def test_constructs(name: str, template: str, expected: str) -> None:
    assert parse_go_template(template).execute(DATA) == expected


PARSE_ERRORS: list[tuple[str, str, str]] = [
    ("unclosed action", "hello\n{{ .Prompt ", "line 2"),
    ("unknown function", "{{ frobnicate .Prompt }}", 'function "frobnicate" not defined'),
    ("unmatched end", "a\n\n{{ end }}", "line 3: unexpected {{end}}"),
    ("unclosed if", "{{ if .T }}x", "unexpected EOF"),
    ("else outside", "{{ else }}", "unexpected {{else}}"),
    ("undefined variable", "{{ $x }}", 'undefined variable "$x"'),
    ("assign to undeclared", "{{ $x = 1 }}", 'undefined variable "$x"'),
    ("break outside range", "{{ if .T }}{{ break }}{{ end }}", "{{break}} outside {{range}}"),
    ("constant pipeline stage", "{{ .Prompt | \"x\" }}", "non executable command in pipeline stage 2"),
    ("empty pipeline after bar", "{{ .Prompt | }}", "missing command"),
    ("empty action", "{{ }}", "missing value for command"),
    ("unterminated string", "{{ \"abc }}", "unterminated quoted string"),
    ("unclosed paren", "{{ (len .L }}", "line 1"),
    ("unclosed comment", "{{/* never closed", "unclosed comment"),
    ("bad number", "{{ 12ab }}", "bad number syntax"),
    ("unexpected paren", "{{ ) }}", "unexpected right paren"),
]


@pytest.mark.parametrize("name,template,message", PARSE_ERRORS, ids=[c[0] for c in PARSE_ERRORS])
def test_parse_errors(name: str, template: str, message: str) -> None:
    with pytest.raises(BadRequest) as err:
        check_template(template)
    text = str(err.value)
    assert text.startswith("template: line "), text
    assert message in text, text
    assert "\n" not in text


EXEC_ERRORS: list[tuple[str, str, str]] = [
    ("unknown struct field", "{{ range .Messages }}{{ .Nope }}{{ end }}", "can't evaluate field Nope"),
    ("field of nil", "{{ .Nope.Deeper }}", "nil pointer evaluating"),
    ("index out of range", "{{ index .L 5 }}", "index out of range: 5"),
    ("eq incompatible", "{{ eq .N \"3\" }}", "incompatible types for comparison"),
    ("len of int", "{{ len .N }}", "len of type int"),
    ("argument to non-function", "{{ .Prompt 1 }}", "can't give argument to non-function"),
    ("field as pipeline stage", "{{ .Prompt | .System }}", "can't give argument to non-function"),
    ("nil command", "{{ nil }}", "nil is not a command"),
    ("range over string", "{{ range .Prompt }}{{ end }}", "range can't iterate over"),
    ("missing template", "{{ template \"nope\" }}", 'no such template "nope"'),
]


@pytest.mark.parametrize("name,template,message", EXEC_ERRORS, ids=[c[0] for c in EXEC_ERRORS])
def test_exec_errors(name: str, template: str, message: str) -> None:
    tmpl = parse_go_template(template)
    with pytest.raises(BadRequest) as err:
        tmpl.execute(DATA)
    assert str(err.value).startswith("template: line "), str(err.value)
    assert message in str(err.value)


@pytest.mark.parametrize("template", [
    "{{ range 1000000000 }}{{ range 1000000000 }}x{{ end }}{{ end }}",
    "{{ define \"r\" }}{{ template \"r\" . }}{{ end }}{{ template \"r\" . }}",
    "{{ range 100000 }}{{ range 100000 }}{{ end }}{{ end }}",
])
def test_pathological_templates_stop_quickly(template: str) -> None:
    started = time.monotonic()
    with pytest.raises(BadRequest, match="template: line"):
        parse_go_template(template).execute(DATA)
    assert time.monotonic() - started < 20


def test_output_is_capped() -> None:
    big = {"S": "x" * (1 << 20)}
    with pytest.raises(BadRequest, match="output exceeds"):
        parse_go_template("{{ range 100 }}{{ $.S }}{{ end }}").execute(big)


PIECES = ["{{", "}}", "{{-", "-}}", " ", ".Prompt", ".L", "$x", ":=", "=", "if", "else", "end", "range", "with",
          "(", ")", "|", "eq", "len", "index", "printf", '"s"', "`r`", "1", "-2", "nil", "true", "\n", "text",
          "break", "/*", "*/", "$", ",", "define", "template", "block"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=30))
def test_arbitrary_input_only_ever_raises_bad_request(pieces: list[str]) -> None:
    text = "".join(pieces)
    try:
        out = parse_go_template(text).execute(DATA)
    except BadRequest as e:
        assert str(e).startswith("template: ") and "\n" not in str(e), str(e)
        return
    assert isinstance(out, str)


def test_template_redefinition() -> None:
    assert parse_go_template('{{ define "a" }}{{ end }}{{ define "a" }}x{{ end }}{{ template "a" }}').execute({}) == "x"
    with pytest.raises(BadRequest, match="multiple definition"):
        check_template('{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}')
