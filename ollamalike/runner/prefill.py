"""Which prompt tokens go into an engine step: a bounded prefill budget, shared out oldest first.

While streams generate, a step's length is their time between tokens, so prompt chunks get a bounded
share of the batch (``prefill_budget``); with nothing generating, the whole batch. Prompts are served
in admission order, the oldest first: a request that came later never overtakes an earlier one, and
several short prompts share one step. When the step is shared anyway (a stream generates beside it, or
several prompts share it), a prompt's last chunk takes its last token too, with logits, so the request
gets its first token from this step rather than the next. A lone prompt stops before its last token,
which the engine decodes in a step of its own, as it does when the rest came from the prefix cache: a
token's logits depend on the batch it is computed in, so a lone request's greedy output is the same
fresh and cached. A chunk stops where the prompt's next image starts (that is decoded on its own), and
a prompt with images always leaves its last token for a step of its own. Pure Python.
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


def plan_prefill(slots: Sequence[Slot[Request]], budget: int, shared: bool = False) -> dict[int, int]:
    """How many prompt tokens each slot (by sequence id) evaluates this step, within ``budget``.

    ``shared``: a stream generates in this step. Then, or when several prompts wait, a chunk that
    reaches its prompt's end includes the last token (see the module's docstring)."""
    waiting = sorted((s for s in slots if s.req is not None and s.in_prompt and s.next_token is None
                      and s.prompt_done < len(s.prompt)), key=lambda s: s.admitted)
    finish = shared or len(waiting) > 1
    plan: dict[int, int] = {}
    for slot in waiting:
        media = slot.req.media if slot.req is not None else None
        body = len(slot.prompt) - (0 if finish and media is None else 1)
        if slot.prompt_done >= body:
            continue
        if budget <= 0:
            break
        take = min(budget, body - slot.prompt_done)
        if media is not None:
            take = min(take, media.next_start(slot.prompt_done) - slot.prompt_done)
            if take <= 0:
                continue  # an image comes next: it is decoded on its own (vision.advance_images)
        plan[slot.seq] = take
        budget -= take
    return plan
