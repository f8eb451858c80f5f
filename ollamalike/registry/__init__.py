"""Pull and push against OCI registries, Hugging Face GGUF downloads, and importing an Ollama models directory.

``pull.pull_model`` / ``push.push_model`` / ``import_ollama.import_models`` are async generators of
Ollama-style status dicts; the daemon's routes stream them as NDJSON.
"""

from __future__ import annotations
