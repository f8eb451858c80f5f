"""Which prompt tokens go into an engine step: a bounded prefill budget, shared out oldest first.

While streams generate, a step's length is their time between tokens, so prompt chunks get a bounded
share of the batch (``prefill_budget``); with nothing generating, the whole batch. Prompts are served
in admission order, the oldest first: a request that came later never overtakes an earlier one, and
several short prompts share one step. A prompt is chunked up to, not including, its last token (the
engine decodes that one in a later step, as it does when the rest came from the prefix cache), and a
chunk stops where the prompt's next image starts (that is decoded on its own). Pure Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ollamalike.runner.request import Request
    from ollamalike.runner.slots import Slot

# While any stream generates, prompt chunks take at most this share of the batch per step: at 512 a
# step stays well under twice a decoding step on a small CPU, and four short prompts still share one.
PREFILL_SHARE = 4


def prefill_budget(n_batch: int, generating: int) -> int:
    """Prompt tokens a step may take beside ``generating`` single tokens (generated or a prompt's last)."""
    room = max(0, n_batch - generating)
    if generating == 0:
        return room
    return min(room, max(1, n_batch // PREFILL_SHARE))


def plan_prefill(slots: Sequence[Slot[Request]], budget: int) -> dict[int, int]:
    """How many prompt tokens each slot (by sequence id) evaluates this step, within ``budget``."""
    plan: dict[int, int] = {}
    for slot in sorted((s for s in slots if s.req is not None and s.in_prompt), key=lambda s: s.admitted):
        body = len(slot.prompt) - 1
        if slot.next_token is not None or slot.prompt_done >= body:
            continue
        if budget <= 0:
            break
        take = min(budget, body - slot.prompt_done)
        media = slot.req.media if slot.req is not None else None
        if media is not None:
            take = min(take, media.next_start(slot.prompt_done) - slot.prompt_done)
            if take <= 0:
                continue  # an image comes next: it is decoded on its own (vision.advance_images)
        plan[slot.seq] = take
        budget -= take
    return plan
