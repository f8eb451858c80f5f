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
        # Case-insensitive instructions; parameter names are lower-cased (message roles are not: below).
        ("from llama3\nsystem hi", "system", "hi"),
        ("FrOm llama3\nSyStEm hi", "system", "hi"),
        ("FROM llama3\nparameter TEMPERATURE 1", "parameters", [("temperature", 1.0)]),
        ("FROM llama3\nmessage user hi", "messages", [{"role": "user", "content": "hi"}]),
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
        ("FROM", "line 1: FROM needs a value"),
        ("FROM   \nSYSTEM x", "line 1: FROM needs a value"),
        ('FROM ""', "line 1: FROM needs a model name or a path"),
        ("FROM a\nADAPTER \"\"", "line 2: ADAPTER needs a path"),
        ("FROM a\nSYSTEM", "line 2: SYSTEM needs a value"),
        ('FROM a\nSYSTEM """never\nclosed', 'line 2: unterminated """ quoted value'),
        ('FROM a\n\nSYSTEM "never\nclosed', 'line 3: unterminated " quoted value'),
        ('FROM a\nSYSTEM """x"""y', "line 2: unterminated"),
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
        # Roles are case-sensitive, as in Ollama (issue 15; they were lower-cased before).
        ("FROM a\nMESSAGE USER hi", 'line 2: message role must be "system", "user" or "assistant", got "USER"'),
        ("FROM a\nMESSAGE Assistant hi", 'got "Assistant"'),
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
    coder = parse((REPO / "modelfiles" / "coder-speculative.Modelfile").read_text())
    assert (coder.from_, coder.draft, coder.renderer, coder.parser) == ("qwen3-coder:30b", "qwen3:0.6b", "qwen3-coder",
                                                                       "qwen3-coder")
    assert coder.requires == "0.1.0" and coder.params["num_ctx"] == 32768
    remote = parse((REPO / "modelfiles" / "remote-engine.Modelfile").read_text())
    assert remote.engine is not None and remote.engine.api_key_env == "VLLM_API_KEY" and not remote.from_
    assert remote.system and remote.params["temperature"] == 0.3


# --- issue 15: Ollama's newer instructions and parse-time rules ----------------------------------


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("FROM m\nDRAFT ./draft.gguf", {"draft": "./draft.gguf"}),
        ("FROM m\nDRAFT qwen2.5:0.5b\nDRAFT other", {"draft": "other"}),  # the last one wins
        ("FROM m\ndraft d", {"draft": "d"}),
        ("FROM m\nRENDERER qwen3-coder\nPARSER qwen3-coder", {"renderer": "qwen3-coder", "parser": "qwen3-coder"}),
        ("FROM m\nparser harmony\nPARSER glm-4.7", {"parser": "glm-4.7"}),
        ('FROM m\nRENDERER "deepseek3"', {"renderer": "deepseek3"}),
        ("FROM m\nREQUIRES 0.14.0", {"requires": "0.14.0"}),
        ("FROM m\nREQUIRES v0.14.0", {"requires": "0.14.0"}),  # stored without the v, as Ollama does
        ("FROM m\nREQUIRES 1", {"requires": "1"}),
        ("FROM m\nREQUIRES 0.12", {"requires": "0.12"}),
        ("FROM m\nREQUIRES 0.14.0-rc2+build.7", {"requires": "0.14.0-rc2+build.7"}),
        # Repeated FROM: every value kept in order (files merge, the last model name wins at create).
        ("FROM ./m.gguf\nFROM ./mmproj.gguf", {"from_": "./m.gguf", "more_from": ["./mmproj.gguf"]}),
        ("FROM a\nSYSTEM s\nFROM b\nFROM c", {"from_": "a", "more_from": ["b", "c"], "froms": ["a", "b", "c"]}),
        # Any parameter name parses (create refuses an unknown one); its value stays text.
        ("FROM m\nPARAMETER temprature 0.5", {"parameters": [("temprature", "0.5")]}),
        ("FROM m\nPARAMETER draft_num_predict 4", {"parameters": [("draft_num_predict", 4)]}),  # Ollama's, known
        ("FROM m\nPARAMETER 2x_y 1", {"parameters": [("2x_y", "1")]}),
        # An empty quoted value is kept as "", which clears an inherited system prompt at create.
        ('FROM m\nSYSTEM ""', {"system": ""}),
        ("FROM m", {"system": None, "draft": None, "renderer": None, "parser": None, "requires": None}),
    ],
)
def test_new_instructions(text: str, fields: dict[str, Any]) -> None:
    mf = parse(text)
    for name, expected in fields.items():
        assert getattr(mf, name) == expected, name
    assert parse(modelfile.format(mf)) == mf


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM m\nREQUIRES x", 'line 2: requires must be a valid semver (e.g. 0.14.0), got "x"'),
        ("FROM m\nREQUIRES 01.2.3", "line 2: requires must be a valid semver"),
        ("FROM m\nREQUIRES 1.2.3.4", "requires must be a valid semver"),
        ("FROM m\nREQUIRES 1.2-rc1", "requires must be a valid semver"),  # a prerelease needs all three parts
        ("FROM m\nREQUIRES vv1", "requires must be a valid semver"),
        ("FROM m\nREQUIRES 1.2.3-", "requires must be a valid semver"),
        ("FROM m\nREQUIRES 1.2.3-01", "requires must be a valid semver"),  # numeric prerelease, leading zero
        ('FROM m\nREQUIRES ""', "requires must be a valid semver"),
        ("FROM m\nREQUIRES", "line 2: REQUIRES needs a value"),
        ("FROM m\nRENDERER two words", 'line 2: invalid renderer name "two"'),
        ("FROM m\nPARSER -dash", 'invalid parser name "-dash"'),
        ('FROM m\nPARSER ""', "invalid parser name"),
        ("FROM m\nPARSER " + "x" * 65, "invalid parser name"),
        ('FROM m\nDRAFT ""', "line 2: DRAFT needs a model name or a path"),
        ("FROM m\nDRAFT", "line 2: DRAFT needs a value"),
        ("FROM m\nFROM \"\"", "line 2: FROM needs a model name or a path"),
        ("FROM m\nDRAFTS x", 'unknown instruction "DRAFTS"'),
        ("FROM m\nREQUIRES: 1", 'unknown instruction "REQUIRES:"'),
        ("FROM a\nPARAMETER top_k 1.5", 'line 2: invalid parameter "top_k": expected an integer'),  # known: typed
    ],
)
def test_new_instruction_errors(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        parse(text)
    assert message in e.value.message


def test_unknown_parameter_parses_but_is_refused_when_made_a_params_layer() -> None:
    mf = parse("FROM m\nPARAMETER temperature 0.5\nPARAMETER temprature 0.5")
    assert mf.parameters == [("temperature", 0.5), ("temprature", "0.5")]
    with pytest.raises(BadRequest, match='unknown parameter "temprature"'):
        mf.params  # noqa: B018 - what the CLI and create build the request from


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"FROM m\nSYSTEM hi\n", "FROM m\nSYSTEM hi\n"),
        (b"\xef\xbb\xbfFROM m\n", "FROM m\n"),
        ("\ufeffFROM m\nSYSTEM caf\u00e9 \U0001f999\n".encode("utf-16-le"), "FROM m\nSYSTEM caf\u00e9 \U0001f999\n"),
        ("\ufeffFROM m\r\nSYSTEM \u65e5\u672c\r\n".encode("utf-16-be"), "FROM m\r\nSYSTEM \u65e5\u672c\r\n"),
        ("FROM m\n".encode("utf-16"), "FROM m\n"),  # Python's own utf-16 writes a BOM
    ],
)
def test_decode_reads_utf8_and_utf16_with_a_bom(data: bytes, expected: str) -> None:
    text = modelfile.decode(data)
    assert text == expected
    assert parse(text).from_ == "m"


@pytest.mark.parametrize(
    "data",
    [
        b"FROM m\nSYSTEM \xff\xfe",  # not UTF-8, and no BOM at the start
        b"\xff\xfe\x00\xd8",  # a BOM, then a lone surrogate
    ],
)
def test_decode_refuses_undecodable_bytes(data: bytes) -> None:
    with pytest.raises(BadRequest, match="Modelfile is not valid UTF-8 or UTF-16 text"):
        modelfile.decode(data)


def test_format_writes_every_new_instruction_back() -> None:
    mf = Modelfile(
        from_="/blobs/sha256-aa",
        more_from=["/blobs/sha256-bb"],
        draft="/blobs/sha256-cc",
        renderer="qwen3-coder",
        parser="qwen3-coder",
        requires="0.1.0",
        system="",
        parameters=[("temperature", 0.5)],
    )
    text = modelfile.format(mf)
    assert text.splitlines() == [
        "FROM /blobs/sha256-aa",
        "FROM /blobs/sha256-bb",
        "DRAFT /blobs/sha256-cc",
        'SYSTEM ""',
        "RENDERER qwen3-coder",
        "PARSER qwen3-coder",
        "REQUIRES 0.1.0",
        "PARAMETER temperature 0.5",
    ]
    assert parse(text) == mf


@pytest.mark.parametrize(
    ("lower", "higher"),
    [
        ("0.1.0", "0.14.0"),
        ("0.9.9", "0.10.0"),
        ("0.14.0-rc1", "0.14.0"),
        ("0.14.0-rc.2", "0.14.0-rc.11"),
        ("1.0.0-alpha", "1.0.0-alpha.1"),
        ("1.0.0-alpha.1", "1.0.0-alpha.beta"),
        ("1.0.0-beta", "1.0.0-rc.1"),
        ("1", "1.0.1"),
    ],
)
def test_version_order(lower: str, higher: str) -> None:
    assert modelfile.version_key(lower) < modelfile.version_key(higher)
    assert modelfile.version_key(higher) > modelfile.version_key(lower)


@pytest.mark.parametrize(("a", "b"), [("1", "1.0.0"), ("0.14", "0.14.0"), ("1.2.3+build", "1.2.3")])
def test_version_equal(a: str, b: str) -> None:
    assert modelfile.version_key(a) == modelfile.version_key(b)
