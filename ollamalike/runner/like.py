"""``RunnerLike``: what the scheduler and the inference service use of a runner.

``runner.client.RunnerProcess`` (a real runner process) is one; test fakes implement the same
Protocol, the way httpx's MockTransport implements its transport interface. Nothing here imports
llama_cpp, so the scheduler and the inference service can name the type without loading it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from ollamalike.jsontypes import JSONObject

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
        self, prompt: str | list[int], options: Mapping[str, object] | None = None,
        format: str | JSONObject | None = None, images: Sequence[Media] = (), *, logprobs: int | None = None,
        shift: bool = True,
    ) -> AsyncIterator[JSONObject]:
        """Chunks ``{"content": ...}``, then one ``{"done": True, ...}`` with the runner's stats
        (``runner.engine.Engine._finish`` names them), as decoded from the runner's NDJSON.

        ``images`` go where the text prompt's ``[img-N]`` tags are (a model with a projector).
        ``logprobs`` (None: off) is how many top alternatives each token's entry lists; the
        entries come on the content chunks as ``"logprobs"``. ``shift=False``: a full context ends
        the generation with "length" instead of shifting it."""
        ...

    async def tokenize(self, text: str, add_special: bool = True, images: Sequence[Media] = ()) -> list[int]: ...

    async def detokenize(self, tokens: list[int]) -> str: ...

    async def embed(self, inputs: list[str], truncate: bool = True) -> tuple[list[list[float]], int]: ...

    async def stop(self) -> None: ...
