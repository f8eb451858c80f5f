"""Images and the context's limits through a real daemon and real runners (the tiny llama, the tiny CLIP
projectors): a full context shifts only the text after the last image, ``shift: false`` ends with
"length", and a projector whose image tokens attend both ways (Gemma 3's, decoded non-causally) needs an
image in one batch: a smaller num_batch is a 400 before the image reaches llama.cpp. A text model with
M-RoPE positions (the Qwen2-VL family; here a tiny random one) refuses images with a 400 naming why."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamalike.testmodels import write_tiny_llama
from ollamalike.testmodels_mm import write_tiny_projector
from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error
from tests.infer_helpers import create_model
from tests.test_vision_e2e import BLUE, RED

pytestmark = pytest.mark.e2e

G3_TOKENS = 16  # the tiny Gemma 3 projector below: (32 / 4 / 2) ** 2 pooled patches
LONG = {"num_ctx": 64, "num_predict": 150, "temperature": 0, "repeat_penalty": 1.0}


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("vision-ctx")
    mlp = write_tiny_projector(home / "mmproj-tiny.gguf")
    g3 = write_tiny_projector(home / "mmproj-g3.gguf", projector_type="gemma3", patch_size=4, merge=2)
    mrope = write_tiny_llama(home / "tiny-qwen2vl.gguf", arch="qwen2vl")
    daemon = start_daemon(home)
    try:
        create_model(daemon, "vis", f"FROM {tiny_chat_gguf}\nADAPTER {mlp}\n", home)
        create_model(daemon, "g3", f"FROM {tiny_chat_gguf}\nADAPTER {g3}\n", home)
        create_model(daemon, "mrope", f"FROM {mrope}\nADAPTER {mlp}\n", home)
    except BaseException:
        print(daemon.logs())
        daemon.stop(check=False)
        raise
    yield daemon
    print(daemon.logs())
    daemon.stop()


def generate(d: Daemon, model: str, images: list[str], options: dict[str, Any], **extra: Any) -> tuple[int, Any]:
    return d.request("POST", "/api/generate", {"model": model, "prompt": "Describe it",
                                               "images": images, "stream": False, "options": options, **extra})


def test_a_full_context_shifts_the_text_after_the_last_image(d: Daemon) -> None:
    status, shifted = generate(d, "vis", [RED], LONG)
    assert status == 200, shifted
    # Past the 64-cell slot: the context shifted (before, an image slot ended with "length" here).
    assert shifted["prompt_eval_count"] + shifted["eval_count"] > 64 + 1, shifted
    assert shifted["done_reason"] in ("length", "stop") and "context" not in shifted
    # The same request again (its prefix, image included, from the slot's shifted cache) answers the same,
    # and another image still gives another answer: the image was kept through the shift.
    status, again = generate(d, "vis", [RED], LONG)
    assert status == 200 and again["response"] == shifted["response"], (again, shifted)
    status, blue = generate(d, "vis", [BLUE], LONG)
    assert status == 200 and blue["response"] != shifted["response"]


def test_shift_false_with_an_image_ends_with_length(d: Daemon) -> None:
    status, full = generate(d, "vis", [RED], LONG, shift=False)
    assert status == 200, full
    assert full["done_reason"] == "length"
    assert full["prompt_eval_count"] + full["eval_count"] == 64 + 1  # the slot's cells and the last sample


def test_a_non_causal_image_must_fit_one_batch(d: Daemon) -> None:
    opts = {"temperature": 0, "num_predict": 8}
    status, body = generate(d, "g3", [RED], {**opts, "num_batch": G3_TOKENS - 1})
    assert_api_error(status, body, 400, f"set num_batch to at least {G3_TOKENS} (it is {G3_TOKENS - 1})")
    status, red = generate(d, "g3", [RED], {**opts, "num_batch": G3_TOKENS})
    assert status == 200, red
    status, plain = generate(d, "g3", [], opts)
    assert status == 200, plain
    # The image's 16 tokens and Gemma's <start_of_image>/<end_of_image> text around them are counted.
    assert red["prompt_eval_count"] >= plain["prompt_eval_count"] + G3_TOKENS
    status, blue = generate(d, "g3", [BLUE], {**opts, "num_batch": G3_TOKENS})
    assert status == 200 and blue["response"] != red["response"]
    status, again = generate(d, "g3", [RED], {**opts, "num_batch": G3_TOKENS})
    assert status == 200 and again["response"] == red["response"]


def test_an_mrope_model_refuses_images_and_serves_text(d: Daemon) -> None:
    opts = {"temperature": 0, "num_predict": 4}
    status, body = generate(d, "mrope", [RED], opts)
    assert_api_error(status, body, 400, "M-RoPE positions (the Qwen2-VL family), which ollamalike does not support yet")
    status, chat = d.request("POST", "/api/chat", {"model": "mrope", "stream": False, "options": opts, "messages": [
        {"role": "user", "content": "what is it?", "images": [BLUE]}]})
    assert_api_error(status, chat, 400, "M-RoPE")
    status, text = generate(d, "mrope", [], opts)
    assert status == 200 and text["eval_count"] >= 1, text
