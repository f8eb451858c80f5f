"""ollamalike: an Ollama-compatible local LLM model manager and daemon."""

__version__ = "0.1.0"
# The Ollama release whose API and Modelfile surface this daemon implements: what a Modelfile's
# ``REQUIRES`` (written against Ollama's versions) is compared with. 0.21.3 is the release that
# accepted ``think: "max"``, the newest request field we take; renderer and parser names of later
# releases are known by name (docs/modelfile.md says which render with the model's template).
OLLAMA_VERSION = "0.21.3"
