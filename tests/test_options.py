"""The parameter table, Modelfile parameter parsing, request option validation and merging."""

from __future__ import annotations

from typing import Any

import pytest

from ollamalike import options
from ollamalike.errors import BadRequest
from ollamalike.options import (
    PARAMETERS,
    check_options,
    default_options,
    format_show_parameters,
    format_value,
    merge_options,
    params_to_json,
    parse_parameter,
    validate_options,
    with_defaults,
)

# Ollama's api/types.go Options + Runner fields and DefaultOptions().
OLLAMA_DEFAULTS: dict[str, Any] = {
    "num_keep": 4,
    "seed": -1,
    "num_predict": -1,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "typical_p": 1.0,
    "repeat_last_n": 64,
    "temperature": 0.8,
    "repeat_penalty": 1.1,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "mirostat": 0,
    "mirostat_tau": 5.0,
    "mirostat_eta": 0.1,
    "penalize_newline": True,
    "stop": [],
    "numa": False,
    "num_ctx": 4096,
    "num_batch": 512,
    "num_gpu": -1,
    "main_gpu": 0,
    "low_vram": False,
    "vocab_only": False,
    "use_mmap": True,
    "use_mlock": False,
    "num_thread": 0,
    "tfs_z": 1.0,
}


@pytest.mark.parametrize(("name", "default"), sorted(OLLAMA_DEFAULTS.items()))
def test_every_ollama_option_with_its_default(name: str, default: Any) -> None:
    spec = PARAMETERS[name]
    assert spec.default == default
    assert type(spec.default) is (list if spec.is_list else spec.type)


def test_defaults_are_copies() -> None:
    a = default_options()
    a["stop"].append("x")
    assert default_options()["stop"] == []
    assert PARAMETERS["stop"].default == []


def test_load_time_options() -> None:
    assert {"num_ctx", "num_batch", "num_gpu", "use_mmap", "num_thread"} <= options.LOAD_TIME_OPTIONS
    assert "temperature" not in options.LOAD_TIME_OPTIONS


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("temperature", "0.7", 0.7),
        ("temperature", "1", 1.0),
        ("temperature", ".5", 0.5),
        ("temperature", "5.", 5.0),
        ("temperature", "1e-1", 0.1),
        ("top_p", "+0.25", 0.25),
        ("presence_penalty", "-1.5", -1.5),
        ("top_k", "40", 40),
        ("top_k", "+7", 7),
        ("seed", "-1", -1),
        ("seed", "9223372036854775807", 2**63 - 1),
        ("num_ctx", "8192", 8192),
        ("num_predict", "-2", -2),
        ("mirostat", "2", 2),
        ("penalize_newline", "true", True),
        ("penalize_newline", "False", False),
        ("use_mmap", "0", False),
        ("use_mmap", "T", True),
        ("numa", "1", True),
        ("stop", "<|im_end|>", "<|im_end|>"),
        ("stop", "User: ", "User: "),
    ],
)
def test_parse_parameter(name: str, text: str, expected: Any) -> None:
    value = parse_parameter(name, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("top_k", "1.5", 'parameter "top_k": expected an integer'),
        ("top_k", "1.0", "expected an integer"),
        ("top_k", "forty", "expected an integer"),
        ("top_k", "", "expected an integer"),
        ("top_k", "1_000", "expected an integer"),
        ("top_k", "٣", "expected an integer"),
        ("temperature", "hot", 'parameter "temperature": expected a number'),
        ("temperature", "nan", "expected a number"),
        ("temperature", "inf", "expected a number"),
        ("temperature", "1e999", "out of range"),
        ("temperature", "-0.1", "at least 0"),
        ("top_p", "1.5", "at most 1"),
        ("num_ctx", "-1", 'parameter "num_ctx": must be at least 1'),
        ("num_ctx", "0", "at least 1"),
        ("num_batch", "0", "at least 1"),
        ("num_predict", "-3", "at least -2"),
        ("num_ctx", "99999999999", "at most"),
        ("seed", "9223372036854775808", "at most"),
        ("mirostat", "3", "must be one of 0, 1, 2"),
        ("use_mmap", "yes", "expected true or false"),
        ("use_mmap", "", "expected true or false"),
        ("stop", "", "must not be empty"),
        ("temprature", "0.5", 'unknown parameter "temprature"'),
        ("Temperature", "0.5", "unknown parameter"),
    ],
)
def test_parse_parameter_errors(name: str, text: str, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse_parameter(name, text)
    assert message in e.value.message


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ({}, {}),
        (None, {}),
        ({"temperature": 0}, {"temperature": 0.0}),
        ({"temperature": 1.2}, {"temperature": 1.2}),
        ({"num_ctx": 2048.0}, {"num_ctx": 2048}),
        ({"num_ctx": 2048}, {"num_ctx": 2048}),
        ({"seed": 123, "top_k": 1}, {"seed": 123, "top_k": 1}),
        ({"stop": ["a", "b"]}, {"stop": ["a", "b"]}),
        ({"stop": "END"}, {"stop": ["END"]}),
        ({"stop": []}, {"stop": []}),
        ({"use_mmap": False}, {"use_mmap": False}),
        ({"num_gpu": None}, {}),
        ({"tfs_z": 1}, {"tfs_z": 1.0}),
    ],
)
def test_validate_options(opts: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    result = validate_options(opts)
    assert result == expected
    for key, value in expected.items():
        assert type(result[key]) is type(value)


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"temperature": "hot"}, 'option "temperature": expected a number'),
        ({"temperature": True}, 'option "temperature": expected a number'),
        ({"temperature": float("nan")}, "must be finite"),
        ({"top_k": 1.5}, 'option "top_k": expected an integer'),
        ({"top_k": "40"}, "expected an integer"),
        ({"top_k": False}, "expected an integer"),
        ({"top_k": float("inf")}, "expected an integer"),
        ({"num_ctx": -1}, 'option "num_ctx": must be at least 1'),
        ({"num_ctx": -4096.0}, "must be at least 1"),
        ({"num_batch": 0}, "at least 1"),
        ({"num_ctx": 10**30}, "at most"),
        ({"top_p": 2}, "at most 1"),
        ({"mirostat": 5}, "one of 0, 1, 2"),
        ({"use_mmap": 1}, 'option "use_mmap": expected a boolean'),
        ({"use_mmap": "true"}, "expected a boolean"),
        ({"stop": [1, 2]}, 'option "stop": expected an array of strings'),
        ({"stop": {"a": 1}}, "expected an array of strings"),
        ({"stop": ["ok", None]}, "expected an array of strings"),
        ({"stop": [""]}, "must not be empty"),
        ({"seed": [1]}, "expected an integer"),
    ],
)
def test_validate_options_errors(opts: dict[str, Any], message: str) -> None:
    with pytest.raises(BadRequest) as e:
        validate_options(opts)
    assert message in e.value.message


def test_options_must_be_an_object() -> None:
    with pytest.raises(BadRequest, match="invalid value for 'options': expected an object, got an array"):
        validate_options(["temperature", 1])  # type: ignore[arg-type]


def test_unknown_options_are_returned_separately_and_dropped() -> None:
    valid, unknown = check_options({"temperature": 0.5, "not_an_option": 1, "num_gqa": 8})
    assert valid == {"temperature": 0.5}
    assert sorted(unknown) == ["not_an_option", "num_gqa"]
    assert validate_options({"bogus": "x"}) == {}


@pytest.mark.parametrize(
    ("model", "request_opts", "expected"),
    [
        ({}, None, {}),
        ({"temperature": 0.3}, None, {"temperature": 0.3}),
        ({"temperature": 0.3}, {"temperature": 1.0}, {"temperature": 1.0}),
        ({"temperature": 0.3}, {"top_k": 5}, {"temperature": 0.3, "top_k": 5}),
        ({"stop": ["a", "b"]}, {"stop": ["c"]}, {"stop": ["c"]}),
        ({"stop": ["a"]}, {"stop": []}, {"stop": []}),
        ({"num_ctx": 8192}, {"num_ctx": 2048.0, "junk": 1}, {"num_ctx": 2048}),
        ({"num_ctx": 8192}, {"num_ctx": None}, {"num_ctx": 8192}),
    ],
)
def test_merge_options(model: dict[str, Any], request_opts: dict[str, Any] | None, expected: dict[str, Any]) -> None:
    assert merge_options(model, request_opts) == expected


def test_merge_does_not_alias_model_lists() -> None:
    model = {"stop": ["a"]}
    merged = merge_options(model, None)
    merged["stop"].append("b")
    assert model == {"stop": ["a"]}


def test_merge_skips_stored_model_params_it_cannot_use() -> None:
    # A model made by another tool may carry values this version rejects: the model stays usable.
    assert merge_options({"num_ctx": 0, "mirostat": 7, "temperature": 0.2, "num_gqa": 8}, None) == {"temperature": 0.2}


def test_merge_rejects_bad_request_values() -> None:
    with pytest.raises(BadRequest, match="num_ctx"):
        merge_options({"num_ctx": 8192}, {"num_ctx": -5})


def test_with_defaults() -> None:
    full = with_defaults({"temperature": 0.1, "stop": ["x"]})
    assert full["temperature"] == 0.1 and full["stop"] == ["x"] and full["top_k"] == 40
    assert set(full) == set(PARAMETERS)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], {}),
        ([("stop", "a"), ("temperature", 0.5), ("stop", "b")], {"stop": ["a", "b"], "temperature": 0.5}),
        ([("temperature", 0.5), ("temperature", 0.9)], {"temperature": 0.9}),
        ([("stop", ["x", "y"]), ("stop", "z")], {"stop": ["x", "y", "z"]}),
    ],
)
def test_params_to_json(pairs: list[tuple[str, Any]], expected: dict[str, Any]) -> None:
    assert params_to_json(pairs) == expected
    assert options.params_to_json(options.json_to_params(expected)) == expected


def test_params_to_json_rejects_unknown_names() -> None:
    with pytest.raises(BadRequest, match="unknown parameter"):
        params_to_json([("nope", 1)])


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", 0.1),
        ("temperature", 1e-05),
        ("temperature", 0.30000000000000004),
        ("temperature", 123456789.125),
        ("top_k", 7),
        ("seed", -1),
        ("use_mmap", False),
        ("penalize_newline", True),
        ("stop", "<|eot_id|>"),
    ],
)
def test_format_value_round_trips(name: str, value: Any) -> None:
    assert parse_parameter(name, format_value(value)) == value


def test_format_show_parameters() -> None:
    text = format_show_parameters({"stop": ["<|im_end|>", 'a "q"'], "temperature": 0.7, "num_ctx": 8192})
    lines = text.split("\n")
    assert lines[0] == "stop" + " " * 27 + '"<|im_end|>"'
    assert lines[1].endswith('"a \\"q\\""')
    assert lines[2].split() == ["temperature", "0.7"]
    assert lines[3].split() == ["num_ctx", "8192"]
