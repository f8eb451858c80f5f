"""Unit tests of the runner's pure parts: the text stream (UTF-8 and stops), slots, options, formats."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ollamalike.errors import BadRequest
from ollamalike.runner.sampling import SamplingParams, TextStream, grammar_for_format
from ollamalike.runner.slots import Slot, choose_slot, keep_count


def run_stream(pieces: list[bytes], stop: list[str]) -> tuple[list[str], bool]:
    ts = TextStream(stop)
    out = [ts.push(p) for p in pieces]
    out.append(ts.flush())
    return [c for c in out if c], ts.stopped


def test_multibyte_characters_are_held_until_whole() -> None:
    data = "日本 ✓ é".encode()
    chunks, _ = run_stream([bytes([b]) for b in data], [])
    assert "".join(chunks) == "日本 ✓ é"
    assert all("\ufffd" not in c for c in chunks)


def test_invalid_bytes_become_replacement_characters() -> None:
    chunks, _ = run_stream([b"ok", b"\xff", b"\xe6\x97"], [])
    assert "".join(chunks) == "ok\ufffd\ufffd"


@pytest.mark.parametrize(("pieces", "stop", "expected", "stopped"), [
    ([b"Hel", b"lo wo", b"rld"], ["lo w"], "Hel", True),
    ([b"a", b"b", b"c", b"d"], ["bc"], "a", True),
    ([b"ab", b"x"], ["abc"], "abx", False),  # a partial match that diverges is released
    ([b"end <", b"|stop"], ["<|stop|>"], "end <|stop", False),  # partial at the end is flushed
    ([b"one", b"\n\n", b"two"], ["\n\n", "one"], "", True),
    ([b"x"], [], "x", False),
])
def test_stop_sequences(pieces: list[bytes], stop: list[str], expected: str, stopped: bool) -> None:
    chunks, did_stop = run_stream(pieces, stop)
    assert "".join(chunks) == expected
    assert did_stop is stopped


def test_stop_matching_work_does_not_grow_with_the_output() -> None:
    # Only a tail that could still begin a stop is held back and searched; what went out is never
    # looked at again, so a long generation costs the same per token as a short one.
    ts = TextStream(["</answer>", "\n\nUser:"])
    longest = 0
    for i in range(20000):
        ts.push(b"</answ" if i % 3 == 0 else b"\n\nUse" if i % 3 == 1 else b"x")
        longest = max(longest, len(ts._pending))
    assert not ts.stopped and ts.emitted > 20000
    assert longest <= len("\n\nUser:") - 1
    ts.push(b"</answer>")
    assert ts.stopped and ts.matched == "</answer>"


@given(st.text(alphabet="ab✓é\n", min_size=1, max_size=40), st.lists(st.text(alphabet="ab✓é\n", min_size=1, max_size=4), max_size=1),
       st.lists(st.integers(min_value=1, max_value=4), min_size=1, max_size=40))
def test_stream_never_emits_a_stop_and_matches_reference(text: str, stops: list[str], cuts: list[int]) -> None:
    data = text.encode()
    pieces, i, k = [], 0, 0
    while i < len(data):
        n = cuts[k % len(cuts)]
        pieces.append(data[i : i + n])
        i += n
        k += 1
    chunks, stopped = run_stream(pieces, stops)
    joined = "".join(chunks)
    hits = [text.find(s) for s in stops if s and s in text]
    expected = text[: min(hits)] if hits else text
    assert joined == expected
    assert stopped == bool(hits)
    for c in chunks:
        assert all(s not in c for s in stops if s)


def test_choose_slot_prefers_longest_prefix_then_lru() -> None:
    a, b, c = Slot(0, cache=[1, 2, 3]), Slot(1, cache=[1, 2, 9, 9]), Slot(2, cache=[])
    a.last_used, b.last_used, c.last_used = 3.0, 2.0, 1.0
    assert choose_slot([a, b, c], [1, 2, 3, 4]) is a
    assert choose_slot([a, b, c], [1, 2, 9]) is b
    assert choose_slot([a, b, c], [7]) is c  # no prefix anywhere: least recently used
    a.req = b.req = c.req = object()
    assert choose_slot([a, b, c], [1]) is None


def test_choose_slot_keeps_busy_sequences_together() -> None:
    # Busy: 1 and 3. A free slot between them beats the least recently used one far away, and a few
    # shared tokens (a BOS) do not outweigh that; a long shared prefix still does.
    slots = [Slot(i, cache=[1, 5, 6]) for i in range(6)]
    for i, s in enumerate(slots):
        s.last_used = float(10 - i)  # slot 5 is the least recently used
    slots[1].req = slots[3].req = object()
    assert choose_slot(slots, [1, 7]) is slots[2]
    slots[2].req = object()
    assert choose_slot(slots, [1, 7]) is slots[4]  # next to the block, not the LRU slot 5
    slots[5].cache = list(range(100))
    assert choose_slot(slots, list(range(100)) + [7]) is slots[5]


def test_keep_count() -> None:
    prompt = list(range(1, 101))
    assert keep_count(4, prompt, bos=1, n_ctx_slot=64) == 5  # BOS on top of num_keep
    assert keep_count(4, prompt, bos=None, n_ctx_slot=64) == 4
    assert keep_count(-1, prompt, bos=None, n_ctx_slot=64) == 32  # never more than half the slot
    assert keep_count(0, [], bos=1, n_ctx_slot=64) == 0


def test_sampling_params_defaults_and_parsing() -> None:
    p = SamplingParams.from_options(None)
    assert (p.temperature, p.top_k, p.top_p, p.repeat_penalty, p.seed, p.num_predict) == (0.8, 40, 0.9, 1.1, -1, -1)
    q = SamplingParams.from_options({"temperature": 0, "stop": "END", "seed": 7, "num_predict": 5.0})
    assert q.temperature == 0.0 and q.stop == ("END",) and q.seed == 7 and q.num_predict == 5
    assert SamplingParams.from_options({"stop": ["a", "", "b"]}).stop == ("a", "b")
    with pytest.raises(BadRequest, match="top_k"):
        SamplingParams.from_options({"top_k": "many"})
    with pytest.raises(BadRequest, match="mirostat"):
        SamplingParams.from_options({"mirostat": 3})


def test_grammar_for_format() -> None:
    assert grammar_for_format(None) is None and grammar_for_format("") is None
    assert "root" in (grammar_for_format("json") or "")
    g = grammar_for_format({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
    assert g is not None and "root" in g
    with pytest.raises(BadRequest, match="invalid format"):
        grammar_for_format("xml")
    with pytest.raises(BadRequest, match="invalid format"):
        grammar_for_format(["json"])  # type: ignore[arg-type]


def test_runner_arguments_for_the_gpu_split() -> None:
    import json

    from ollamalike.runner.__main__ import _parse
    from ollamalike.runner.spec import RunnerSpec

    def argv(**fields: object) -> list[str]:
        return ["--spec", json.dumps({"model_path": "m.gguf", **fields}), "--socket", "s.sock"]

    args = _parse(RunnerSpec("m.gguf", tensor_split=(0.6, 0.4), main_gpu=1).argv("s.sock"))
    assert args.spec.tensor_split == (0.6, 0.4) and args.spec.main_gpu == 1
    assert _parse(argv()).spec == RunnerSpec("m.gguf")
    for bad in ({"tensor_split": "a,b"}, {"tensor_split": [0, 0]}, {"tensor_split": [-1, 2]},
                {"tensor_split": [float("inf")]}, {"tensor_split": [1] * 17}, {"main_gpu": -1},
                {"kv_cache_type": "q5_9"}, {"ctx_size": 0}, {"num_parallel": True}, {"bogus": 1}):
        with pytest.raises(SystemExit):
            _parse(argv(**bad))
    with pytest.raises(SystemExit):
        _parse(["--spec", "{not json", "--socket", "s.sock"])


def test_runner_spec_round_trips_through_json() -> None:
    from ollamalike.runner.spec import RunnerSpec

    spec = RunnerSpec("/m.gguf", ctx_size=8192, num_parallel=4, num_batch=256, gpu_layers=12, threads=2,
                      flash_attn="on", use_mmap=False, embedding=True, adapters=("/a.gguf",), kv_cache_type="q8_0",
                      main_gpu=1, tensor_split=(0.25, 0.75))
    assert RunnerSpec.from_json(spec.to_json()) == spec
    assert spec.ctx_per_slot == 2048
    # Equality is what decides sharing a runner: a list of adapters equals the same tuple.
    assert RunnerSpec("/m.gguf", adapters=["/a.gguf"]) == RunnerSpec("/m.gguf", adapters=("/a.gguf",))  # type: ignore[arg-type]
    assert RunnerSpec("/m.gguf", ctx_size=4096) != RunnerSpec("/m.gguf")


def test_model_params_carry_the_gpu_split(monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_cpp

    from ollamalike.errors import RunnerError
    from ollamalike.runner.llama import LoadError, model_params
    from ollamalike.runner.spec import RunnerSpec

    mparams, split = model_params(RunnerSpec(model_path="m.gguf", gpu_layers=9, main_gpu=1, tensor_split=(0.6, 0.4)))
    assert mparams.n_gpu_layers == 9 and mparams.main_gpu == 1
    assert [round(mparams.tensor_split[i], 6) for i in range(3)] == [0.6, 0.4, 0.0]
    assert split is not None
    mparams, split = model_params(RunnerSpec(model_path="m.gguf"))
    assert not mparams.tensor_split and split is None  # llama.cpp chooses
    with pytest.raises(RunnerError, match="1-16"):
        RunnerSpec(model_path="m.gguf", tensor_split=(1.0,) * 100)
    # A build that drives fewer devices than the split names.
    monkeypatch.setattr(llama_cpp, "LLAMA_MAX_DEVICES", 1)
    with pytest.raises(LoadError, match="supports"):
        model_params(RunnerSpec(model_path="m.gguf", tensor_split=(0.6, 0.4)))


@pytest.mark.parametrize(("mode", "name"), [("auto", "LLAMA_FLASH_ATTN_TYPE_AUTO"), ("on", "LLAMA_FLASH_ATTN_TYPE_ENABLED"),
                                            ("off", "LLAMA_FLASH_ATTN_TYPE_DISABLED")])
def test_flash_attention_setting_reaches_the_context(monkeypatch: pytest.MonkeyPatch, mode: str, name: str) -> None:
    import llama_cpp

    from ollamalike.runner import llama
    from ollamalike.runner.spec import RunnerSpec

    seen: list[int] = []

    def init(_model: object, cparams: llama_cpp.llama_context_params) -> None:
        seen.append(cparams.flash_attn_type)

    monkeypatch.setattr(llama_cpp, "llama_model_n_ctx_train", lambda _model: 4096)
    monkeypatch.setattr(llama_cpp, "llama_init_from_model", init)
    spec = RunnerSpec(model_path="m.gguf") if mode == "auto" else RunnerSpec(model_path="m.gguf", flash_attn=mode)  # type: ignore[arg-type]
    llama._new_context(llama_cpp.llama_model_p(0), spec)
    assert seen == [getattr(llama_cpp, name)]


def test_flash_attention_mode_is_checked() -> None:
    from ollamalike.errors import RunnerError
    from ollamalike.runner.spec import RunnerSpec

    assert RunnerSpec(model_path="m.gguf").flash_attn == "auto"  # llama-server's default
    with pytest.raises(RunnerError, match="flash_attn"):
        RunnerSpec(model_path="m.gguf", flash_attn="yes")  # type: ignore[arg-type]
    with pytest.raises(RunnerError, match="flash_attn"):
        RunnerSpec.from_json('{"model_path": "m.gguf", "flash_attn": true}')


def _rule_regex(body: str) -> re.Pattern[str]:
    """The integer-range rule body as a regex (it only uses literals, digit classes and |)."""
    assert body.endswith(" space")
    pattern = body[: -len(" space")].replace('"', "").replace(" ", "")
    return re.compile(pattern)


@given(
    low=st.one_of(st.none(), st.integers(-10**6, 10**6)),
    span=st.one_of(st.none(), st.integers(0, 10**6)),
    probes=st.lists(st.integers(-2 * 10**6, 2 * 10**6), min_size=1, max_size=30),
)
def test_integer_range_matches_exactly_the_integers_in_range(low: int | None, span: int | None, probes: list[int]) -> None:
    from ollamalike.runner.schema import integer_range

    high = None if span is None else (low or 0) + span
    regex = _rule_regex(integer_range(low, high))
    edges = [x for x in (low, high) if x is not None]
    for n in probes + [e + d for e in edges for d in (-1, 0, 1)] + [0, -1, 1]:
        inside = (low is None or n >= low) and (high is None or n <= high)
        assert bool(regex.fullmatch(str(n))) is inside, (low, high, n)
    for bad in ("01", "-0", "007", "--1", "1-"):
        assert not regex.fullmatch(bad), bad


def test_integer_bounds_from_a_schema() -> None:
    from ollamalike.runner.schema import integer_bounds, schema_to_gbnf

    assert integer_bounds({"minimum": 1, "maximum": 5}) == (1, 5)
    assert integer_bounds({"exclusiveMinimum": 1, "exclusiveMaximum": 5}) == (2, 4)
    assert integer_bounds({"minimum": 1.5, "maximum": 4.5}) == (2, 4)
    assert integer_bounds({"minimum": 0, "exclusiveMinimum": True, "maximum": 9}) == (1, 9)  # draft 4
    assert integer_bounds({"minimum": 3, "exclusiveMinimum": 5}) == (6, None)  # the tighter one
    grammar = schema_to_gbnf({"type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 7}}})
    assert 'n ::= ([3-7]) space' in grammar
    for bad, message in (
        ({"type": "integer", "minimum": 5, "maximum": 4}, "no integer"),
        ({"type": "integer", "minimum": "1"}, "'minimum' must be a number"),
        ({"type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}, "no integer"),
    ):
        with pytest.raises(BadRequest, match=message):
            grammar_for_format(bad)
