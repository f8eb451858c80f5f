"""The typed ``Options`` value (issue 19): built only by validating constructors, each request value
validated exactly once on every API surface, combined without a second check."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ollamalike import options as opts
from ollamalike.errors import BadRequest
from ollamalike.inference.requests import parse_chat_request
from ollamalike.inference.service import runner_options
from ollamalike.options import Options
from ollamalike.server.anthropic_requests import parse_messages
from ollamalike.server.openai_requests import parse_chat_completion, parse_embedding
from ollamalike.server.responses_requests import parse_response_request

USER = [{"role": "user", "content": "hi"}]


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the option values validated, in order (every check goes through ``_json_value``)."""
    seen: list[str] = []
    real = opts._json_value

    def counting(spec: opts.ParamSpec, value: object) -> Any:
        seen.append(spec.name)
        return real(spec, value)

    monkeypatch.setattr(opts, "_json_value", counting)
    return seen


def test_options_are_read_only_and_hand_out_copies() -> None:
    o = Options.from_request({"stop": ["a"], "temperature": 0.5, "junk": 1})
    assert o == {"stop": ["a"], "temperature": 0.5} and len(o) == 2 and "junk" not in o
    got = o["stop"]
    assert isinstance(got, list)
    got.append("b")
    assert o["stop"] == ["a"]
    with pytest.raises(TypeError):
        o["temperature"] = 1.0  # type: ignore[index]
    assert o.to_json() == {"stop": ["a"], "temperature": 0.5}


def test_merge_and_defaults_combine_without_rechecking(checks: list[str]) -> None:
    model = Options.from_stored({"temperature": 0.2, "stop": ["x"], "num_ctx": 0, "num_gqa": 8})
    request = Options.from_request({"temperature": 0.9})
    assert model == {"temperature": 0.2, "stop": ["x"]}  # num_ctx 0 (made elsewhere) skipped, unknown dropped
    checks.clear()
    merged = Options.merge(model, request)
    full = merged.with_defaults().replace(num_ctx=64)
    assert checks == []
    assert merged == {"temperature": 0.9, "stop": ["x"]}
    assert full["temperature"] == 0.9 and full["top_k"] == 40 and full["num_ctx"] == 64 and set(full) == set(opts.PARAMETERS)


@pytest.mark.parametrize(("build", "message"), [
    (lambda: Options.from_request([1]), "invalid value for 'options': expected an object, got an array"),
    (lambda: Options.from_request({"top_p": 2}), 'invalid option "top_p": must be at most 1'),
    (lambda: Options.from_create({"bogus": 1}), 'unknown parameter "bogus"'),
    (lambda: Options.from_modelfile([("num_ctx", 0)]), 'invalid option "num_ctx": must be at least 1'),
])
def test_bad_options_are_refused_at_construction(build: Any, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        build()
    assert message in e.value.message


def test_native_chat_validates_each_request_value_once(checks: list[str]) -> None:
    req = parse_chat_request({"model": "m", "messages": USER, "options": {"temperature": 0.5, "num_ctx": 256}})
    assert sorted(checks) == ["num_ctx", "temperature"]
    checks.clear()
    model = SimpleNamespace(template="{{ .Prompt }}", system=None, messages=[], info=None,
                            parameters={"top_k": 5})
    merged = runner_options(model, req.options)
    assert checks == ["top_k"]  # only the model's stored value, read back once; the request's not again
    assert merged == {"top_k": 5, "temperature": 0.5, "num_ctx": 256}


@pytest.mark.parametrize(("parse", "body", "expected"), [
    (lambda b: parse_chat_completion(b).request,
     {"model": "m", "messages": USER, "options": {"top_k": 3}, "num_ctx": 512, "temperature": 0.1, "max_tokens": 7,
      "stop": "END"},
     {"top_k": 3, "num_ctx": 512, "temperature": 0.1, "num_predict": 7, "stop": ["END"]}),
    (lambda b: parse_embedding(b).request, {"model": "m", "input": "x", "options": {"num_ctx": 64}},
     {"num_ctx": 64}),
    (parse_messages,
     {"model": "m", "max_tokens": 9, "messages": USER, "top_k": 2, "options": {"seed": 1}},
     {"seed": 1, "top_k": 2, "num_predict": 9}),
    (lambda b: parse_response_request(b, []).request,
     {"model": "m", "input": "hi", "temperature": 0.3, "max_output_tokens": 4},
     {"temperature": 0.3, "num_predict": 4}),
])
def test_translations_validate_each_value_once(checks: list[str], parse: Any, body: dict[str, Any],
                                               expected: dict[str, Any]) -> None:
    # Before issue 19 the OpenAI path validated the options object up to four times.
    req = parse(body)
    assert req.options == expected
    assert sorted(checks) == sorted(expected)


def test_named_fields_win_but_bad_extras_are_still_refused() -> None:
    req = parse_chat_completion({"model": "m", "messages": USER, "options": {"temperature": 0.9}, "temperature": 0.2})
    assert req.request.options == {"temperature": 0.2}
    with pytest.raises(BadRequest, match='option "temperature"'):
        parse_chat_completion({"model": "m", "messages": USER, "options": {"temperature": "hot"}, "temperature": 0.2})
    with pytest.raises(BadRequest, match="temperature"):
        parse_chat_completion({"model": "m", "messages": USER, "temperature": -1})
