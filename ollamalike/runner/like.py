"""``RunnerLike``: what the scheduler and the inference service use of a runner.

``runner.client.RunnerProcess`` (a real runner process) is one; test fakes implement the same
Protocol, the way httpx's MockTransport implements its transport interface. Nothing here imports
llama_cpp, so the scheduler and the inference service can name the type without loading it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ollamalike.media import Media


class RunnerLike(Protocol):
    """A loaded model's runner: token streams, tokenizer, embeddings, its process facts."""

    @property
    def pid(self) -> int: ...

    @property
    def alive(self) -> bool: ...

    # ``{"size": bytes, "size_vram": bytes}`` as the runner measured them (zeros when unknown).
    @property
    def memory(self) -> dict[str, int]: ...

    def completion(
        self, prompt: str | list[int], options: dict[str, Any] | None = None,
        format: str | dict[str, Any] | None = None, images: Sequence[Media] = (),
    ) -> AsyncIterator[dict[str, Any]]:
        """Chunks ``{"content": ...}``, then one ``{"done": True, ...}`` with the runner's stats.
        ``images`` go where the text prompt's ``[img-N]`` tags are (a model with a projector)."""
        ...

    async def tokenize(self, text: str, add_special: bool = True, images: Sequence[Media] = ()) -> list[int]: ...

    async def detokenize(self, tokens: list[int]) -> str: ...

    async def embed(self, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], int]: ...

    async def stop(self) -> None: ...
