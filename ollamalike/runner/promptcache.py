"""The prompt cache: sequence states kept in host RAM for conversations whose slot was taken.

A slot keeps its KV cache after a request, so a conversation that comes back to its slot evaluates
only its new turn. When another request takes that slot, what it would discard is saved first: the
sequence's llama.cpp state (``llama_state_seq_get_data``) with the tokens it holds (the slot's
``cache``, the only truth: speculative drafts beyond it are dropped before saving). When a request
is admitted and a saved state shares a longer prefix with its prompt than the chosen slot does, the
state is written back into the slot's sequence (``llama_state_seq_set_data``) and only the rest is
evaluated. A state is a copy of KV cells, so a restored prefix is bit for bit what the slot held.

``StateLru`` is the bounded store (pure Python, no llama.cpp calls): entries keyed by their tokens,
found by longest common prefix (a linear scan: the bound keeps it short), bytes counted as the
states' sizes, the least recently used evicted first. ``PromptCache`` is the engine's hook over it.
Any failure is logged and skipped; a failed restore leaves the sequence empty (evaluated afresh).
"""

from __future__ import annotations

import ctypes
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

import llama_cpp
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from ollamalike.runner.llama import Loaded
    from ollamalike.runner.slots import Slot

# Below this many tokens, evaluating again costs about what copying the state does: such tails are
# not saved, and a restore must gain at least this many tokens over the slot's own prefix.
MIN_TOKENS = 32

Tokens = npt.NDArray[np.int64]
R = TypeVar("R")


def as_tokens(tokens: Sequence[int]) -> Tokens:
    return np.asarray(tokens, dtype=np.int64)


def common_prefix(a: Tokens, b: Tokens) -> int:
    k = min(len(a), len(b))
    differ = np.flatnonzero(a[:k] != b[:k])
    return int(differ[0]) if len(differ) else k


@dataclass(eq=False)
class Entry:
    tokens: Tokens
    state: bytearray

    @property
    def size(self) -> int:
        return len(self.state)


@dataclass
class CacheStats:
    saved: int = 0
    restored: int = 0
    restored_tokens: int = 0
    evicted: int = 0
    too_large: int = 0
    failed: int = 0


@dataclass
class StateLru:
    """Saved states, at most ``limit`` bytes of them; the oldest used goes first."""

    limit: int
    entries: OrderedDict[bytes, Entry] = field(default_factory=OrderedDict)
    used: int = 0
    stats: CacheStats = field(default_factory=CacheStats)

    def lookup(self, prompt: Tokens, better_than: int) -> tuple[Entry, int] | None:
        """The entry sharing the longest prefix with ``prompt``, if longer than ``better_than``."""
        best: tuple[Entry, int] | None = None
        for entry in self.entries.values():
            n = common_prefix(entry.tokens, prompt)
            if n > better_than and (best is None or n > best[1]):
                best = entry, n
        return best

    def covers(self, tokens: Tokens) -> bool:
        """An entry already holds ``tokens`` (or more after them): saving them again adds nothing."""
        for entry in self.entries.values():
            if len(entry.tokens) >= len(tokens) and common_prefix(entry.tokens, tokens) == len(tokens):
                self.touch(entry)
                return True
        return False

    def reserve(self, size: int) -> bool:
        """Evict the oldest until ``size`` more bytes fit. False (nothing evicted) when it never can."""
        if size > self.limit:
            self.stats.too_large += 1
            return False
        while self.entries and self.used + size > self.limit:
            _, old = self.entries.popitem(last=False)
            self.used -= old.size
            self.stats.evicted += 1
        return True

    def put(self, tokens: Tokens, state: bytearray) -> Entry | None:
        """Store a state; entries it extends (their tokens are a prefix of ``tokens``) are dropped."""
        if not self.reserve(len(state)):
            return None
        for old in [e for e in self.entries.values() if common_prefix(e.tokens, tokens) == len(e.tokens)]:
            self.drop(old)
        entry = Entry(tokens, state)
        key = tokens.tobytes()
        replaced = self.entries.pop(key, None)
        if replaced is not None:
            self.used -= replaced.size
        self.entries[key] = entry
        self.used += entry.size
        self.stats.saved += 1
        return entry

    def touch(self, entry: Entry) -> None:
        key = entry.tokens.tobytes()
        if key in self.entries:  # an entry being restored may have been evicted meanwhile
            self.entries.move_to_end(key)

    def drop(self, entry: Entry) -> None:
        if self.entries.pop(entry.tokens.tobytes(), None) is not None:
            self.used -= entry.size

    def report(self) -> dict[str, int]:
        s = self.stats
        return {"limit": self.limit, "bytes": self.used, "entries": len(self.entries), "saved": s.saved,
                "restored": s.restored, "restored_tokens": s.restored_tokens, "evicted": s.evicted,
                "too_large": s.too_large, "failed": s.failed}


def _log(message: str) -> None:
    print(f"prompt cache: {message}", file=sys.stderr, flush=True)


class PromptCache:
    """The engine's hook: called as a request is admitted to a slot, on the engine thread."""

    def __init__(self, loaded: Loaded, limit: int) -> None:
        self.m = loaded
        self.lru = StateLru(limit)
        # A sliding-window model's saved state holds only the window's cells for its SWA layers
        # (llama.cpp leaves out the masked ones), so it can be cut back by at most its last token.
        self.windowed = llama_cpp.llama_model_n_swa(loaded.model) > 0
        # Measured on Gemma 3: with flash attention, a restored window gives other logits than the
        # sequence it was saved from (without it they are bit-identical), so such a model goes uncached.
        flash = loaded.opts.flash_attn if loaded.opts is not None else "off"
        self.usable = not (self.windowed and flash != "off")
        if not self.usable:
            _log("off for this model: a sliding-window state does not restore exactly with flash attention")

    def before_admit(self, slot: Slot[R], prompt: Sequence[int], n: int, restore: bool) -> int:
        """``slot`` is about to serve ``prompt``, with which it shares ``n`` tokens. Saves what the slot
        would lose, brings back a longer cached prefix when there is one (``restore``: the prompt has
        no images), and returns the prefix the slot now shares with the prompt."""
        if not self.usable:
            return n
        found = None
        if restore and len(prompt) > n + MIN_TOKENS:
            found = self.lru.lookup(as_tokens(prompt), n + MIN_TOKENS - 1)
            if found is not None and self.windowed and min(found[1], len(prompt) - 1) < len(found[0].tokens) - 1:
                found = None
        if len(slot.cache) - n >= MIN_TOKENS:
            self.save(slot)
        if found is None:
            return n
        entry, shared = found
        if not self.restore(slot, entry):
            return 0
        self.lru.stats.restored_tokens += min(shared, len(prompt) - 1)
        return shared

    def save(self, slot: Slot[R]) -> bool:
        tokens = as_tokens(slot.cache)
        if not len(tokens) or tokens.min() < 0:
            return False  # image positions: their cells are not plain token evaluations
        if self.lru.covers(tokens):
            return False
        m, seq = self.m, slot.seq
        try:
            if llama_cpp.llama_memory_seq_pos_max(m.mem, seq) >= len(tokens):
                # Cells past the slot's tokens (rejected speculative drafts) are not part of its state.
                llama_cpp.llama_memory_seq_rm(m.mem, seq, len(tokens), -1)
            # (A restored sliding-window state starts at its window: its state is the same either way.)
            if ((not self.windowed and llama_cpp.llama_memory_seq_pos_min(m.mem, seq) != 0)
                    or llama_cpp.llama_memory_seq_pos_max(m.mem, seq) != len(tokens) - 1):
                raise RuntimeError("the sequence's cells do not match its tokens")
            size = int(llama_cpp.llama_state_seq_get_size(m.ctx, seq))
            if size <= 0:
                raise RuntimeError("llama_state_seq_get_size returned 0")
            if not self.lru.reserve(size):
                return False
            state = bytearray(size)
            got = llama_cpp.llama_state_seq_get_data(m.ctx, (ctypes.c_uint8 * size).from_buffer(state), size, seq)
            if got != size:
                raise RuntimeError(f"llama_state_seq_get_data wrote {got} of {size} bytes")
        except Exception as e:  # the slot's KV is untouched: it only goes unsaved
            self.lru.stats.failed += 1
            _log(f"not saved (slot {seq}, {len(tokens)} tokens): {e}")
            return False
        return self.lru.put(tokens, state) is not None

    def restore(self, slot: Slot[R], entry: Entry) -> bool:
        """Replace the slot's sequence by ``entry``. On failure the sequence is left empty."""
        m, seq = self.m, slot.seq
        slot.cache.clear()
        try:
            llama_cpp.llama_memory_seq_rm(m.mem, seq, -1, -1)
            src = (ctypes.c_uint8 * entry.size).from_buffer(entry.state)
            got = llama_cpp.llama_state_seq_set_data(m.ctx, src, entry.size, seq)
            if got != entry.size:
                raise RuntimeError(f"llama_state_seq_set_data read {got} of {entry.size} bytes")
            if llama_cpp.llama_memory_seq_pos_max(m.mem, seq) != len(entry.tokens) - 1:
                raise RuntimeError("the restored cells do not match the entry's tokens")
        except Exception as e:
            llama_cpp.llama_memory_seq_rm(m.mem, seq, -1, -1)
            self.lru.drop(entry)
            self.lru.stats.failed += 1
            _log(f"not restored (slot {seq}, {len(entry.tokens)} tokens), evaluating afresh: {e}")
            return False
        slot.cache.extend(entry.tokens.tolist())
        self.lru.touch(entry)
        self.lru.stats.restored += 1
        return True

    def report(self) -> dict[str, int]:
        return self.lru.report()
