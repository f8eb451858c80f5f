"""Shared fixtures: every test gets a private data directory; tiny GGUF models are made once per session."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.daemon import Daemon
    from tests.registry_server import DockerRegistry


@pytest.fixture(autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's real store: OLLAMALIKE_HOME and the models dir point at a temp dir."""
    home = tmp_path_factory.mktemp("home")
    for key in ("OLLAMA_MODELS", "OLLAMA_HOST", "OLLAMALIKE_HOST", "OLLAMALIKE_API_KEY", "OLLAMA_ORIGINS",
                "OLLAMALIKE_ORIGINS", "OLLAMALIKE_KEEP_ALIVE", "OLLAMA_KEEP_ALIVE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OLLAMALIKE_HOME", str(home))
    monkeypatch.setenv("OLLAMALIKE_MODELS", str(home / "models"))
    # Hugging Face must never be reached: tests that need it point HF_ENDPOINT at a local server.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    return home


@pytest.fixture
def models_dir(_private_data_dir: Path) -> Path:
    return _private_data_dir / "models"


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tiny-models")


@pytest.fixture(scope="session")
def tiny_chat_gguf(tiny_models_dir: Path) -> Path:
    """A tiny random-weight llama-architecture chat model (SentencePiece vocab, BOS/EOS, chat template)."""
    from ollamalike.testmodels import write_tiny_llama

    return write_tiny_llama(tiny_models_dir / "tiny-chat.gguf")


@pytest.fixture(scope="session")
def tiny_chat_q4_gguf(tiny_models_dir: Path) -> Path:
    """The same architecture with Q4_0 weights: exercises quantized kernels."""
    from ollamalike.testmodels import write_tiny_llama

    return write_tiny_llama(tiny_models_dir / "tiny-chat-q4_0.gguf", quant="Q4_0")


@pytest.fixture(scope="session")
def tiny_embed_gguf(tiny_models_dir: Path) -> Path:
    """A tiny random-weight BERT-architecture embedding model (WordPiece vocab, mean pooling)."""
    from ollamalike.testmodels import write_tiny_bert

    return write_tiny_bert(tiny_models_dir / "tiny-embed.gguf")


# --- End-to-end daemon fixtures (tests/daemon.py) ------------------------------------------------
# ``daemon``: the real ``ollamalike serve`` on a free port with this test's private home; stopped with
# SIGTERM at teardown, asserting exit 0 and no surviving runners. ``daemon_factory(extra_env=None,
# home=None)`` starts more (other env, e.g. OLLAMALIKE_API_KEY). Daemon logs are printed at teardown,
# so pytest shows them for a failing test.


@pytest.fixture
def daemon_factory(
    _private_data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Daemon]]:
    from tests.daemon import start_daemon

    started: list[Daemon] = []

    def start(extra_env: dict[str, str] | None = None, home: Path | None = None) -> Daemon:
        if home is None:
            home = _private_data_dir if not started else tmp_path_factory.mktemp("daemon-home")
        d = start_daemon(home, extra_env)
        started.append(d)
        return d

    yield start
    errors = []
    for d in started:
        print(f"--- daemon log ({d.base_url}) ---\n{d.logs()}")
        try:
            d.stop()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n".join(errors)


@pytest.fixture
def daemon(daemon_factory: Callable[..., Daemon]) -> Daemon:
    return daemon_factory()


# --- Registry fixture (tests/registry_server.py) ---------------------------------------------------
# ``registry``: a real Debian docker-registry on a free loopback port, one per test module; modules
# using it skip themselves when /usr/bin/docker-registry is missing (``registry_available()``).


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerRegistry]:
    from tests.registry_server import DockerRegistry

    reg = DockerRegistry(tmp_path_factory.mktemp("registry"))
    reg.start()
    yield reg
    reg.stop()


# --- Real-model tier (tests/realmodels.py) --------------------------------------------------------
# Small real models from the package index, pinned by sha256. A missing one fails the test (never a
# skip). ``real_daemon`` is one daemon per module serving them as ``qwen`` and ``gemma``.


@pytest.fixture(scope="session")
def qwen_gguf() -> Path:
    """Qwen2.5-Coder 0.5B Instruct Q4_K_M (151k vocabulary, tool-calling chat template)."""
    from tests.realmodels import real_model_path

    return real_model_path("qwen")


@pytest.fixture(scope="session")
def gemma_gguf() -> Path:
    """Gemma 3 270M base Q4_K_M (262k vocabulary)."""
    from tests.realmodels import real_model_path

    return real_model_path("gemma")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 as a Hugging Face safetensors directory."""
    from tests.realmodels import real_model_path

    return real_model_path("minilm")


@pytest.fixture(scope="module")
def real_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    from tests.realmodels import start_real_daemon

    d = start_real_daemon(tmp_path_factory.mktemp("real-home"))
    yield d
    print(f"--- real daemon log ({d.base_url}) ---\n{d.logs()}")
    d.stop()
