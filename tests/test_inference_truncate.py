"""Chat prompts longer than the context: the system prompt and the latest messages are kept, the
oldest turns dropped (with the real template renderer and a tokenizer stand-in that counts words)."""

from __future__ import annotations

from typing import Any

from ollamalike.inference.service import _fit_chat
from tests.fakes import StubRunner, resolved_model


class WordTokenizer(StubRunner):
    """One token per whitespace-separated word: enough to check which messages are kept."""

    async def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        return list(range(len(text.split())))


MODEL = resolved_model(template="{{ range .Messages }}{{ .Role }}: {{ .Content }}\n{{ end }}assistant:")


def conversation(turns: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = [{"role": "system", "content": "SYS rules here"}]
    for i in range(turns):
        msgs += [{"role": "user", "content": f"Q{i} " + "w " * 8}, {"role": "assistant", "content": f"A{i} " + "w " * 8}]
    return msgs + [{"role": "user", "content": "LAST question"}]


async def test_fits_without_dropping_when_short() -> None:
    prompt, tokens = await _fit_chat(WordTokenizer(), MODEL, conversation(2), None, None, 1000)
    assert "Q0" in prompt and "LAST" in prompt and len(tokens) == len(prompt.split())


async def test_drops_oldest_turns_keeps_system_and_latest() -> None:
    prompt, tokens = await _fit_chat(WordTokenizer(), MODEL, conversation(10), None, None, 60)
    assert len(tokens) <= 60
    assert prompt.startswith("system: SYS rules here")
    assert "LAST question" in prompt and "A9" in prompt
    assert "Q0" not in prompt and "A0" not in prompt
    # Kept messages are a contiguous, most recent run: no gaps in the middle.
    kept = [i for i in range(10) if f"Q{i} " in prompt]
    assert kept == list(range(kept[0], 10))


async def test_a_single_overlong_message_keeps_its_tail() -> None:
    msgs = [{"role": "user", "content": " ".join(f"t{i}" for i in range(500))}]
    _, tokens = await _fit_chat(WordTokenizer(), MODEL, msgs, None, None, 50)
    assert len(tokens) == 50


class CountingTokenizer(WordTokenizer):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def tokenize(self, text: str, add_special: bool = True) -> list[int]:
        self.calls += 1
        return await super().tokenize(text, add_special)


async def test_long_histories_need_few_tokenizations() -> None:
    tok = CountingTokenizer()
    prompt, tokens = await _fit_chat(tok, MODEL, conversation(500), None, None, 100)
    assert len(tokens) <= 100 and "LAST question" in prompt and "A499" in prompt
    assert tok.calls <= 14
    # Minimal dropping: a message is 10 words, so one more would not have fitted.
    assert len(tokens) > 100 - 10
