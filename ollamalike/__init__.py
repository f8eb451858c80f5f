"""ollamalike: an Ollama-compatible local LLM model manager and daemon."""

__version__ = "0.1.0"
