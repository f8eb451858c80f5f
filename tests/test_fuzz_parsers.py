"""Property tests: the Modelfile and GGUF parsers only ever fail with BadRequest, and Modelfiles round-trip."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from ollamalike import modelfile
from ollamalike.errors import BadRequest
from ollamalike.gguf_info import GGUFInfo, read_gguf_info
from ollamalike.modelfile import Modelfile
from tests.gguf_bytes import write_llama

# database=None: no .hypothesis/ directory in the working tree; failures print their reproducing example.
FAST = settings(max_examples=300, deadline=2000, database=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that steer random text towards the interesting corners of the grammar.
FRAGMENTS = st.sampled_from(
    ["FROM ", "from ", "PARAMETER ", "TEMPLATE ", "SYSTEM ", "ADAPTER ", "LICENSE ", "MESSAGE ", "user ", "assistant ",
     "tool ", "stop ", "temperature ", "num_ctx ", "top_k ", "use_mmap ", '"', '"""', "\\", "\n", "\r\n", "\r", " ",
     "\t", "#", "0.5", "-1", "1.5", "true", "llama3", "{{ .Prompt }}", "\ufeff"]
)
FRAGMENT_TEXT = st.lists(st.one_of(FRAGMENTS, st.text(max_size=5)), max_size=40).map("".join)
MODELFILE_TEXT = st.one_of(st.text(max_size=300), FRAGMENT_TEXT, FRAGMENT_TEXT.map(lambda body: "FROM m\n" + body))


@FAST
@given(MODELFILE_TEXT)
@example('FROM x\nSYSTEM """a"""\\\nb"""')
@example('FROM x\nSYSTEM """\n"""\\\\\n"""')
@example("FROM x\rSYSTEM \"\r\"")
def test_modelfile_parser_only_raises_bad_request_and_round_trips(text: str) -> None:
    try:
        mf = modelfile.parse(text)
    except BadRequest as e:
        event("rejected")
        assert e.message.startswith(("Modelfile line ", "Modelfile has no FROM line"))
        assert "\n" not in e.message and "\r" not in e.message.replace("\\r", "")
        return
    event("accepted")
    assert modelfile.parse(modelfile.format(mf)) == mf


PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.floats(min_value=0, max_value=1e6, allow_nan=False),
    "top_p": st.floats(min_value=0, max_value=1),
    "presence_penalty": st.floats(min_value=-1e30, max_value=1e30),
    "top_k": st.integers(min_value=0, max_value=2**31 - 1),
    "seed": st.integers(min_value=-(2**63), max_value=2**63 - 1),
    "num_ctx": st.integers(min_value=1, max_value=2**31 - 1),
    "use_mmap": st.booleans(),
    "stop": st.text(min_size=1, max_size=20),
}
PARAMETER = st.sampled_from(sorted(PARAMS)).flatmap(lambda name: PARAMS[name].map(lambda value: (name, value)))
VALUE = st.one_of(st.text(max_size=60), st.lists(st.sampled_from(['"', '"""', "\\", "\n", "\r", " ", "x"]), max_size=12).map("".join))
MODELFILES = st.builds(
    Modelfile,
    from_=VALUE.filter(bool),
    parameters=st.lists(PARAMETER, max_size=6),
    template=st.none() | VALUE,
    system=st.none() | VALUE,
    adapters=st.lists(VALUE.filter(bool), max_size=2),
    license=st.lists(VALUE, max_size=2),
    messages=st.lists(st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": VALUE}),
                      max_size=3),
    more_from=st.lists(VALUE.filter(bool), max_size=2),
    draft=st.none() | VALUE.filter(bool),
    renderer=st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    parser=st.none() | st.sampled_from(["qwen3-coder", "harmony", "deepseek3", "glm-4.7"]),
    requires=st.none() | st.from_regex(r"(0|[1-9][0-9]{0,3})(\.(0|[1-9][0-9]{0,3})){0,2}", fullmatch=True),
)


@FAST
@given(MODELFILES)
def test_any_modelfile_object_round_trips(mf: Modelfile) -> None:
    assert modelfile.parse(modelfile.format(mf)) == mf


@pytest.fixture(scope="module")
def valid_gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_llama(tmp_path_factory.mktemp("fuzz") / "base.gguf", n_layer=1, vocab=20).read_bytes()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-scratch") / "mutated.gguf"


# A mutation: overwrite bytes at a position, truncate, or insert bytes. Positions are fractions of the
# length, biased to the metadata at the front where parsing decisions happen.
MUTATION = st.one_of(
    st.tuples(st.just("set"), st.floats(0, 1), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("set"), st.floats(0, 0.05), st.sampled_from([b"\xff" * 8, b"\0" * 8, b"\x7f\xff\xff\xff", b"\x09"])),
    st.tuples(st.just("cut"), st.floats(0, 1), st.just(b"")),
    st.tuples(st.just("insert"), st.floats(0, 0.2), st.binary(min_size=1, max_size=16)),
)


def mutate(data: bytes, mutations: list[tuple[str, float, bytes]]) -> bytes:
    for kind, where, payload in mutations:
        pos = min(int(where * len(data)), len(data))
        if kind == "set":
            data = data[:pos] + payload + data[pos + len(payload) :]
        elif kind == "cut":
            data = data[:pos]
        else:
            data = data[:pos] + payload + data[pos:]
    return data


@settings(max_examples=300, deadline=2000, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(MUTATION, min_size=1, max_size=4))
def test_gguf_reader_on_mutations_only_raises_bad_request(valid_gguf: bytes, scratch: Path,
                                                          mutations: list[tuple[str, float, bytes]]) -> None:
    scratch.write_bytes(mutate(valid_gguf, mutations))
    try:
        info = read_gguf_info(scratch)
    except BadRequest as e:
        event("rejected")
        assert e.message.startswith("invalid GGUF file: ") and "\n" not in e.message
        return
    event("accepted")
    assert isinstance(info, GGUFInfo)
    assert info.tensor_bytes <= info.file_size


@settings(max_examples=150, deadline=2000, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_gguf_reader_on_random_bytes(scratch: Path, data: bytes) -> None:
    scratch.write_bytes(b"GGUF\x03\0\0\0" + data if data[:1] == b"\0" else data)
    with pytest.raises(BadRequest):
        read_gguf_info(scratch)
