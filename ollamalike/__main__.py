"""Allows ``python -m ollamalike``."""

from ollamalike.cli import main

main()
