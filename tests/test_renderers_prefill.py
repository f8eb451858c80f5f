"""Built-in renderers with a trailing assistant message (a prefill: the answer continues it, except
where Ollama's renderer opens a new turn). Written from the formats Ollama's renderers
(model/renderers/*.go) produce; think unset."""

from __future__ import annotations

import pytest

from ollamalike.template.renderers import RENDERERS
from tests.renderer_cases import PREFILL_CHAT

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
    ('ornith', (
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
    ('glm-ocr', (
        '[gMASK]<sop><|user|>\n'
        'Haiku<|assistant|>\n'
        '<think></think>\n'
        'Autumn\n'
        '<|assistant|>\n'
    )),
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
    ('cohere', (
        '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|><|START_TEXT|># Available Tools\n'
        '```json\n'
        '[\n'
        '\n'
        '\n'
        '\n'
        ']\n'
        '```<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|><|START_TEXT|>Haiku<|END_TEXT|><|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|><|START_TEXT|>Autumn'
    )),
]


def test_every_renderer_is_covered() -> None:
    assert sorted(n for n, _ in PREFILL) == sorted(RENDERERS)


@pytest.mark.parametrize(("name", "expected"), PREFILL, ids=[n for n, _ in PREFILL])
def test_a_trailing_assistant_message(name: str, expected: str) -> None:
    assert RENDERERS[name](PREFILL_CHAT, [], None) == expected
