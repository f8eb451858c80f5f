"""Which options reach the runner: Modelfile parameters as defaults, request options on top, and the
named template's stop words only when nobody set any."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ollamalike.gguf_info import read_gguf_info
from ollamalike.inference.service import runner_options
from ollamalike.library.models import ResolvedModel
from ollamalike.options import Options
from tests.fakes import resolved_model


@pytest.fixture(scope="module")
def info(tiny_chat_gguf: Path) -> Any:
    return read_gguf_info(tiny_chat_gguf)


def model(info: Any, parameters: dict[str, Any], template: str | None = None) -> ResolvedModel:
    return resolved_model(template=template, info=info, parameters=parameters)


def test_template_stop_words_are_the_default(info: Any) -> None:
    from ollamalike.template import named_template

    chatml = named_template("chatml")
    assert runner_options(model(info, {}, template=chatml.template), Options())["stop"] == list(chatml.stop)
    # The GGUF's own Jinja template renders: the runner ends on end-of-generation tokens, no stop words.
    assert info.chat_template and "stop" not in runner_options(model(info, {}), Options())


@pytest.mark.parametrize(
    "params, request_opts, expected",
    [
        ({"stop": ["END"]}, {}, ["END"]),
        ({"stop": ["END"]}, {"stop": ["STOP", "HALT"]}, ["STOP", "HALT"]),
        ({}, {"stop": ["X"]}, ["X"]),
    ],
)
def test_explicit_stop_words_win(info: Any, params: dict[str, Any], request_opts: dict[str, Any],
                                 expected: list[str]) -> None:
    assert runner_options(model(info, params), Options.from_request(request_opts))["stop"] == expected


def test_request_overrides_modelfile_parameters(info: Any) -> None:
    merged = runner_options(model(info, {"temperature": 0.2, "num_ctx": 512, "top_k": 5}), Options.from_request({"temperature": 0.9}))
    assert merged["temperature"] == 0.9 and merged["num_ctx"] == 512 and merged["top_k"] == 5


def test_custom_template_has_no_default_stop_words(info: Any) -> None:
    assert "stop" not in runner_options(model(info, {}, template="{{ .Prompt }}"), Options())
