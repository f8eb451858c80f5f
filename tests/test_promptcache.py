"""The prompt cache (runner/promptcache.py): the LRU on its own, and real llama.cpp sequence states.

The in-process tests load a tiny model (head size 32, so a q8_0 KV cache is really used with flash
attention) and check that a state saved from one sequence and written into another gives the very
same logits, that cells past the slot's tokens are left out, and that a corrupt state is refused
with the sequence left empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import llama_cpp
import numpy as np
import numpy.typing as npt
import pytest

from ollamalike.config import load_config
from ollamalike.runner.llama import Loaded, load_model
from ollamalike.runner.promptcache import MIN_TOKENS, PromptCache, StateLru, as_tokens
from ollamalike.runner.slots import Slot
from ollamalike.runner.spec import RunnerSpec


def toks(start: int, n: int) -> npt.NDArray[np.int64]:
    return as_tokens(range(start, start + n))


# --- the LRU ------------------------------------------------------------------------------------

def test_lru_is_bounded_and_evicts_the_oldest_first() -> None:
    lru = StateLru(limit=250)
    for i in range(3):
        assert lru.put(toks(100 * i, 10), bytearray(100)) is not None
    assert lru.used == 200 and len(lru.entries) == 2  # the third evicted the first
    assert lru.stats.evicted == 1
    assert lru.lookup(toks(0, 10), 0) is None
    assert lru.lookup(toks(100, 12), 0) is not None and lru.lookup(toks(200, 12), 0) is not None


def test_lru_touch_keeps_an_entry_and_lookup_takes_the_longest_prefix() -> None:
    lru = StateLru(limit=300)
    a = lru.put(toks(0, 10), bytearray(100))
    b = lru.put(toks(0, 5), bytearray(100))  # not a prefix-extension of a: a stays
    lru.put(toks(500, 10), bytearray(100))
    assert a is not None and b is not None
    found = lru.lookup(as_tokens([*range(0, 8), 99]), 0)
    assert found is not None and found[0] is a and found[1] == 8
    assert lru.lookup(as_tokens([*range(0, 8), 99]), 8) is None  # must beat the slot's own prefix
    lru.touch(b)
    lru.put(toks(900, 10), bytearray(100))  # evicts the least recently used: a, not b
    assert lru.lookup(toks(0, 10), 5) is None and lru.lookup(toks(0, 5), 4) is not None
    assert lru.used == 300 and lru.used == sum(e.size for e in lru.entries.values())


def test_an_entry_larger_than_the_bound_is_not_stored() -> None:
    lru = StateLru(limit=100)
    assert lru.put(toks(0, 10), bytearray(60)) is not None
    assert lru.put(toks(50, 10), bytearray(101)) is None
    assert lru.stats.too_large == 1 and len(lru.entries) == 1 and lru.used == 60  # nothing evicted for it


def test_a_longer_state_supersedes_its_prefixes_and_a_covered_one_is_not_saved() -> None:
    lru = StateLru(limit=10_000)
    lru.put(toks(0, 10), bytearray(100))
    lru.put(toks(0, 20), bytearray(200))  # the conversation went on: the shorter entry is dropped
    assert len(lru.entries) == 1 and lru.used == 200
    assert lru.covers(toks(0, 15)) and lru.covers(toks(0, 20)) and not lru.covers(toks(0, 21))


def test_the_daemon_passes_the_setting_to_the_runner() -> None:
    from ollamalike.options import Options
    from ollamalike.scheduler.plan import plan_load
    from tests.fakes import resolved_model

    assert plan_load(resolved_model(), Options(), load_config({})).spec.prompt_cache == 1 << 30
    off = plan_load(resolved_model(), Options(), load_config({"OLLAMALIKE_PROMPT_CACHE": "0"}))
    assert off.spec.prompt_cache == 0
    small = load_config({"OLLAMALIKE_PROMPT_CACHE": "64MiB"})
    assert plan_load(resolved_model(), Options(), small).spec.prompt_cache == 64 << 20
    assert plan_load(resolved_model(), Options(), small, embedding=True).spec.prompt_cache == 0


# --- real sequence states -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def head32_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ollamalike.testmodels import write_tiny_llama

    return write_tiny_llama(tmp_path_factory.mktemp("pc") / "head32.gguf", n_head=2, n_head_kv=1)


@pytest.fixture(scope="module", params=[("f16", "off"), ("f16", "on"), ("q8_0", "on")],
                ids=["f16", "f16-flash", "q8_0-flash"])
def loaded(request: pytest.FixtureRequest, head32_gguf: Path) -> Iterator[Loaded]:
    kv, flash = request.param
    m = load_model(RunnerSpec(str(head32_gguf), ctx_size=512, num_parallel=2, threads=1, flash_attn=flash,
                              kv_cache_type=kv), [0.0])
    yield m
    m.close()


def decode(m: Loaded, tokens: list[int], seq: int, pos: int) -> npt.NDArray[np.float32]:
    """Decode ``tokens`` at ``pos..`` in one batch; the last token's logits."""
    batch = llama_cpp.llama_batch_init(len(tokens), 0, 1)
    try:
        for i, t in enumerate(tokens):
            batch.token[i] = t
            batch.pos[i] = pos + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = seq
            batch.logits[i] = i == len(tokens) - 1
        batch.n_tokens = len(tokens)
        assert llama_cpp.llama_decode(m.ctx, batch) == 0
        row = llama_cpp.llama_get_logits_ith(m.ctx, len(tokens) - 1)
        return np.ctypeslib.as_array(row, shape=(m.n_vocab,)).copy()
    finally:
        llama_cpp.llama_batch_free(batch)


def fresh(m: Loaded) -> tuple[Slot[object], Slot[object]]:
    assert m.mem is not None
    llama_cpp.llama_memory_clear(m.mem, True)
    return Slot(seq=0), Slot(seq=1)


PROMPT = [1, *range(40, 40 + 3 * MIN_TOKENS)]


def test_a_state_restored_into_another_sequence_gives_the_same_logits(loaded: Loaded) -> None:
    m = loaded
    a, b = fresh(m)
    decode(m, PROMPT, 0, 0)
    a.cache = list(PROMPT)
    cache = PromptCache(m, 1 << 24)
    assert cache.save(a)
    entry = next(iter(cache.lru.entries.values()))
    assert cache.lru.used == entry.size == llama_cpp.llama_state_seq_get_size(m.ctx, 0)
    assert cache.restore(b, entry) and b.cache == PROMPT
    assert llama_cpp.llama_memory_seq_pos_max(m.mem, 1) == len(PROMPT) - 1
    # The next token, decoded alone in each sequence at the same position: bit for bit the same.
    after_a = decode(m, [77], 0, len(PROMPT))
    after_b = decode(m, [77], 1, len(PROMPT))
    assert np.array_equal(after_a, after_b)
    assert cache.report()["restored"] == 1 and cache.report()["failed"] == 0


def test_cells_past_the_slots_tokens_are_not_saved(loaded: Loaded) -> None:
    m = loaded
    a, b = fresh(m)
    decode(m, [*PROMPT, 5, 6, 7], 0, 0)  # three "rejected drafts" after the slot's tokens
    a.cache = list(PROMPT)
    cache = PromptCache(m, 1 << 24)
    assert cache.save(a)
    assert llama_cpp.llama_memory_seq_pos_max(m.mem, 0) == len(PROMPT) - 1
    entry = next(iter(cache.lru.entries.values()))
    assert cache.restore(b, entry)
    assert llama_cpp.llama_memory_seq_pos_max(m.mem, 1) == len(PROMPT) - 1


def test_a_corrupt_state_leaves_the_sequence_empty(loaded: Loaded) -> None:
    m = loaded
    a, b = fresh(m)
    decode(m, PROMPT, 0, 0)
    decode(m, PROMPT[:10], 1, 0)
    b.cache = PROMPT[:10]
    a.cache = list(PROMPT)
    cache = PromptCache(m, 1 << 24)
    assert cache.save(a)
    entry = next(iter(cache.lru.entries.values()))
    del entry.state[len(entry.state) // 2 :]  # cut short: llama.cpp reads past its end
    assert not cache.restore(b, entry)
    assert b.cache == [] and llama_cpp.llama_memory_seq_pos_max(m.mem, 1) == -1
    assert cache.report()["failed"] == 1 and cache.report()["entries"] == 0  # a bad entry is dropped
    assert llama_cpp.llama_memory_seq_pos_max(m.mem, 0) == len(PROMPT) - 1  # the other sequence is untouched


def test_before_admit_saves_the_lost_tail_and_restores_the_longer_prefix(loaded: Loaded) -> None:
    m = loaded
    slot, _ = fresh(m)
    cache = PromptCache(m, 1 << 24)
    decode(m, PROMPT, 0, 0)
    slot.cache = list(PROMPT)
    other = [1, *range(300, 300 + 2 * MIN_TOKENS)]
    assert cache.before_admit(slot, other, 1, restore=True) == 1  # nothing better cached: the slot's own prefix
    assert cache.report()["saved"] == 1
    # The engine cuts the slot back to the shared prefix and evaluates the other prompt.
    assert llama_cpp.llama_memory_seq_rm(m.mem, 0, 1, -1)
    decode(m, other[1:], 0, 1)
    slot.cache = list(other)
    back = [*PROMPT, 9, 9, 9]
    assert cache.before_admit(slot, back, 1, restore=True) == len(PROMPT)
    assert slot.cache == PROMPT and cache.report()["saved"] == 2 and cache.report()["restored"] == 1
    assert cache.before_admit(slot, back, len(PROMPT), restore=False) == len(PROMPT)  # images: never restored


def test_a_sliding_window_state_is_restored_only_where_its_window_suffices(gemma_gguf: Path) -> None:
    """Gemma 3 (sliding window 512): a saved state holds only the window's cells of its SWA layers. It
    gives the same logits when the prompt goes on from its end, and is not restored to be cut back."""
    m = load_model(RunnerSpec(str(gemma_gguf), ctx_size=2048, num_parallel=2, threads=2, flash_attn="off"), [0.0])
    try:
        assert m.mem is not None and llama_cpp.llama_model_n_swa(m.model) == 512
        rng = np.random.default_rng(0)
        prompt = [2] + [int(x) for x in rng.integers(1000, 20000, 699)]
        for i in range(0, len(prompt), 256):
            decode(m, prompt[i : i + 256], 0, i)
        a, b = Slot[object](seq=0, cache=list(prompt)), Slot[object](seq=1)
        cache = PromptCache(m, 1 << 30)
        assert cache.windowed and cache.save(a)
        cut = [*prompt[:600], *range(50, 50 + 2 * MIN_TOKENS)]
        assert cache.before_admit(b, cut, 0, restore=True) == 0 and cache.report()["restored"] == 0
        assert cache.before_admit(b, [*prompt, 777], 0, restore=True) == len(prompt)
        assert llama_cpp.llama_memory_seq_pos_min(m.mem, 1) > 0  # only the window came back
        assert np.array_equal(decode(m, [777], 0, len(prompt)), decode(m, [777], 1, len(prompt)))
        b.cache.extend([777, *range(60, 60 + MIN_TOKENS)])  # a restored window is saved again, later
        decode(m, b.cache[len(prompt) + 1 :], 1, len(prompt) + 1)
        assert cache.save(b) and cache.report()["failed"] == 0 and cache.report()["entries"] == 1
    finally:
        m.close()


def test_a_sliding_window_model_with_flash_attention_is_not_cached(gemma_gguf: Path) -> None:
    """With flash attention a restored Gemma 3 window does not give its sequence's logits back, so the
    cache leaves such a model alone: nothing saved, nothing restored."""
    m = load_model(RunnerSpec(str(gemma_gguf), ctx_size=1024, num_parallel=2, threads=2, flash_attn="on"), [0.0])
    try:
        prompt = [2, *range(1000, 1000 + 3 * MIN_TOKENS)]
        decode(m, prompt, 0, 0)
        cache = PromptCache(m, 1 << 30)
        assert not cache.usable
        slot = Slot[object](seq=0, cache=list(prompt))
        assert cache.before_admit(slot, [2, 7, *range(50, 50 + 2 * MIN_TOKENS)], 1, restore=True) == 1
        assert cache.report()["saved"] == 0 and cache.report()["entries"] == 0
    finally:
        m.close()
