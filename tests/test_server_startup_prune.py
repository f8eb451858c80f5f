"""At start-up the daemon prunes blobs no model references (as Ollama does), unless NOPRUNE is set."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamalike.config import load_config
from ollamalike.server.state import AppState
from ollamalike.store import Store
from ollamalike.store.manifest import CONFIG_MEDIA_TYPE, MEDIA_MODEL, Descriptor, build_manifest


def _seed(models_dir: Path) -> tuple[str, str]:
    store = Store(models_dir)
    try:
        model, size = store.add_blob_bytes(b"GGUF pretend weights")
        cfg, cfg_size = store.add_blob_bytes(b"{}")
        store.put_manifest("kept:latest", build_manifest(Descriptor(CONFIG_MEDIA_TYPE, cfg, cfg_size),
                                                         [Descriptor(MEDIA_MODEL, model, size)]))
        orphan, _ = store.add_blob_bytes(b"an upload nobody used")
    finally:
        store.close()
    return model, orphan


@pytest.mark.parametrize(("noprune", "orphan_survives"), [("", False), ("1", True)])
async def test_startup_prunes_unreferenced_blobs(models_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                 noprune: str, orphan_survives: bool) -> None:
    model, orphan = _seed(models_dir)
    monkeypatch.setenv("OLLAMALIKE_NOPRUNE", noprune)
    state = AppState.create(load_config())
    try:
        assert state.store.has_blob(model)
        assert state.store.has_blob(orphan) is orphan_survives
    finally:
        await state.close()
