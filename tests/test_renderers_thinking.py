"""Built-in renderers and the think value (unset, off, on, a level) over a conversation whose
earlier answer has reasoning. Written from the formats Ollama's renderers (model/renderers/*.go) produce."""

from __future__ import annotations

import pytest

from ollamalike.template.renderers import RENDERERS
from tests.renderer_cases import THINK_CHAT

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
    ('ornith', None, (
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
    ('ornith', False, (
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
    ('ornith', True, (
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
    ('glm-ocr', None, (
        '[gMASK]<sop><|user|>\n'
        '2+2?<|assistant|>\n'
        '<think>easy</think>\n'
        '4\n'
        '<|user|>\n'
        '3+3?<|assistant|>\n'
    )),
    ('glm-ocr', False, (
        '[gMASK]<sop><|user|>\n'
        '2+2?/nothink<|assistant|>\n'
        '<think>easy</think>\n'
        '4\n'
        '<|user|>\n'
        '3+3?/nothink<|assistant|>\n'
        '<think></think>\n'
    )),
    ('glm-ocr', True, (
        '[gMASK]<sop><|user|>\n'
        '2+2?<|assistant|>\n'
        '<think>easy</think>\n'
        '4\n'
        '<|user|>\n'
        '3+3?<|assistant|>\n'
    )),
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
    ('cohere', None, (
        '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|><|START_TEXT|># Available Tools\n'
        '```json\n'
        '[\n'
        '\n'
        '\n'
        '\n'
        ']\n'
        '```<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|><|START_TEXT|>2+2?<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|>easy<|END_THINKING|><|START_TEXT|>4<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|><|START_TEXT|>3+3?<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|>'
    )),
    ('cohere', False, (
        '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|><|START_TEXT|># Available Tools\n'
        '```json\n'
        '[\n'
        '\n'
        '\n'
        '\n'
        ']\n'
        '```<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|><|START_TEXT|>2+2?<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|>easy<|END_THINKING|><|START_TEXT|>4<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|><|START_TEXT|>3+3?<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|><|END_THINKING|>'
    )),
    ('cohere', True, (
        '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|><|START_TEXT|># Available Tools\n'
        '```json\n'
        '[\n'
        '\n'
        '\n'
        '\n'
        ']\n'
        '```<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|><|START_TEXT|>2+2?<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|>easy<|END_THINKING|><|START_TEXT|>4<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|><|START_TEXT|>3+3?<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_THINKING|>'
    )),
]

# Renderers that take no think value: the same prompt whatever it is.
THINK_BLIND = ["qwen3-coder", "olmo3", "olmo3.1", "olmo3-think", "olmo3-32b-think", "lfm2"]


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
