"""Images and the context's limits through a real daemon and real runners (the tiny llama, the tiny CLIP
projectors): a full context shifts only the text after the last image, ``shift: false`` ends with
"length", and a projector whose image tokens attend both ways (Gemma 3's, decoded non-causally) needs an
image in one batch: a smaller num_batch is a 400 before the image reaches llama.cpp. A text model with
M-RoPE positions (the Qwen2-VL family; a tiny random one and its projector) decodes an image where mtmd's
own helper does."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ollamalike.testmodels import write_tiny_llama
from ollamalike.testmodels_mm import write_tiny_projector, write_tiny_qwen2vl_projector
from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error
from tests.infer_helpers import create_model
from tests.test_vision_e2e import BLUE, RED, b64, png

pytestmark = pytest.mark.e2e

G3_TOKENS = 16  # the tiny Gemma 3 projector below: (32 / 4 / 2) ** 2 pooled patches
LONG = {"num_ctx": 64, "num_predict": 150, "temperature": 0, "repeat_penalty": 1.0}


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("vision-ctx")
    mlp = write_tiny_projector(home / "mmproj-tiny.gguf")
    g3 = write_tiny_projector(home / "mmproj-g3.gguf", projector_type="gemma3", patch_size=4, merge=2)
    mrope = write_tiny_llama(home / "tiny-qwen2vl.gguf", arch="qwen2vl")
    qwen_proj = write_tiny_qwen2vl_projector(home / "mmproj-qwen2vl.gguf")
    daemon = start_daemon(home)
    try:
        create_model(daemon, "vis", f"FROM {tiny_chat_gguf}\nADAPTER {mlp}\n", home)
        create_model(daemon, "g3", f"FROM {tiny_chat_gguf}\nADAPTER {g3}\n", home)
        create_model(daemon, "mrope", f"FROM {mrope}\nADAPTER {qwen_proj}\n", home)
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


def _mtmd_reference(model: Path, projector: Path, text: str, png_b64: str, top: int) -> tuple[list[float], int]:
    """The top logprobs after ``text`` with its image, decoded by mtmd's own whole-prompt helper
    (``mtmd_helper_eval_chunks``: every chunk at the positions mtmd chooses, M-RoPE's included), and the
    prompt's KV cell count: what the runner's engine must reproduce."""
    import base64
    import ctypes
    import io

    import llama_cpp
    import numpy as np
    from llama_cpp import mtmd_cpp
    from PIL import Image as PILImage

    from ollamalike.runner.llama import load_model
    from ollamalike.runner.spec import RunnerSpec
    from ollamalike.runner.vision import MARKER, Vision, _bitmap, tag_order
    from ollamalike.runner.vision import RawImage as Raw

    loaded = load_model(RunnerSpec(model_path=str(model), ctx_size=512, num_parallel=1, num_batch=512,
                                   gpu_layers=0), [0.0])
    vision = Vision.open(loaded, str(projector), 2, False)
    try:
        img = PILImage.open(io.BytesIO(base64.b64decode(png_b64))).convert("RGB")
        bitmap = _bitmap(Raw(img.width, img.height, img.tobytes()))
        marked, _ = tag_order(text, 1)
        assert MARKER in marked
        chunks = mtmd_cpp.mtmd_input_chunks_init()
        data = marked.encode()
        inp = mtmd_cpp.mtmd_input_text()
        inp.text, inp.text_len, inp.add_special, inp.parse_special = data, len(data), True, True
        arr = (mtmd_cpp.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mtmd_cpp.mtmd_tokenize(vision.ctx, chunks, ctypes.byref(inp), arr, 1) == 0
        mtmd_cpp.mtmd_bitmap_free(bitmap)
        cells = int(mtmd_cpp.mtmd_helper_get_n_tokens(chunks))
        new_past = llama_cpp.llama_pos(0)
        assert mtmd_cpp.mtmd_helper_eval_chunks(vision.ctx, loaded.ctx, chunks, 0, 0, 512, True,
                                                ctypes.byref(new_past)) == 0
        assert int(new_past.value) < cells  # M-RoPE: the image advanced fewer positions than its cells
        n_vocab = llama_cpp.llama_vocab_n_tokens(loaded.vocab)
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(loaded.ctx, -1), shape=(n_vocab,)).astype(np.float64)
        logprobs = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
        mtmd_cpp.mtmd_input_chunks_free(chunks)
        return sorted(logprobs.tolist(), reverse=True)[:top], cells
    finally:
        vision.close()
        loaded.close()


def test_an_mrope_image_decodes_where_mtmd_places_it(d: Daemon, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Qwen2-VL-style M-RoPE (the tiny random qwen2vl text model and projector): an image of nx x ny tokens
    fills nx * ny KV cells but advances the position by max(nx, ny); the runner's first-token logprobs match
    mtmd's own whole-prompt decoding, fresh and from the slot's prefix cache, and image tokens are counted."""
    home = d.home
    text = "look [img-0] and tell me"
    image = b64(png((30, 160, 90), size=(40, 24), gradient=True))  # 20 x 12 patches: 10 x 6 merged tokens
    want, cells = _mtmd_reference(home / "tiny-qwen2vl.gguf", home / "mmproj-qwen2vl.gguf", text, image, 3)
    body = {"model": "mrope", "prompt": text, "raw": True, "images": [image], "stream": False,
            "logprobs": True, "top_logprobs": 3,
            "options": {"temperature": 0, "num_predict": 6, "repeat_penalty": 1.0}}  # logprobs are after penalties
    for _ in range(2):  # the second from the prefix cache: the image reused, its positions restored
        status, out = d.request("POST", "/api/generate", body)
        assert status == 200, out
        assert out["prompt_eval_count"] == cells  # 60 image cells, the text, BOS and the vision markers
        got = [t["logprob"] for t in out["logprobs"][0]["top_logprobs"]]
        assert got == pytest.approx(want, abs=1e-3), (got, want)
    status, other = d.request("POST", "/api/generate", {**body, "images": [RED]})
    assert status == 200 and other["logprobs"][0]["top_logprobs"] != out["logprobs"][0]["top_logprobs"]
    # A full context ends with "length": llama.cpp cannot shift M-RoPE positions.
    status, long = d.request("POST", "/api/generate", {**body, "logprobs": False,
                                                       "options": {"num_ctx": 128, "num_predict": 200}})
    assert status == 200 and long["done_reason"] == "length" and long["prompt_eval_count"] + long["eval_count"] <= 129
