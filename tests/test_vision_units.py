"""The runner's image bookkeeping without a model: [img-N] tags to mtmd markers, image positions in the
prompt (prefix reuse never ends inside an image), and the memory plan counting the projector."""

from __future__ import annotations

from pathlib import Path

import pytest

from ollamalike.runner.vision import MARKER, MediaError, MediaPrompt, RawImage, Span, position_key, tag_order


def test_tags_become_markers_in_text_order() -> None:
    text, order = tag_order("a [img-1] b [img-0] c", 2)
    assert text == f"a {MARKER} b {MARKER} c" and order == [1, 0]
    # A second use of a tag, or a tag past the images sent, stays text.
    text, order = tag_order("[img-0][img-0][img-5]", 1)
    assert text == f"{MARKER}[img-0][img-5]" and order == [0]


def test_an_untagged_image_is_refused() -> None:
    with pytest.raises(MediaError, match=r"image 1 has no \[img-1\] tag"):
        tag_order("only [img-0] here", 2)


def test_marker_is_random_per_process_and_not_the_default() -> None:
    assert MARKER.startswith("<__ollamalike_media_") and MARKER != "<__media__>" and len(MARKER) > 30


def test_position_keys_are_negative_and_follow_content() -> None:
    a = RawImage(2, 1, bytes(6))
    b = RawImage(1, 2, bytes(6))  # same bytes, other shape: another image
    assert a.digest != b.digest
    keys = {position_key(a.digest, 0), position_key(a.digest, 1), position_key(b.digest, 0)}
    assert len(keys) == 3 and all(k < 0 for k in keys)
    assert position_key(a.digest, 0) == position_key(RawImage(2, 1, bytes(6)).digest, 0)


def test_media_prompt_spans() -> None:
    # tokens: 3 text, 4 image positions, 2 text, 4 image positions, 1 text
    p = MediaPrompt(tokens=[1, 2, 3, -9, -9, -9, -9, 5, 6, -8, -8, -8, -8, 7],
                    spans=[Span(3, 4, 0), Span(9, 4, 0)])
    assert p.span_at(3) is not None and p.span_at(4) is None
    assert [p.next_start(i) for i in (0, 3, 4, 9, 10)] == [3, 3, 9, 9, 14]
    # A shared prefix that ends inside an image is cut back to the image's start.
    assert [p.align(n) for n in (2, 3, 5, 7, 8, 12, 13)] == [2, 3, 3, 7, 8, 9, 13]


def test_plan_counts_the_projector(tmp_path: Path) -> None:
    from ollamalike.config import load_config
    from ollamalike.options import Options
    from ollamalike.scheduler.plan import plan_load
    from tests.fakes import resolved_model

    proj = tmp_path / "mmproj.gguf"
    proj.write_bytes(b"\0" * 123_456)
    config = load_config({"OLLAMALIKE_NUM_PARALLEL": "1"})
    without = plan_load(resolved_model(), Options(), config)
    with_proj = plan_load(resolved_model(projectors=[proj]), Options(), config)
    assert with_proj.size - without.size == 123_456
    assert with_proj.spec.projectors == (str(proj),) and without.spec.projectors == ()
    assert with_proj.spec != without.spec  # never shared with the runner of the same model without it


def test_a_context_shift_keeps_every_image() -> None:
    from ollamalike.runner.slots import shift_keep

    # Text only: num_keep's count, capped so that two cells stay after it (one discarded at least).
    assert shift_keep(5, 0, 64) == 5 and shift_keep(40, 0, 41) == 39 and shift_keep(0, 0, 1) is None
    # With images: never before the last image's end, even past num_keep's half-context cap.
    assert shift_keep(5, 40, 64) == 40 and shift_keep(50, 40, 64) == 50
    # The last image ends where no text after it could go: no shift ("length").
    assert shift_keep(5, 63, 64) is None and shift_keep(5, 62, 64) == 62
