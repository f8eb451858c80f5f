"""Built-in renderers and the think value (unset, off, on, a level) over a conversation whose
earlier answer has reasoning, and with a trailing assistant message (a prefill). Written from the
formats Ollama's renderers (model/renderers/*.go) produce."""

from __future__ import annotations

import pytest

from ollamalike.template.renderers import RENDERERS
from tests.renderer_cases import PREFILL_CHAT, THINK_CHAT

# (renderer, think, prompt) for the renderers whose output depends on think.
THINKING: list[tuple[str, bool | str | None, str]] = [
    ('qwen3-vl-instruct', None, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
    )),
    ('qwen3-vl-instruct', False, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
    )),
    ('qwen3-vl-instruct', True, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
    )),
    ('qwen3-vl-thinking', None, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
    )),
    ('qwen3-vl-thinking', False, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
    )),
    ('qwen3-vl-thinking', True, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
    )),
    ('qwen3.5', None, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
    )),
    ('qwen3.5', False, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        '\n'
        '</think>\n'
        '\n'
    )),
    ('qwen3.5', True, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
    )),
    ('qwen3.8', None, (
        '<|im_start|>system\n'
        'Reasoning effort is set to xhigh. Please think carefully through the task, validate key assumptions, consider plausible alternatives, and prioritize correctness, consistency, and clarity in the final answer.<|im_end|>\n'
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        'easy\n'
        '</think>\n'
        '\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
    )),
    ('qwen3.8', False, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        'easy\n'
        '</think>\n'
        '\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        '\n'
        '</think>\n'
        '\n'
    )),
    ('qwen3.8', True, (
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        'easy\n'
        '</think>\n'
        '\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
    )),
    ('qwen3.8', 'low', (
        '<|im_start|>system\n'
        'Reasoning effort is set to low. Keep your thinking brief and focused, moving directly to the conclusion without unnecessary elaboration.<|im_end|>\n'
        '<|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        'easy\n'
        '</think>\n'
        '\n'
        '4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
    )),
    ('cogito', None, '<｜begin▁of▁sentence｜>You are Cogito, an AI assistant created by Deep Cogito, which is an AI research lab based in San Francisco.<｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜>'),
    ('cogito', False, '<｜begin▁of▁sentence｜>You are Cogito, an AI assistant created by Deep Cogito, which is an AI research lab based in San Francisco.<｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜>'),
    ('cogito', True, (
        '<｜begin▁of▁sentence｜>Enable deep thinking subroutine.\n'
        '\n'
        'You are Cogito, an AI assistant created by Deep Cogito, which is an AI research lab based in San Francisco.<｜User｜>2+2?<｜Assistant｜>4<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜><think>\n'
    )),
    ('deepseek3.1', None, '<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜></think>4<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜></think>'),
    ('deepseek3.1', False, '<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜></think>4<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜></think>'),
    ('deepseek3.1', True, '<｜begin▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜></think>4<｜end▁of▁sentence｜><｜User｜>3+3?<｜Assistant｜><think>'),
    ('glm-4.7', None, '[gMASK]<sop><|user|>2+2?<|assistant|><think>easy</think>4<|user|>3+3?<|assistant|><think>'),
    ('glm-4.7', False, '[gMASK]<sop><|user|>2+2?<|assistant|><think>easy</think>4<|user|>3+3?<|assistant|></think>'),
    ('glm-4.7', True, '[gMASK]<sop><|user|>2+2?<|assistant|><think>easy</think>4<|user|>3+3?<|assistant|><think>'),
    ('lfm2-thinking', None, (
        '<|startoftext|><|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>easy</think>4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
    )),
    ('lfm2-thinking', False, (
        '<|startoftext|><|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>easy</think>4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
    )),
    ('lfm2-thinking', True, (
        '<|startoftext|><|im_start|>user\n'
        '2+2?<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>easy</think>4<|im_end|>\n'
        '<|im_start|>user\n'
        '3+3?<|im_end|>\n'
        '<|im_start|>assistant\n'
    )),
]

# Renderers that take no think value: the same prompt whatever it is.
THINK_BLIND = ["qwen3-coder", "olmo3", "olmo3.1", "olmo3-think", "olmo3-32b-think", "lfm2"]

PREFILL: list[tuple[str, str]] = [
    ('qwen3-coder', (
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Autumn'
    )),
    ('qwen3-vl-instruct', (
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Autumn'
    )),
    ('qwen3-vl-thinking', (
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        '\n'
        '</think>\n'
        '\n'
        'Autumn'
    )),
    ('qwen3.5', (
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        '\n'
        '</think>\n'
        '\n'
        'Autumn'
    )),
    ('qwen3.8', (
        '<|im_start|>system\n'
        'Reasoning effort is set to xhigh. Please think carefully through the task, validate key assumptions, consider plausible alternatives, and prioritize correctness, consistency, and clarity in the final answer.<|im_end|>\n'
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>\n'
        '\n'
        '</think>\n'
        '\n'
        'Autumn'
    )),
    ('cogito', '<｜begin▁of▁sentence｜>You are Cogito, an AI assistant created by Deep Cogito, which is an AI research lab based in San Francisco.<｜User｜>Haiku<｜Assistant｜>Autumn<｜end▁of▁sentence｜><｜Assistant｜>'),
    ('deepseek3.1', '<｜begin▁of▁sentence｜><｜User｜>Haiku<｜Assistant｜></think>Autumn<｜end▁of▁sentence｜>'),
    ('olmo3', (
        '<|im_start|>system\n'
        'You are a helpful function-calling AI assistant. You do not currently have access to any functions. <functions></functions><|im_end|>\n'
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Autumn'
    )),
    ('olmo3.1', (
        '<|im_start|>system\n'
        'You are Olmo, a helpful AI assistant built by Ai2. Your date cutoff is December 2024, and your model weights are available at https://huggingface.co/allenai. You do not currently have access to any functions. <functions></functions><|im_end|>\n'
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Autumn'
    )),
    ('olmo3-think', (
        '<|im_start|>system\n'
        'You are Olmo, a helpful AI assistant built by Ai2. Your date cutoff is December 2024, and your model weights are available at https://huggingface.co/allenai.<|im_end|>\n'
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Autumn<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>'
    )),
    ('olmo3-32b-think', (
        '<|im_start|>system\n'
        'You are a helpful AI assistant.<|im_end|>\n'
        '<|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Autumn<|im_end|>\n'
        '<|im_start|>assistant\n'
        '<think>'
    )),
    ('glm-4.7', '[gMASK]<sop><|user|>Haiku<|assistant|></think>Autumn<|assistant|><think>'),
    ('lfm2', (
        '<|startoftext|><|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Autumn'
    )),
    ('lfm2-thinking', (
        '<|startoftext|><|im_start|>user\n'
        'Haiku<|im_end|>\n'
        '<|im_start|>assistant\n'
        'Autumn'
    )),
]


@pytest.mark.parametrize(("name", "think", "expected"), THINKING, ids=[f"{n}-{t}" for n, t, _ in THINKING])
def test_think_values(name: str, think: bool | str | None, expected: str) -> None:
    assert RENDERERS[name](THINK_CHAT, [], think) == expected


@pytest.mark.parametrize("name", sorted({n for n, _, _ in THINKING} - {"qwen3.8"}))
def test_a_level_is_thinking_on(name: str) -> None:
    on = RENDERERS[name](THINK_CHAT, [], True)
    assert all(RENDERERS[name](THINK_CHAT, [], level) == on for level in ("low", "medium", "high", "max"))


def test_qwen38_states_the_effort_of_a_level() -> None:
    render = RENDERERS["qwen3.8"]
    assert render(THINK_CHAT, [], "high") == render(THINK_CHAT, [], "max") == render(THINK_CHAT, [], None)
    assert render(THINK_CHAT, [], "medium") == render(THINK_CHAT, [], True)


@pytest.mark.parametrize("name", THINK_BLIND)
def test_renderers_without_thinking_ignore_the_think_value(name: str) -> None:
    outputs = {RENDERERS[name](THINK_CHAT, [], think) for think in (None, False, True, "low", "high", "max")}
    assert len(outputs) == 1


def test_every_renderer_is_covered() -> None:
    assert sorted({n for n, _, _ in THINKING} | set(THINK_BLIND)) == sorted(RENDERERS)
    assert sorted(n for n, _ in PREFILL) == sorted(RENDERERS)


@pytest.mark.parametrize(("name", "expected"), PREFILL, ids=[n for n, _ in PREFILL])
def test_a_trailing_assistant_message(name: str, expected: str) -> None:
    assert RENDERERS[name](PREFILL_CHAT, [], None) == expected
