"""One completion request as the engine takes it, and the events it emits back to the daemon."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ollamalike.runner.sampling import SamplingParams
from ollamalike.runner.vision import MediaPrompt

# An event for the daemon: {"content"}, {"done": True, ...} or {"error"}; the server sends it as JSON.
Event = dict[str, object]
Emit = Callable[[Event], None]


class StepGate(Protocol):
    """Held by the engine for each loop turn: what is emitted meanwhile may be delivered together at
    ``release`` (runner/outbox.py), never later."""

    def hold(self) -> None: ...

    def release(self) -> None: ...


class _NoGate:
    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


NO_GATE: StepGate = _NoGate()  # emits go out as they are made


@dataclass
class Request:
    """One completion. ``emit`` receives {"content"} chunks, then one {"done": True, ...} or {"error"}.

    ``logprobs``: None, or how many top alternatives each token's logprob entry lists (0-20); the
    entries ride on the content chunks as ``"logprobs"``. ``shift``: False ends the generation with
    "length" when the slot's context is full, instead of shifting it.
    """

    prompt: list[int]
    params: SamplingParams
    grammar: str | None
    emit: Emit
    cancelled: bool = False
    logprobs: int | None = None
    shift: bool = True
    media: MediaPrompt | None = None  # the prompt's image chunks (prompt holds their positions' ids)
