"""Images through a real daemon and real runners: the tiny llama with the tiny CLIP projector (llama.cpp's
mtmd encodes the pixels), created the way users create vision models (FROM the GGUF, ADAPTER the
projector). Every API's image input, the CLI's image paths, prefix reuse keyed on image content, and
each bad input answered 400 before any image reaches llama.cpp."""

from __future__ import annotations

import base64
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
from PIL import Image as PILImage

from ollamalike.testmodels_mm import write_tiny_projector
from tests.daemon import Daemon, start_daemon
from tests.helpers import assert_api_error, assert_openai_error
from tests.infer_helpers import create_model, stream_lines

pytestmark = pytest.mark.e2e

IMAGE_TOKENS = 16  # write_tiny_projector's default: (32 / 8) ** 2 patches
MAX_PIXELS = 64 * 64
OPTS = {"temperature": 0, "num_predict": 12}


def png(color: tuple[int, int, int], size: tuple[int, int] = (32, 32), gradient: bool = False) -> bytes:
    img = PILImage.new("RGB", size, color)
    if gradient:
        img.putdata([((x * 7 + color[0]) % 256, (y * 11 + color[1]) % 256, (x * y + color[2]) % 256)
                     for y in range(size[1]) for x in range(size[0])])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


RED, BLUE = b64(png((220, 20, 20), gradient=True)), b64(png((20, 20, 220), gradient=True))


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("vision")
    proj = write_tiny_projector(home / "mmproj-tiny.gguf")
    daemon = start_daemon(home, {"OLLAMALIKE_MAX_IMAGE_PIXELS": str(MAX_PIXELS)})
    try:
        vis = f"FROM {tiny_chat_gguf}\nADAPTER {proj}\nPARAMETER temperature 0\nPARAMETER num_predict 12\n"
        create_model(daemon, "vis", vis, home)
        create_model(daemon, "vis-idle", vis, home)  # only ever sent bad input: must never load
        create_model(daemon, "plain", f"FROM {tiny_chat_gguf}\n", home)
    except BaseException:
        print(daemon.logs())
        daemon.stop(check=False)
        raise
    yield daemon
    print(daemon.logs())
    daemon.stop()


def generate(d: Daemon, images: list[str], prompt: str = "What is in the picture?", model: str = "vis",
             **extra: Any) -> dict[str, Any]:
    status, body = d.request("POST", "/api/generate", {"model": model, "prompt": prompt, "images": images,
                                                       "stream": False, "options": OPTS, **extra})
    assert status == 200, body
    return dict(body)


def loaded(d: Daemon) -> list[str]:
    status, body = d.request("GET", "/api/ps")
    assert status == 200
    return [m["name"] for m in body["models"]]


def test_show_reports_vision_and_the_projector(d: Daemon) -> None:
    status, show = d.request("POST", "/api/show", {"model": "vis"})
    assert status == 200
    assert "vision" in show["capabilities"] and "audio" not in show["capabilities"]
    proj = show["projector_info"]
    assert proj["general.architecture"] == "clip" and proj["clip.vision.image_size"] == 32
    assert proj["clip.projector_type"] == "mlp"
    status, plain = d.request("POST", "/api/show", {"model": "plain"})
    assert "vision" not in plain["capabilities"] and "projector_info" not in plain
    out = d.cli("show", "vis")
    assert out.returncode == 0, out.stderr
    assert "Projector" in out.stdout and "clip" in out.stdout and "vision" in out.stdout


def test_projector_layer_in_the_manifest(d: Daemon, tiny_chat_gguf: Path) -> None:
    """The projector is its own layer with Ollama's media type; the model layer is the GGUF unchanged."""
    import hashlib

    from ollamalike.store import Store

    _, manifest, _ = Store(d.models_dir).get_manifest("vis")
    kinds = {layer["mediaType"]: layer["digest"] for layer in manifest["layers"]}
    assert kinds["application/vnd.ollama.image.model"] == "sha256:" + hashlib.sha256(tiny_chat_gguf.read_bytes()).hexdigest()
    assert "application/vnd.ollama.image.projector" in kinds
    assert "application/vnd.ollama.image.adapter" not in kinds


def test_show_modelfile_recreates_the_vision_model(d: Daemon, tmp_path: Path) -> None:
    """The generated Modelfile names the projector as a second FROM <its blob>, as Ollama writes it:
    creating from it gives the same model."""
    status, show = d.request("POST", "/api/show", {"model": "vis"})
    assert status == 200
    text = show["modelfile"]
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) == 2 and "sha256-" in froms[1] and "ADAPTER " not in text
    create_model(d, "vis-again", text, tmp_path)
    from ollamalike.store import Store

    store = Store(d.models_dir)
    try:
        assert store.get_manifest("vis-again")[0] == store.get_manifest("vis")[0]
    finally:
        store.close()


def test_an_image_changes_the_output_deterministically(d: Daemon) -> None:
    red = generate(d, [RED])
    again = generate(d, [RED])
    blue = generate(d, [BLUE])
    none = generate(d, [])
    assert red["response"] and red["response"] == again["response"]
    assert blue["response"] != red["response"] and none["response"] != red["response"]
    # Image tokens are counted: a second image adds exactly its 16 positions.
    two = generate(d, [RED, BLUE])
    assert two["prompt_eval_count"] == red["prompt_eval_count"] + IMAGE_TOKENS
    assert red["prompt_eval_count"] > none["prompt_eval_count"]
    # A generation with images returns no context (its image positions are no token ids to send back);
    # one without images does, and it continues token-exact.
    assert "context" not in red and "context" not in two
    assert none["context"] and all(t >= 0 for t in none["context"])
    # The order of the images matters, and [img-N] tags in a prompt place them.
    swapped = generate(d, [RED, BLUE], prompt="[img-1][img-0]What is in the picture?")
    assert swapped["prompt_eval_count"] == two["prompt_eval_count"]
    assert swapped["response"] == generate(d, [BLUE, RED])["response"]


def test_chat_images_and_prefix_reuse_of_the_same_image(d: Daemon) -> None:
    img = b64(png((10, 200, 90), gradient=True))  # used by no other test: nothing cached yet
    msgs: list[dict[str, Any]] = [{"role": "user", "content": "Describe it.", "images": [img]}]
    body = {"model": "vis", "messages": msgs, "stream": False, "options": OPTS}
    status, first = d.request("POST", "/v1/chat/completions", {
        "model": "vis", "temperature": 0, "max_tokens": 12, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe it."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + img}}]}]})
    assert status == 200, first
    usage = first["usage"]
    assert usage["prompt_tokens"] > IMAGE_TOKENS
    assert usage["prompt_tokens_details"]["cached_tokens"] < usage["prompt_tokens"] - IMAGE_TOKENS
    # The native chat with the same message: the whole prompt, image included, comes from the cache.
    status, native = d.request("POST", "/api/chat", body)
    assert status == 200, native
    assert native["message"]["content"] == first["choices"][0]["message"]["content"]
    assert native["prompt_eval_count"] == usage["prompt_tokens"]
    status, again = d.request("POST", "/v1/chat/completions", {
        "model": "vis", "temperature": 0, "max_tokens": 12, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe it."},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64," + img}}]}]})
    assert again["usage"]["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] - 1
    # The next turn: the image in the history is not encoded again (its positions are cached).
    follow = {**body, "messages": [*msgs, native["message"], {"role": "user", "content": "And the colour?"}]}
    status, turn = d.request("POST", "/v1/chat/completions", {
        "model": "vis", "temperature": 0, "max_tokens": 4, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Describe it."},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64," + img}}]},
            {"role": "assistant", "content": native["message"]["content"]},
            {"role": "user", "content": "And the colour?"}]})
    assert status == 200, turn
    assert turn["usage"]["prompt_tokens_details"]["cached_tokens"] >= usage["prompt_tokens"] - 1
    status, native_turn = d.request("POST", "/api/chat", follow)
    assert status == 200 and native_turn["prompt_eval_count"] == turn["usage"]["prompt_tokens"]


def test_official_clients(d: Daemon, tmp_path: Path) -> None:
    import ollama
    import openai

    path = tmp_path / "red.png"
    path.write_bytes(base64.b64decode(RED))
    client = ollama.Client(host=d.base_url)
    by_path = client.generate(model="vis", prompt="What is in the picture?", images=[path], options=OPTS)
    assert by_path.response == generate(d, [RED])["response"]
    chat = client.chat(model="vis", messages=[{"role": "user", "content": "Describe it.", "images": [path]}],
                       options=OPTS)
    status, native = d.request("POST", "/api/chat", {"model": "vis", "stream": False, "options": OPTS,
                                                      "messages": [{"role": "user", "content": "Describe it.",
                                                                    "images": [RED]}]})
    assert chat.message.content == native["message"]["content"]
    oa = openai.OpenAI(base_url=f"{d.base_url}/v1", api_key="x", max_retries=0, timeout=120)
    resp = oa.chat.completions.create(model="vis", temperature=0, max_tokens=12, messages=[{
        "role": "user", "content": [{"type": "text", "text": "Describe it."},
                                    {"type": "image_url", "image_url": {"url": "data:image/png;base64," + RED}}]}])
    assert resp.choices[0].message.content == native["message"]["content"]
    import anthropic

    msg = anthropic.Anthropic(base_url=d.base_url, api_key="x", max_retries=0).messages.create(
        model="vis", max_tokens=12, messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe it."},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": RED}}]}])
    assert msg.content[0].type == "text" and msg.content[0].text == native["message"]["content"]
    assert msg.usage.input_tokens == native["prompt_eval_count"]
    counted = anthropic.Anthropic(base_url=d.base_url, api_key="x", max_retries=0).messages.count_tokens(
        model="vis", messages=[{"role": "user", "content": [
            {"type": "text", "text": "Describe it."},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": RED}}]}])
    assert counted.input_tokens == native["prompt_eval_count"]
    with pytest.raises(openai.BadRequestError) as e:
        oa.chat.completions.create(model="vis", messages=[{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}])
    assert "not fetched" in str(e.value)


def test_concurrent_image_requests_match_their_sequential_answers(d: Daemon) -> None:
    """Images are evaluated per slot while other sequences decode in the shared batch: the answers of
    requests run at once are exactly their answers alone."""
    import threading

    imgs = [b64(png((30 * i, 200 - 20 * i, 90), gradient=True)) for i in range(4)]  # new: nothing cached
    together: list[str] = [""] * len(imgs)

    def one(i: int) -> None:
        together[i] = generate(d, [imgs[i]], prompt=f"Picture {i}?")["response"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(imgs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    alone = [generate(d, [img], prompt=f"Picture {i}?")["response"] for i, img in enumerate(imgs)]
    assert together == alone and all(together) and len(set(together)) > 1


def truncated_png() -> str:
    return b64(png((1, 2, 3), gradient=True)[:70])


@pytest.mark.parametrize(("images", "needle"), [
    (["%%% not base64 %%%"], "not base64"),
    ([b64(b"GIF89a but not really an image at all")], "invalid image"),
    ([b64(b"just some text")], "not a supported image format"),
    (["TRUNCATED"], "corrupt or truncated"),
    ([b64(png((9, 9, 9), size=(100, 100)))], "over the limit of 4096 pixels"),
    ([RED, "%%%"], "images[1]"),
])
def test_bad_images_are_400_and_never_load_the_model(d: Daemon, images: list[str], needle: str) -> None:
    images = [truncated_png() if i == "TRUNCATED" else i for i in images]
    status, body = d.request("POST", "/api/generate", {"model": "vis-idle", "prompt": "hi", "images": images})
    assert_api_error(status, body, 400, needle)
    status, body = d.request("POST", "/api/chat", {"model": "vis-idle", "messages": [
        {"role": "user", "content": "hi", "images": images}]})
    assert_api_error(status, body, 400, needle)
    status, body = d.request("POST", "/v1/chat/completions", {"model": "vis-idle", "messages": [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64," + images[-1]}}]}]})
    if needle == "not base64" or images[-1] == "%%%":
        assert_openai_error(status, body, 400, "base64")
    else:
        assert_openai_error(status, body, 400, needle if needle != "images[1]" else "")
    assert "vis-idle:latest" not in loaded(d)


def test_image_to_a_model_without_projector(d: Daemon) -> None:
    status, body = d.request("POST", "/api/generate", {"model": "plain", "prompt": "hi", "images": [RED]})
    assert_api_error(status, body, 400, "missing data required for image input")
    status, body = d.request("POST", "/api/chat", {"model": "plain", "messages": [
        {"role": "user", "content": "hi", "images": [RED]}]})
    assert_api_error(status, body, 400, "missing data required for image input")
    assert "plain:latest" not in loaded(d)


def test_too_many_images_for_the_context(d: Daemon) -> None:
    opts = {"num_ctx": 64, "num_predict": 4}
    status, body = d.request("POST", "/api/generate", {"model": "vis", "prompt": "hi", "images": [RED] * 4,
                                                       "options": opts})
    assert_api_error(status, body, 400, "too many images for the context")
    status, body = d.request("POST", "/api/chat", {"model": "vis", "options": opts, "messages": [
        {"role": "user", "content": "hi", "images": [RED, BLUE, RED, BLUE]}]})
    assert_api_error(status, body, 400, "too many images for the context")
    # Older turns with images are dropped to fit, as text turns are; the latest one stays.
    status, body = d.request("POST", "/api/chat", {"model": "vis", "options": opts, "stream": False, "messages": [
        {"role": "user", "content": "first", "images": [RED, BLUE]}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second", "images": [BLUE]}]})
    assert status == 200, body
    assert body["prompt_eval_count"] < 64


def test_context_with_images_is_refused(d: Daemon) -> None:
    status, body = d.request("POST", "/api/generate", {"model": "vis", "prompt": "hi", "images": [RED],
                                                       "context": [1, 2, 3]})
    assert_api_error(status, body, 400, "context cannot be combined with images")
    # An image position is no token id: a context carrying one (a negative id) is refused before any load.
    status, body = d.request("POST", "/api/generate", {"model": "vis", "prompt": "hi", "context": [1, -5, 3]})
    assert_api_error(status, body, 400, "context must be a list of integer token ids")


def test_streamed_image_generation_ends_without_context(d: Daemon) -> None:
    lines = stream_lines(d, "/api/generate", {"model": "vis", "prompt": "What is in the picture?", "images": [RED],
                                              "options": OPTS})
    final = [json.loads(line) for line in lines][-1]
    assert final["done"] is True and "context" not in final and final["prompt_eval_count"] > IMAGE_TOKENS


def test_cli_run_attaches_image_paths(d: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "my picture.png"
    path.write_bytes(base64.b64decode(RED))
    escaped = str(path).replace(" ", "\\ ")
    out = d.cli("run", "vis", f"Describe {escaped}")
    assert out.returncode == 0, out.stderr
    assert f"Added image '{path}'" in out.stderr
    status, native = d.request("POST", "/api/chat", {"model": "vis", "stream": False, "messages": [
        {"role": "user", "content": "Describe", "images": [RED]}]})
    assert out.stdout.strip() == native["message"]["content"].strip()
    # A path that names no file stays text; a model without a projector never reads paths.
    missing = d.cli("run", "vis", "Describe /no/such/file.png")
    assert missing.returncode == 0 and "Added image" not in missing.stderr


def test_repl_show_info_and_image_path(d: Daemon, tmp_path: Path) -> None:
    path = tmp_path / "blue.png"
    path.write_bytes(base64.b64decode(BLUE))
    child = pexpect.spawn(sys.executable, ["-m", "ollamalike", "run", "vis"], env=d.env, encoding="utf-8",
                          timeout=90, dimensions=(40, 120))
    try:
        child.expect_exact(">>> ")
        child.sendline("/show info")
        child.expect_exact(">>> ")
        info = str(child.before)
        assert "Projector" in info and "clip" in info and "embedding length" in info
        child.sendline(f"What is this? {path}")
        child.expect_exact(">>> ")
        assert f"Added image '{path}'" in str(child.before)
        child.sendline("/bye")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)


# -- audio: a projector with an audio encoder (the tiny Whisper-style ``qwen2a``) ----------------------
AUDIO_TOKENS = 750  # one 30 s window of the tiny audio projector


def wav(freq: float, seconds: float = 1.0, rate: int = 22050, width: int = 2, channels: int = 1) -> bytes:
    import math
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        frames = bytearray()
        for i in range(int(seconds * rate)):
            v = int(0.4 * math.sin(2 * math.pi * freq * i / rate) * (2 ** (8 * width - 1) - 1))
            sample = (v + 128).to_bytes(1, "little") if width == 1 else v.to_bytes(width, "little", signed=True)
            frames += sample * channels
        w.writeframes(bytes(frames))
    return buf.getvalue()


@pytest.fixture(scope="module")
def aud(d: Daemon, tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> str:
    from ollamalike.testmodels_mm import write_tiny_audio_projector

    home = tmp_path_factory.mktemp("audio")
    proj = write_tiny_audio_projector(home / "mmproj-audio.gguf")
    create_model(d, "aud", f"FROM {tiny_chat_gguf}\nADAPTER {proj}\nPARAMETER temperature 0\n"
                           "PARAMETER num_predict 8\n", home)
    return "aud"


def test_audio_clips(d: Daemon, aud: str) -> None:
    status, show = d.request("POST", "/api/show", {"model": aud})
    assert status == 200 and "audio" in show["capabilities"] and "vision" not in show["capabilities"]
    assert show["projector_info"]["clip.has_audio_encoder"] is True
    low, high = b64(wav(220)), b64(wav(1760, rate=16000, width=1, channels=2))
    one = generate(d, [low], prompt="What do you hear?", model=aud)
    again = generate(d, [low], prompt="What do you hear?", model=aud)
    other = generate(d, [high], prompt="What do you hear?", model=aud)
    two = generate(d, [low, high], prompt="What do you hear?", model=aud)
    assert one["response"] == again["response"] and other["response"] != one["response"]
    # Each clip adds its 750 audio positions (and the projector's <|audio_bos|>/<|audio_eos|> text around them).
    none = generate(d, [], prompt="What do you hear?", model=aud)
    # (The text around a clip is tokenized in pieces, so a count may move by a token or two; the 750 may not.)
    assert one["prompt_eval_count"] - none["prompt_eval_count"] >= AUDIO_TOKENS
    assert two["prompt_eval_count"] - one["prompt_eval_count"] >= AUDIO_TOKENS
    # OpenAI's input_audio part is the same clip on the same path.
    status, oa = d.request("POST", "/v1/chat/completions", {"model": aud, "max_tokens": 8, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "What do you hear?"},
                                     {"type": "input_audio", "input_audio": {"data": low, "format": "wav"}}]}]})
    assert status == 200, oa
    status, native = d.request("POST", "/api/chat", {"model": aud, "stream": False, "messages": [
        {"role": "user", "content": "What do you hear?", "images": [low]}]})
    assert status == 200 and oa["choices"][0]["message"]["content"] == native["message"]["content"]
    assert oa["usage"]["prompt_tokens"] == native["prompt_eval_count"]


def test_audio_bad_inputs(d: Daemon, aud: str) -> None:
    low = b64(wav(220))
    status, body = d.request("POST", "/api/generate", {"model": "vis", "prompt": "hi", "images": [low]})
    assert_api_error(status, body, 400, "does not support audio input")
    status, body = d.request("POST", "/api/generate", {"model": aud, "prompt": "hi", "images": [RED]})
    assert_api_error(status, body, 400, "missing data required for image input")
    broken = b64(wav(220)[:30])  # a RIFF/WAVE header cut short
    status, body = d.request("POST", "/api/generate", {"model": aud, "prompt": "hi", "images": [broken]})
    assert_api_error(status, body, 400, "invalid audio")
    status, body = d.request("POST", "/v1/chat/completions", {"model": aud, "messages": [
        {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": low, "format": "mp3"}}]}]})
    assert_openai_error(status, body, 400, "'mp3' is not supported")
