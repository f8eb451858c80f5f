"""Modelfile parsing (every instruction, quoting, comments, errors with line numbers) and write-back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ollamalike import modelfile
from ollamalike.errors import BadRequest
from ollamalike.modelfile import Modelfile, parse, quote

REPO = Path(__file__).resolve().parents[1]


def test_every_instruction() -> None:
    mf = parse(
        "FROM llama3.2\n"
        "ADAPTER ./lora.gguf\n"
        'TEMPLATE "{{ .Prompt }}"\n'
        "SYSTEM You are terse.\n"
        "PARAMETER temperature 0.2\n"
        "PARAMETER stop <|eot_id|>\n"
        "PARAMETER stop User:\n"
        "MESSAGE user Hi\n"
        "MESSAGE assistant Hello!\n"
        "MESSAGE system Be kind.\n"
        "LICENSE MIT\n"
        'LICENSE """Apache\nLicense 2.0"""\n'
    )
    assert mf == Modelfile(
        from_="llama3.2",
        parameters=[("temperature", 0.2), ("stop", "<|eot_id|>"), ("stop", "User:")],
        template="{{ .Prompt }}",
        system="You are terse.",
        adapters=["./lora.gguf"],
        license=["MIT", "Apache\nLicense 2.0"],
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "system", "content": "Be kind."},
        ],
    )
    assert mf.params == {"temperature": 0.2, "stop": ["<|eot_id|>", "User:"]}


def test_minimal() -> None:
    assert parse("FROM ./model.gguf") == Modelfile(from_="./model.gguf")


@pytest.mark.parametrize(
    ("text", "field", "expected"),
    [
        # Case-insensitive instructions and message roles; parameter names are lower-cased.
        ("from llama3\nsystem hi", "system", "hi"),
        ("FrOm llama3\nSyStEm hi", "system", "hi"),
        ("FROM llama3\nparameter TEMPERATURE 1", "parameters", [("temperature", 1.0)]),
        ("FROM llama3\nmessage USER hi", "messages", [{"role": "user", "content": "hi"}]),
        # Blank lines, indentation, tabs, comments.
        ("\n\n  # comment\n\tFROM   llama3   \n#SYSTEM not this\n", "from_", "llama3"),
        ("FROM llama3\n   SYSTEM\t  spaced out  ", "system", "spaced out"),
        ("# only\nFROM x # not a comment here", "from_", "x # not a comment here"),
        # Quoting.
        ('FROM llama3\nSYSTEM "  keep spaces  "', "system", "  keep spaces  "),
        ('FROM llama3\nSYSTEM ""', "system", ""),
        ('FROM llama3\nSYSTEM """"""', "system", ""),
        ('FROM llama3\nSYSTEM """say "hi" now"""', "system", 'say "hi" now'),
        ('FROM llama3\nSYSTEM say "hi"', "system", 'say "hi"'),
        ('FROM llama3\nSYSTEM """a"""b"""', "system", 'a"""b'),
        ('FROM llama3\nSYSTEM "a"b"', "system", 'a"b'),
        ('FROM llama3\nSYSTEM """\nline1\n\n# not a comment\nline3\n"""', "system", "\nline1\n\n# not a comment\nline3\n"),
        ('FROM llama3\nSYSTEM "two\nlines"', "system", "two\nlines"),
        ('FROM llama3\nSYSTEM """a""" b\nc"""', "system", 'a""" b\nc'),
        ('FROM llama3\nSYSTEM """x"""   \nPARAMETER top_k 1', "system", "x"),
        ('FROM llama3\nSYSTEM """x\n   \n\t\ny"""', "system", "x\n   \n\t\ny"),
        ('FROM llama3\nTEMPLATE """{{ .System }}\r\n{{ .Prompt }}"""\r\n', "template", "{{ .System }}\r\n{{ .Prompt }}"),
        ("FROM llama3\r\nSYSTEM hi\r\n", "system", "hi"),
        ("FROM llama3\rSYSTEM hi\r", "system", "hi"),
        ("\ufeffFROM llama3", "from_", "llama3"),
        # Later TEMPLATE/SYSTEM win, as in Ollama.
        ("FROM llama3\nSYSTEM a\nSYSTEM b", "system", "b"),
        # Extension: a line ending in triple quotes inside a triple-quoted value is written with a backslash.
        ('FROM llama3\nSYSTEM """def f():\n    """\\\n    pass"""', "system", 'def f():\n    """\n    pass'),
        ('FROM llama3\nSYSTEM """a"""\\\\\nb"""', "system", 'a"""\\\nb'),
        ('FROM llama3\nSYSTEM """a\\\nb"""', "system", "a\\\nb"),
        # Values may be anything Unicode.
        ("FROM llama3\nSYSTEM Tu es un assistant. 日本語 🦙", "system", "Tu es un assistant. 日本語 🦙"),
    ],
)
def test_parse_values(text: str, field: str, expected: Any) -> None:
    assert getattr(parse(text), field) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Modelfile has no FROM line"),
        ("# just a comment\n\n", "no FROM line"),
        ("SYSTEM hi", "no FROM line"),
        ("FROM a\n\n\n\n\n\nFORM b", 'Modelfile line 7: unknown instruction "FORM"'),
        ("FROM a\nSYSTEM: hi", 'line 2: unknown instruction "SYSTEM:"'),
        ("FROM a\n123 x", 'line 2: unknown instruction "123"'),
        ("FROM a\nREQUIRE x", 'line 2: unknown instruction "REQUIRE"'),
        ("FROM a\nFROM b", "line 2: more than one FROM (the first is on line 1)"),
        ("FROM", "line 1: FROM needs a value"),
        ("FROM   \nSYSTEM x", "line 1: FROM needs a value"),
        ('FROM ""', "line 1: FROM needs a model name or a path"),
        ("FROM a\nADAPTER \"\"", "line 2: ADAPTER needs a path"),
        ("FROM a\nSYSTEM", "line 2: SYSTEM needs a value"),
        ('FROM a\nSYSTEM """never\nclosed', 'line 2: unterminated """ quoted value'),
        ('FROM a\n\nSYSTEM "never\nclosed', 'line 3: unterminated " quoted value'),
        ('FROM a\nSYSTEM """x"""y', "line 2: unterminated"),
        ("FROM a\nPARAMETER temprature 0.5", 'line 2: unknown parameter "temprature"'),
        ("FROM a\nPARAMETER top_k 1.5", 'line 2: invalid parameter "top_k": expected an integer'),
        ("FROM a\nPARAMETER num_ctx -1", 'line 2: invalid parameter "num_ctx": must be at least 1'),
        ("FROM a\nPARAMETER use_mmap maybe", "line 2: invalid parameter \"use_mmap\": expected true or false"),
        ("FROM a\nPARAMETER temperature", "line 2: PARAMETER temperature needs a value"),
        ("FROM a\nPARAMETER temperature   ", "line 2: PARAMETER temperature needs a value"),
        ("FROM a\nPARAMETER  ", "line 2: PARAMETER needs a value"),
        ("FROM a\nPARAMETER #x 1", 'line 2: invalid parameter name "#x"'),
        ("FROM a\nPARAMETER temp-erature 1", 'line 2: invalid parameter name "temp-erature"'),
        ('FROM a\nPARAMETER stop ""', 'line 2: invalid parameter "stop": value must not be empty'),
        ("FROM a\nMESSAGE tool {}", 'line 2: message role must be "system", "user" or "assistant", got "tool"'),
        ("FROM a\nMESSAGE user", "line 2: MESSAGE user needs a value"),
        ("FROM a\nMESSAGE user   ", "line 2: MESSAGE user needs a value"),
        ("FROM a\nMESSAGE us3r hi", 'line 2: invalid message role "us3r"'),
        ('FROM a\nSYSTEM """one\ntwo"""\nPARAMETER seed x', "line 4: invalid parameter"),
        ("FROM a\r\nSYSTEM x\r\nBAD", "line 3: unknown instruction"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse(text)
    assert message in e.value.message
    assert "\n" not in e.value.message


def test_parse_rejects_non_text() -> None:
    with pytest.raises(BadRequest, match="Modelfile must be text"):
        parse(b"FROM x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "",
        " leading",
        "trailing ",
        "\ttab",
        '"quoted"',
        '"',
        '""',
        '"""',
        '""""',
        'say "hi"',
        "multi\nline",
        "multi\r\nline\r\n",
        "\n",
        "\nstarts with newline",
        'ends with quote"',
        'ends with triple"""',
        'line ends with quote"\nnext',
        'line ends with triple"""\nnext',
        'line ends with triple"""   \nnext',
        '"""\n"""\n"""',
        'x"""\\\nescaped already',
        'x"""\\\\  \ny',
        "# hash\n# lines",
        "back\\slash\\",
        "unicode 🦙\u2028sep",
        "\x0bvertical tab\x0c",
    ],
)
def test_quote_round_trips(value: str) -> None:
    for text in (f"FROM m\nSYSTEM {quote(value)}\nPARAMETER top_k 3", f"FROM m\nMESSAGE user {quote(value)}\n"):
        mf = parse(text)
        assert (mf.system if mf.system is not None else mf.messages[0]["content"]) == value


def test_quote_stays_ollama_compatible() -> None:
    # Ollama writes these forms too: bare when possible, "..." without inner quotes, triple quotes otherwise.
    assert quote("llama3") == "llama3"
    assert quote("two words") == "two words"
    assert quote(" pad ") == '" pad "'
    assert quote("a\nb") == '"a\nb"'
    assert quote('a "b"\nc') == '"""a "b"\nc"""'


def test_format_round_trip_of_a_full_modelfile() -> None:
    mf = Modelfile(
        from_="hf.co/user/repo:Q4_K_M",
        parameters=[("stop", 'a "q"'), ("stop", " sp "), ("temperature", 0.1), ("num_ctx", 2048), ("use_mmap", False)],
        template='{{ if .System }}"""{{ .System }}"""\n{{ end }}{{ .Prompt }}',
        system='Say """ and "',
        adapters=["/abs/path/lora.gguf", "with space.gguf"],
        license=["MIT", "line1\nline2 ends with \"\"\"\nline3"],
        messages=[{"role": "user", "content": ""}, {"role": "assistant", "content": "  ok  "}],
    )
    text = modelfile.format(mf)
    assert parse(text) == mf
    assert text.startswith("FROM hf.co/user/repo:Q4_K_M\n")


def test_format_expands_list_parameters() -> None:
    mf = Modelfile(from_="m", parameters=[("stop", ["a", "b"])])
    assert parse(modelfile.format(mf)).params == {"stop": ["a", "b"]}
    assert modelfile.parameter_lines({"stop": ["<|im_end|>", "x y"], "top_k": 5}) == [
        "PARAMETER stop <|im_end|>",
        "PARAMETER stop x y",
        "PARAMETER top_k 5",
    ]


def test_large_multiline_value_is_linear() -> None:
    # 200k lines inside one triple-quoted value: a quadratic parser would take minutes.
    body = "\n".join(f"line {i}" for i in range(200_000))
    mf = parse(f'FROM m\nTEMPLATE """{body}"""\nSYSTEM done')
    assert mf.template == body and mf.system == "done"


def test_example_modelfiles_parse_and_round_trip() -> None:
    files = sorted((REPO / "modelfiles").glob("*.Modelfile"))
    assert len(files) >= 3
    for path in files:
        mf = parse(path.read_text())
        assert mf.from_ or mf.engine is not None, path  # FROM, or ENGINE in its place (remote-engine.Modelfile)
        assert parse(modelfile.format(mf)) == mf, path


def test_example_modelfiles_content() -> None:
    assistant = parse((REPO / "modelfiles" / "assistant.Modelfile").read_text())
    assert assistant.system and assistant.params["stop"] == ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    custom = parse((REPO / "modelfiles" / "custom-template.Modelfile").read_text())
    assert custom.template and "<|im_start|>" in custom.template and "<|im_end|>" in custom.params["stop"]
    few = parse((REPO / "modelfiles" / "few-shot.Modelfile").read_text())
    assert [m["role"] for m in few.messages][:2] == ["user", "assistant"] and len(few.messages) >= 4
    remote = parse((REPO / "modelfiles" / "remote-engine.Modelfile").read_text())
    assert remote.engine is not None and remote.engine.api_key_env == "VLLM_API_KEY" and not remote.from_
    assert remote.system and remote.params["temperature"] == 0.3
