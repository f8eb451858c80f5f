"""A named renderer on the real Qwen2.5-Coder 0.5B through the real daemon: the renderer's prompt
is what the runner evaluates. ``qwen3-coder`` renders a plain chat as bare ChatML, so the model
with that renderer and a model whose Go TEMPLATE writes the same ChatML give the same greedy
answer from the same number of prompt tokens, and both differ from the model's own Jinja template
(which adds Qwen's default system prompt)."""

from __future__ import annotations

import pytest

from tests.daemon import Daemon
from tests.realmodels import QWEN

pytestmark = pytest.mark.e2e

CHATML = "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n"
ASK = [{"role": "user", "content": "Say hello."}]


def test_a_renderers_prompt_drives_the_real_model(real_daemon: Daemon) -> None:
    for name, extra in (("qwen-rendered", {"renderer": "qwen3-coder"}), ("qwen-chatml", {"template": CHATML})):
        status, body = real_daemon.request("POST", "/api/create", {"model": name, "from": QWEN, "stream": False, **extra})
        assert status == 200, body
    status, rendered = real_daemon.request("POST", "/api/render", {"model": "qwen-rendered", "messages": ASK})
    assert status == 200 and rendered == {"prompt": "<|im_start|>user\nSay hello.<|im_end|>\n<|im_start|>assistant\n"}
    answers: dict[str, tuple[str, int]] = {}
    for name in ("qwen-rendered", "qwen-chatml", QWEN):
        status, out = real_daemon.request("POST", "/api/chat", {
            "model": name, "messages": ASK, "stream": False, "options": {"temperature": 0, "seed": 1, "num_predict": 12}})
        assert status == 200, out
        answers[name] = (out["message"]["content"], out["prompt_eval_count"])
    assert answers["qwen-rendered"] == answers["qwen-chatml"], answers
    assert answers["qwen-rendered"][0].strip()
    assert answers[QWEN][1] > answers["qwen-rendered"][1], answers
