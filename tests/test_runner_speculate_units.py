"""Speculative decoding's pure parts (issue 20): the n-gram index, the adaptive draft length, and the
knob from the environment through the scheduler's plan into the runner spec (a DRAFT layer included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamalike.config import load_config
from ollamalike.errors import BadRequest, RunnerError
from ollamalike.runner.spec import RunnerSpec
from ollamalike.runner.speculate import (
    COOLDOWN_MAX,
    DRAFT_MAX,
    DRAFT_MIN,
    DRAFT_START,
    NGRAM_MIN,
    NgramIndex,
    Speculator,
)
from ollamalike.scheduler.plan import plan_load
from tests.fakes import resolved_model


def index(tokens: list[int]) -> NgramIndex:
    ix = NgramIndex()
    ix.extend(tokens)
    return ix


@pytest.mark.parametrize("history, k, want", [
    ([1, 2, 3, 4, 1, 2, 3], 3, [4, 1, 2]),  # the tail 1 2 3 was followed by 4 1 2
    ([1, 2, 3, 4, 1, 2, 3], 1, [4]),
    ([5, 6, 7, 8, 9, 5, 6, 7], 4, [8, 9, 5, 6]),
    ([5, 6, 7, 8, 9, 5, 6, 7, 8, 9, 5, 6, 7], 8, [8, 9, 5, 6, 7]),  # cut at the end of the history
    ([5, 6, 7, 8, 9, 6, 7], 4, []),  # a 2-token match proposes nothing (NGRAM_MIN)
    ([9, 1, 2, 3, 5, 1, 2, 3, 6, 7, 1, 2, 3], 2, [6, 7]),  # the most recent occurrence wins
    ([4, 0, 1, 2, 3, 8, 5, 1, 2, 3, 9, 0, 1, 2, 3], 2, [8, 5]),  # the longest matching tail wins
    ([1, 2, 3], 4, []),  # nothing repeats
    ([1, 2, 3, -1, 7, 1, 2, 3], 3, []),  # an image placeholder is never proposed
    ([1, 2, 3, 4, -1, 1, 2, 3], 3, [4]),
    ([], 3, []),
])
def test_ngram_lookup(history: list[int], k: int, want: list[int]) -> None:
    assert NGRAM_MIN == 3
    assert index(history).propose(k) == want


def test_ngram_index_grows_incrementally() -> None:
    ix = index([10, 11, 12, 13, 14])
    assert ix.propose(2) == []
    ix.extend([10, 11, 12])
    assert ix.propose(2) == [13, 14]
    ix.extend([13, 14])
    assert ix.propose(3) == [10, 11, 12]


def test_adaptive_draft_length_and_cooldown() -> None:
    sp: Speculator[object] = Speculator(1, 4096)  # type: ignore[type-var]
    from ollamalike.runner.speculate import _SlotState

    st = _SlotState(admitted=1)
    assert st.k == DRAFT_START
    sp._adapt(st, st.k, st.k)  # all accepted: the next draft may be longer
    assert st.k == 2 * DRAFT_START
    for _ in range(5):
        sp._adapt(st, st.k, st.k)
    assert st.k == DRAFT_MAX
    sp._adapt(st, 8, 3)  # a partial draft: one more than was accepted
    assert st.k == 4 and st.wait == 0
    waits = []
    for _ in range(7):  # nothing accepted: wait 1, 2, 4 ... steps, capped
        sp._adapt(st, 2, 0)
        waits.append(st.wait)
    assert waits == [1, 2, 4, 8, 16, 16, 16] and COOLDOWN_MAX == 16 and st.k == DRAFT_MIN
    sp._adapt(st, 2, 1)
    assert st.misses == 0
    assert (sp.stats.proposed, sp.stats.best) == (4 + 8 + 4 * 16 + 8 + 8 * 2, 16)


def test_spec_fields_round_trip_and_default_on() -> None:
    spec = RunnerSpec("/m.gguf")
    assert spec.speculative == "on" and spec.draft_model_path == ""
    other = RunnerSpec("/m.gguf", speculative="exact", draft_model_path="/d.gguf")
    assert RunnerSpec.from_json(other.to_json()) == other
    assert other != RunnerSpec("/m.gguf", speculative="exact")  # a different draft: another runner
    with pytest.raises(RunnerError, match="invalid choice: 'maybe' for speculative"):
        RunnerSpec("/m.gguf", speculative="maybe")  # type: ignore[arg-type]


@pytest.mark.parametrize("env, mode", [({}, "on"), ({"OLLAMALIKE_SPECULATIVE": "0"}, "off"),
                                       ({"OLLAMALIKE_SPECULATIVE": "false"}, "off"),
                                       ({"OLLAMA_SPECULATIVE": "off"}, "off"),
                                       ({"OLLAMALIKE_SPECULATIVE": "1"}, "on"),
                                       ({"OLLAMALIKE_SPECULATIVE": " Exact "}, "exact")])
def test_config_knob(env: dict[str, str], mode: str, tmp_path: Path) -> None:
    assert load_config({"OLLAMALIKE_HOME": str(tmp_path), **env}).speculative == mode


def test_config_knob_refuses_nonsense(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="OLLAMALIKE_SPECULATIVE must be on, off or exact .*, got 'sometimes'"):
        load_config({"OLLAMALIKE_HOME": str(tmp_path), "OLLAMALIKE_SPECULATIVE": "sometimes"})


def test_plan_carries_the_knob_and_the_draft_layer(tmp_path: Path) -> None:
    on = load_config({"OLLAMALIKE_HOME": str(tmp_path)})
    off = load_config({"OLLAMALIKE_HOME": str(tmp_path), "OLLAMALIKE_SPECULATIVE": "0"})
    plain = resolved_model()
    drafted = resolved_model(draft_path=Path("/blobs/sha256-dd"))
    other = resolved_model(draft_path=Path("/blobs/sha256-ee"))
    opts = {"num_ctx": 2048}
    a = plan_load(plain, opts, on).spec  # type: ignore[arg-type]
    b = plan_load(drafted, opts, on).spec  # type: ignore[arg-type]
    c = plan_load(other, opts, on).spec  # type: ignore[arg-type]
    d = plan_load(drafted, opts, off).spec  # type: ignore[arg-type]
    assert isinstance(a, RunnerSpec) and isinstance(b, RunnerSpec) and isinstance(d, RunnerSpec)
    assert a.speculative == "on" and a.draft_model_path == ""
    assert b.draft_model_path == "/blobs/sha256-dd" and b != a and b != c
    assert d.speculative == "off" and d.draft_model_path == ""  # off: neither prompt lookup nor the draft


def test_on_a_cpu_several_streams_in_a_step_get_no_drafts() -> None:
    """A batch's cost grows with its rows on a CPU, so drafts are added only when one stream generates."""
    from typing import Any

    from ollamalike.runner.slots import Slot

    sp: Speculator[Any] = Speculator(2, 512, max_streams=1)
    a: Slot[Any] = Slot(seq=0, req=object(), logit_index=0)
    b: Slot[Any] = Slot(seq=1, req=object(), logit_index=1)
    asked: list[int] = []

    def history(slot: Slot[Any]) -> tuple[list[int], list[int]] | None:
        asked.append(slot.seq)
        return None  # a slot that may not speculate: the batch is never touched

    assert sp.add_drafts([a, b], None, 2, 512, history) == 2  # type: ignore[arg-type]
    assert asked == []  # two streams: not even looked at
    b.logit_index = -1
    assert sp.add_drafts([a, b], None, 1, 512, history) == 1  # type: ignore[arg-type]
    assert asked == [0]  # a lone stream is considered
    unbounded: Speculator[Any] = Speculator(2, 512)
    b.logit_index = 1
    assert unbounded.add_drafts([a, b], None, 2, 512, history) == 2  # type: ignore[arg-type]
    assert asked == [0, 0, 1]


def test_the_engine_on_a_cpu_drafts_for_a_lone_stream(tiny_chat_gguf: Path) -> None:
    from tests.engine_helpers import loaded_engine

    with loaded_engine(tiny_chat_gguf, speculative="on") as engine:
        assert engine.spec is not None and engine.spec.max_streams == 1
