"""Speculative decoding in the engine (issue 20), with real llama.cpp and the generated tiny models.

Two engines on the same GGUF, one speculating and one not, must give the same tokens for every
request: greedy and seeded, cut by num_predict or by a stop sequence in the middle of an accepted
draft, after a cancellation, and on a follow-up request that reuses the slot's prefix (rejected
drafts must be gone from the KV cache). The draft-model path runs with a draft of the same
vocabulary, and a draft of another vocabulary is refused at load.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ollamalike.runner.engine import Engine
from ollamalike.runner.llama import LoadError, load_model
from ollamalike.runner.request import Event, Request
from ollamalike.runner.sampling import SamplingParams
from ollamalike.runner.spec import RunnerSpec
from ollamalike.testmodels import write_tiny_llama
from tests.engine_helpers import generate, kv_matches_cache, loaded_engine, text_of, tok, wait_idle

CODE = '''def area(width, height):
    """The area of a rectangle."""
    return width * height


def perimeter(width, height):
    return 2 * (width + height)
'''
PROMPTS = [
    "Hello world, hello world, hello world",
    "the cat sat on the mat and the cat sat on the",
    "Rename area to surface in this code and print it again:\n" + CODE,
    "one two three four five six seven",
]


@pytest.fixture(scope="module")
def plain(tiny_chat_gguf: Path) -> Iterator[Engine]:
    with loaded_engine(tiny_chat_gguf, speculative="off") as e:
        yield e


@pytest.fixture(scope="module")
def ngram(tiny_chat_gguf: Path) -> Iterator[Engine]:
    with loaded_engine(tiny_chat_gguf, speculative="on") as e:
        yield e


@pytest.fixture(scope="module")
def spec(tiny_chat_gguf: Path) -> Iterator[Engine]:
    """Prompt lookup, and the target itself as the draft model: nearly every draft is accepted (a
    random tiny model seldom repeats itself), so steps accept several tokens at once."""
    with loaded_engine(tiny_chat_gguf, speculative="on", draft=tiny_chat_gguf) as e:
        yield e


@pytest.fixture(scope="module")
def draft_gguf(tiny_models_dir: Path) -> Path:
    """Another tiny llama (one layer, other weights) with the tiny chat model's vocabulary."""
    return write_tiny_llama(tiny_models_dir / "tiny-draft.gguf", n_layer=1, seed=99, name="tiny-draft")


@pytest.mark.parametrize("which", ["ngram", "spec"])
def test_greedy_output_is_identical_and_drafts_are_accepted(plain: Engine, which: str,
                                                            request: pytest.FixtureRequest) -> None:
    spec: Engine = request.getfixturevalue(which)
    assert plain.spec is None and spec.spec is not None
    for p in PROMPTS:
        for opts in ({}, {"repeat_penalty": 1.0}):
            want = generate(plain, tok(plain, p), num_predict=64, **opts)
            got = generate(spec, tok(spec, p), num_predict=64, **opts)
            assert got.tokens == want.tokens, (p, opts)
            assert got.text == want.text
            assert got.done["done_reason"] == want.done["done_reason"]
            kv_matches_cache(spec)
    stats = spec.spec.stats
    assert stats.accepted > 0 and stats.best >= 2, stats  # several tokens were accepted in one step


def test_default_penalties_and_seeded_sampling_are_identical(plain: Engine, spec: Engine) -> None:
    # The penalties see each emitted token once, and the sampler's RNG is drawn once per emitted
    # token, with or without drafts: sampled output is the same for a seed.
    for opts in ({"temperature": 0, "repeat_penalty": 1.1},
                 {"temperature": 0.8, "seed": 7, "repeat_penalty": 1.0},
                 {"temperature": 1.0, "seed": 3, "top_k": 0, "top_p": 1.0}):
        for p in PROMPTS[:2]:
            want = generate(plain, tok(plain, p), num_predict=48, **opts)
            got = generate(spec, tok(spec, p), num_predict=48, **opts)
            assert got.tokens == want.tokens, (p, opts)


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 13, 21])
def test_num_predict_is_exact_when_drafts_are_accepted(plain: Engine, spec: Engine, limit: int) -> None:
    p = PROMPTS[0] + f" limit {limit}"
    want = generate(plain, tok(plain, p), num_predict=limit)
    got = generate(spec, tok(spec, p), num_predict=limit)
    assert got.tokens == want.tokens and len(got.tokens) == limit
    assert got.done["done_reason"] == "length" and got.done["eval_count"] == limit
    kv_matches_cache(spec)


def test_stop_sequence_inside_an_accepted_draft(plain: Engine, spec: Engine) -> None:
    p = PROMPTS[1]
    full = generate(plain, tok(plain, p), num_predict=64)
    pieces = [text_of(plain, [t]) for t in full.tokens]
    checked = 0
    for cut in (6, 11, 17, 25):  # stop strings that begin in the middle of the output
        stop = "".join(pieces[cut : cut + 2]).strip()
        if not stop or stop not in full.text:
            continue
        want = generate(plain, tok(plain, p), num_predict=64, stop=[stop])
        got = generate(spec, tok(spec, p), num_predict=64, stop=[stop])
        assert got.text == want.text and stop not in got.text
        assert got.tokens == want.tokens
        assert got.done["done_reason"] == want.done["done_reason"] == "stop"
        assert got.done["stop_sequence"] == stop
        kv_matches_cache(spec)
        checked += 1
    assert checked >= 2


def test_follow_up_request_reuses_the_prefix_without_rejected_drafts(plain: Engine, spec: Engine) -> None:
    # A conversation: the next prompt is the last prompt, its answer and more. The slot's cached
    # prefix must hold exactly the accepted tokens, or the reused KV would change the answer.
    history = tok(spec, PROMPTS[2])
    for turn in range(3):
        want = generate(plain, history, num_predict=40)
        got = generate(spec, history, num_predict=40)
        assert got.tokens == want.tokens, turn
        assert got.done["cached_tokens"] == want.done["cached_tokens"]
        kv_matches_cache(spec)
        history = history + got.tokens + tok(spec, f" and then turn {turn}")[1:]


def test_cancel_mid_speculation_keeps_the_slot_consistent(plain: Engine, spec: Engine) -> None:
    # Cancelled from the engine thread right after the n-th chunk: with drafts nearly always accepted,
    # most chunks are emitted in the middle of a verification, whose remaining drafts must not go out.
    cancelled = 0
    for cut in range(2, 10):
        p = tok(spec, PROMPTS[0] + f" cancelled at {cut}")
        events: list[Event] = []
        req = Request(prompt=p, params=SamplingParams(temperature=0, num_predict=200), grammar=None,
                      emit=events.append)

        def emit(ev: Event, req: Request = req, events: list[Event] = events, cut: int = cut) -> None:
            events.append(ev)
            if len(events) == cut:
                spec.cancel(req)

        req.emit = emit
        spec.submit(req)
        wait_idle(spec, lambda req=req, events=events: req.cancelled or any(ev.get("done") for ev in events))  # type: ignore[misc]
        if any(ev.get("done") for ev in events):
            assert len(events) <= cut  # it ended before the n-th chunk
        else:
            cancelled += 1
            assert len(events) == cut, cut  # nothing went out after the cancel, not even the rest of a draft
        kv_matches_cache(spec)
        want = generate(plain, p, num_predict=30)
        got = generate(spec, p, num_predict=30)
        assert got.tokens == want.tokens
    assert cancelled >= 5


def test_draft_model_proposals_keep_output_identical(tiny_chat_gguf: Path, draft_gguf: Path,
                                                     plain: Engine) -> None:
    # The target as its own draft: every proposal is what the target picks (the draft's KV follows
    # the slot through acceptance and rejection); another tiny model: most proposals are rejected.
    for draft in (tiny_chat_gguf, draft_gguf):
        with loaded_engine(tiny_chat_gguf, speculative="on", draft=draft) as e:
            assert e.spec is not None
            e.spec.ngram = False  # only the draft model proposes (set before the first request)
            for p in PROMPTS[1:3]:
                want = generate(plain, tok(plain, p), num_predict=40)
                got = generate(e, tok(e, p), num_predict=40)
                assert got.tokens == want.tokens, (draft.name, p)
                kv_matches_cache(e)
            assert e.spec.stats.proposed > 0
            if draft == tiny_chat_gguf:
                assert e.spec.stats.best >= 2
                assert e.spec.stats.accepted >= e.spec.stats.proposed // 2, e.spec.stats


def test_a_draft_with_another_vocabulary_is_refused(tiny_chat_gguf: Path, tiny_embed_gguf: Path) -> None:
    with pytest.raises(LoadError, match=r"the draft model .* cannot be used with this model: its tokenizer"), \
            loaded_engine(tiny_chat_gguf, speculative="on", draft=tiny_embed_gguf):
        pass


def test_speculation_off_in_the_spec_leaves_the_engine_plain(tiny_chat_gguf: Path) -> None:
    spec = RunnerSpec(str(tiny_chat_gguf), ctx_size=256, threads=1, speculative="off", flash_attn="off")
    m = load_model(spec, [0.0])
    try:
        assert Engine(m, 1, speculative=spec.speculative).spec is None
        assert Engine(m, 1).spec is not None
        assert Engine(m, 1, speculative="exact").spec is None  # exact needs flash attention
    finally:
        m.close()
