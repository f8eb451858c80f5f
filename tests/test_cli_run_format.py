"""The run/ps CLI's formatting: Go durations, --verbose statistics, word wrap, ps columns."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from ollamalike.cli.chat import WordWrapper, format_stats, go_duration
from ollamalike.cli.views import processor_text, ps_table, until_text


@pytest.mark.parametrize(
    "ns, text",
    [
        (0, "0s"),
        (512, "512ns"),
        (1_500, "1.5µs"),
        (12_345_678, "12.345678ms"),
        (1_000_000_000, "1s"),
        (1_234_567_891, "1.234567891s"),
        (62_500_000_000, "1m2.5s"),
        (3_600_000_000_000, "1h0m0s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_format_stats_matches_ollama_layout() -> None:
    text = format_stats({
        "total_duration": 2_000_000_000, "load_duration": 1_000_000, "prompt_eval_count": 10,
        "prompt_eval_duration": 500_000_000, "eval_count": 30, "eval_duration": 1_500_000_000,
    })
    assert text.splitlines() == [
        "total duration:       2s",
        "load duration:        1ms",
        "prompt eval count:    10 token(s)",
        "prompt eval duration: 500ms",
        "prompt eval rate:     20.00 tokens/s",
        "eval count:           30 token(s)",
        "eval duration:        1.5s",
        "eval rate:            20.00 tokens/s",
    ]


def wrap(text: str, width: int, step: int) -> str:
    w = WordWrapper(width)
    out = "".join(w.feed(text[i : i + step]) for i in range(0, len(text), step))
    return out + w.flush()


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_word_wrapper_breaks_between_words(step: int) -> None:
    text = "the quick brown fox jumps over the lazy dog again and again\nnew paragraph here"
    out = wrap(text, 20, step)
    lines = out.split("\n")
    assert all(len(line) <= 20 for line in lines), lines
    assert " ".join(out.split()) == " ".join(text.split())  # no word lost or split
    assert "new paragraph here" in lines


def test_word_wrapper_hard_breaks_overlong_words() -> None:
    out = wrap("x" * 45, 20, 1)
    assert [len(line) for line in out.split("\n") if line] == [20, 20, 5]


def test_ps_columns() -> None:
    now = datetime.now(timezone.utc)
    assert processor_text(100, 0) == "100% CPU"
    assert processor_text(100, 100) == "100% GPU"
    assert processor_text(100, 52) == "48%/52% CPU/GPU"
    assert until_text((now + timedelta(minutes=4, seconds=10)).isoformat(), now) == "4 minutes from now"
    assert until_text((now + timedelta(days=365 * 250)).isoformat(), now) == "Forever"
    assert until_text((now - timedelta(seconds=1)).isoformat(), now) == "Stopping..."
    text = ps_table([{"name": "tiny:latest", "digest": "ab" * 32, "size": 5_000_000, "size_vram": 0,
                      "context_length": 2048, "expires_at": (now + timedelta(days=400 * 365)).isoformat()}])
    header, row = text.splitlines()
    assert header.split() == ["NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"]
    assert row.split() == ["tiny:latest", "ab" * 6, "5", "MB", "100%", "CPU", "2048", "Forever"]
