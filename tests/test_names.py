"""Model names: Ollama's defaults and forms, and strict rejection of anything that could reach a path badly."""

from __future__ import annotations

import pytest

from ollamalike.errors import BadRequest
from ollamalike.names import ModelName, parse_digest

HEX = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "host", "namespace", "model", "tag", "display"),
    [
        ("llama3", "registry.ollama.ai", "library", "llama3", "latest", "llama3:latest"),
        ("llama3:8b", "registry.ollama.ai", "library", "llama3", "8b", "llama3:8b"),
        ("qwen2.5:0.5b", "registry.ollama.ai", "library", "qwen2.5", "0.5b", "qwen2.5:0.5b"),
        ("library/llama3", "registry.ollama.ai", "library", "llama3", "latest", "llama3:latest"),
        ("jmorgan/mistral:q4", "registry.ollama.ai", "jmorgan", "mistral", "q4", "jmorgan/mistral:q4"),
        ("registry.ollama.ai/library/llama3:latest", "registry.ollama.ai", "library", "llama3", "latest", "llama3:latest"),
        ("https://registry.ollama.ai/library/phi3", "registry.ollama.ai", "library", "phi3", "latest", "phi3:latest"),
        ("example.com/team/model:v1", "example.com", "team", "model", "v1",
         "example.com/team/model:v1"),
        ("localhost:5000/ns/model", "localhost:5000", "ns", "model", "latest", "localhost:5000/ns/model:latest"),
        ("127.0.0.1:5000/ns/model:t", "127.0.0.1:5000", "ns", "model", "t", "127.0.0.1:5000/ns/model:t"),
        ("hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF",
         "Q4_K_M", "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M"),
        ("hf.co/some.user/repo", "hf.co", "some.user", "repo", "latest", "hf.co/some.user/repo:latest"),
        (f"llama3@sha256:{HEX}", "registry.ollama.ai", "library", "llama3", "latest", "llama3:latest"),
        (f"llama3:8b@sha256-{HEX}", "registry.ollama.ai", "library", "llama3", "8b", "llama3:8b"),
        ("m:_private", "registry.ollama.ai", "library", "m", "_private", "m:_private"),
        ("a" * 80, "registry.ollama.ai", "library", "a" * 80, "latest", "a" * 80 + ":latest"),
        ("m:" + "t" * 80, "registry.ollama.ai", "library", "m", "t" * 80, "m:" + "t" * 80),
        ("My-Model_1.0:Tag.2", "registry.ollama.ai", "library", "My-Model_1.0", "Tag.2", "My-Model_1.0:Tag.2"),
    ],
)
def test_valid_names(text: str, host: str, namespace: str, model: str, tag: str, display: str) -> None:
    name = ModelName.parse(text)
    assert (name.host, name.namespace, name.model, name.tag) == (host, namespace, model, tag)
    assert name.display == display
    assert str(name) == f"{host}/{namespace}/{model}:{tag}"
    assert ModelName.parse(str(name)) == name
    assert name.repository == f"{namespace}/{model}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "model name is required"),
        ("   ", "model name is required"),
        ("x" * 513, "too long"),
        ("..", "bad model"),
        ("../etc", "bad namespace"),
        ("../../etc/passwd", "too many parts"),
        ("../../etc", "bad host"),
        ("ns/..", "bad model"),
        ("a/../b", "bad namespace"),
        ("ns/mo..del", "bad model"),
        ("host..com/ns/m", "bad host"),
        ("hf.co/user/..", "bad model"),
        ("m:..", "bad tag"),
        ("a//b", "empty part"),
        ("/abs", "empty part"),
        ("trailing/", "empty part"),
        ("a/b/c/d", "too many parts"),
        ("model:", "bad tag"),
        ("model:a:b", "bad model"),
        ("mo del", "bad model"),
        ("model\x00", "bad model"),
        ("mo\ndel", "bad model"),
        ("back\\slash", "bad model"),
        ("-model", "bad model"),
        (".model", "bad model"),
        ("model:-tag", "bad tag"),
        ("model:ta g", "bad tag"),
        ("ümlaut", "bad model"),
        ("a" * 81, "bad model"),
        ("m:" + "t" * 81, "bad tag"),
        ("n" * 81 + "/m", "bad namespace"),
        ("model@sha256:abc", "bad digest"),
        (f"model@md5:{HEX}", "bad digest"),
        ("ns/m:t/x", "bad namespace"),
        ("h:99999x/ns/m", "bad host"),
        # Issue 21 item 16: names were whitespace-stripped, so "x\n" acted on "x". Taken exactly now.
        ("  llama3  ", "whitespace"),
        ("x\n", "whitespace"),
        ("x:latest\n", "whitespace"),
        ("\tx", "whitespace"),
        # "$" matched before a trailing newline; "\Z" does not (the stripping hid this).
        (f"x@sha256:{HEX}\n", "whitespace"),
        # A host is one directory name: longer than DNS allows (253) would hit ENAMETOOLONG.
        ("h" * 254 + "/ns/m", "bad host"),
    ],
)
def test_invalid_names(text: str, message: str) -> None:
    with pytest.raises(BadRequest) as e:
        ModelName.parse(text)
    assert message in e.value.message
    assert "\n" not in e.value.message.replace("\\n", "")


def test_non_string_name() -> None:
    with pytest.raises(BadRequest, match="must be a string"):
        ModelName.parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b"),
    [("Llama3", "llama3"), ("LLAMA3:LATEST", "llama3"), ("Library/Llama3:8B", "registry.ollama.ai/library/llama3:8b")],
)
def test_keys_are_case_insensitive(a: str, b: str) -> None:
    assert ModelName.parse(a).key() == ModelName.parse(b).key() == ModelName.parse(b).key().lower()
    assert str(ModelName.parse(a)) != str(ModelName.parse(b))  # names keep their case; only keys fold it


@pytest.mark.parametrize(
    ("text", "is_hf"),
    [("hf.co/u/r", True), ("huggingface.co/u/r:Q8_0", True), ("HF.CO/u/r", True), ("llama3", False), ("hf/u", False)],
)
def test_huggingface_names(text: str, is_hf: bool) -> None:
    assert ModelName.parse(text).is_huggingface is is_hf


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"sha256:{HEX}", f"sha256:{HEX}"),
        (f"sha256-{HEX}", f"sha256:{HEX}"),
    ],
)
def test_parse_digest(text: str, expected: str) -> None:
    assert parse_digest(text) == expected


@pytest.mark.parametrize(
    "text",
    [f"sha256:{HEX.upper()}", f"sha256:{HEX[:-1]}", f"sha256:{HEX}0", f"md5:{HEX}", HEX, f"sha256:{HEX[:-2]}..",
     f"sha256:../{HEX[:-3]}", "", "sha256:",
     # Issue 21 item 16: digests were stripped, and "$" matched before a final newline.
     f"  sha256:{HEX} ", f"sha256:{HEX}\n", f"sha256-{HEX}\n", f"sha256:{HEX} ", f" sha256:{HEX}"],
)
def test_parse_digest_rejects(text: str) -> None:
    with pytest.raises(BadRequest, match="invalid digest"):
        parse_digest(text)


def test_parse_digest_non_string() -> None:
    with pytest.raises(BadRequest, match="digest must be a string"):
        parse_digest(123)  # type: ignore[arg-type]
