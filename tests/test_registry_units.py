"""Unit tests of the registry pieces that need no server: auth rules, part planning, progress display."""

from __future__ import annotations

import io

import pytest

from ollamalike.cli.progress import Bar, Progress, human_bytes, human_duration
from ollamalike.errors import RegistryError
from ollamalike.registry import auth, download
from ollamalike.registry import parts as parts_mod
from ollamalike.registry.parts import MIN_PART, OrderedHasher, Part, plan_parts, restore_parts


@pytest.mark.parametrize(
    ("header", "scheme", "params"),
    [
        (
            'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull"',
            "bearer",
            {"realm": "https://auth.example.com/token", "service": "registry.example.com", "scope": "repository:a/b:pull"},
        ),
        ('Basic realm="Registry Realm"', "basic", {"realm": "Registry Realm"}),
        ("bearer realm=https://x/t, scope=repository:a/b:pull,push", "bearer", {"realm": "https://x/t", "scope": "repository:a/b:pull"}),
        ('Bearer realm="https://x/t",error="invalid_token"', "bearer", {"realm": "https://x/t", "error": "invalid_token"}),
    ],
)
def test_parse_challenge(header: str, scheme: str, params: dict[str, str]) -> None:
    got = auth.parse_challenge(header)
    assert got.scheme == scheme
    for key, value in params.items():
        assert got.params[key] == value


@pytest.mark.parametrize(
    ("url", "safe"),
    [
        ("https://auth.example.com/token", True),
        ("http://auth.example.com/token", False),
        ("http://127.0.0.1:5000/token", True),
        ("http://localhost/token", True),
        ("http://[::1]:8080/token", True),
        ("http://10.0.0.1/token", False),
        ("ftp://127.0.0.1/token", False),
        ("http://127.0.0.1.evil.com/token", False),
    ],
)
def test_secrets_only_over_https_or_loopback(url: str, safe: bool) -> None:
    assert auth.is_safe_for_secrets(url) is safe


def test_credentials_for_host_with_and_without_port() -> None:
    entries = (("registry.example.com", "u1", "p1"), ("127.0.0.1:5000", "u2", "p2"))
    assert auth.credentials_for(entries, "registry.example.com:443") == ("u1", "p1")
    assert auth.credentials_for(entries, "Registry.Example.com") == ("u1", "p1")
    assert auth.credentials_for(entries, "127.0.0.1:5000") == ("u2", "p2")
    assert auth.credentials_for(entries, "127.0.0.1:6000") is None
    assert auth.credentials_for(entries, "other.example.com") is None


@pytest.mark.parametrize(
    ("size", "count"),
    [(0, 1), (1, 1), (16 * 2**20, 1), (64 * 2**20 - 1, 4), (200 * 2**20, 13), (4 * 2**30, 256), (10**12, 1024)],
)
def test_plan_parts_cover_the_blob_exactly(size: int, count: int) -> None:
    parts = plan_parts(size)
    assert len(parts) == count
    assert parts[0].start == 0 and parts[-1].end == size
    for a, b in zip(parts, parts[1:], strict=False):
        assert a.end == b.start
    assert all(p.end - p.start >= MIN_PART for p in parts[:-1])


@pytest.mark.parametrize(
    ("state", "ok"),
    [
        ({"size": 100, "parts": [[0, 50, 10], [50, 100, 50]]}, True),
        ({"size": 100, "parts": [[0, 50, 60], [50, 100, 0]]}, False),  # done beyond the part
        ({"size": 100, "parts": [[0, 40, 0], [50, 100, 0]]}, False),  # a gap
        ({"size": 100, "parts": [[0, 50, 0]]}, False),  # does not cover the blob
        ({"size": 99, "parts": [[0, 99, 0]]}, False),  # another size
        ({"size": 100, "parts": [[0, 100, -1]]}, False),
        ({"size": 100, "parts": "nonsense"}, False),
        (None, False),
    ],
)
def test_restore_rejects_inconsistent_state(state: object, ok: bool) -> None:
    restored = restore_parts(state, 100)  # type: ignore[arg-type]
    assert (restored is not None) is ok
    if ok:
        assert restored == [Part(0, 50, 10), Part(50, 100, 50)]


@pytest.mark.parametrize(
    ("n", "text"), [(0, "0 B"), (999, "999 B"), (1500, "1.5 KB"), (4_700_000_000, "4.7 GB"), (12_000_000, "12 MB"), (123_456_789, "123 MB")]
)
def test_human_bytes(n: int, text: str) -> None:
    assert human_bytes(n) == text


@pytest.mark.parametrize(("s", "text"), [(0, "0s"), (45, "45s"), (123, "2m3s"), (3720, "1h2m")])
def test_human_duration(s: float, text: str) -> None:
    assert human_duration(s) == text


def test_bar_shows_size_speed_and_time_left() -> None:
    bar = Bar("pulling 6a0746a1ec1a", 4_700_000_000)
    bar.update(0, 4_700_000_000, 100.0)
    bar.update(1_200_000_000, 4_700_000_000, 200.0)  # 12 MB/s over 100 s
    line = bar.render(100)
    assert line.startswith("pulling 6a0746a1ec1a...  25% ▕")
    assert "1.2 GB/4.7 GB" in line and "12 MB/s" in line and "4m52s" in line
    bar.update(4_700_000_000, 4_700_000_000, 300.0)
    done = bar.render(100)
    assert "100% ▕" + "█" in done and done.endswith("▏ 4.7 GB")


def _stream() -> list[dict[str, object]]:
    d = "sha256:" + "ab" * 32
    return [
        {"status": "pulling manifest"},
        {"status": "pulling ababababab", "digest": d, "total": 1000, "completed": 0},
        {"status": "pulling ababababab", "digest": d, "total": 1000, "completed": 500},
        {"status": "pulling ababababab", "digest": d, "total": 1000, "completed": 1000},
        {"status": "verifying sha256 digest"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]


def test_progress_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=False)
    for item in _stream():
        progress.update(item)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert lines[0] == "pulling manifest"
    assert lines[1] == "pulling ababababab (1 KB)"
    assert lines[2].startswith("pulling ababababab... 100% ▕") and lines[2].endswith(" 1 KB")
    assert lines[3:] == ["verifying sha256 digest", "writing manifest", "success"]
    assert "\x1b" not in out.getvalue()


def test_progress_redraws_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    progress = Progress(out, tty=True)
    for item in _stream():
        progress.update(item)
        progress.redraw()
    progress.finish()
    text = out.getvalue()
    assert "\x1b[" in text and "F" in text  # cursor moved back up to redraw
    final = text.rsplit("\x1b[5F", 1)[-1]
    visible = [line.replace("\x1b[2K", "") for line in final.splitlines()]
    assert visible[0] == "pulling manifest"
    assert visible[1].startswith("pulling ababababab... 100%")
    assert visible[2:] == ["verifying sha256 digest", "writing manifest", "success"]


@pytest.mark.parametrize(
    ("header", "start", "ok"),
    [("bytes 100-199/1000", 100, True), ("bytes 0-9/10", 0, True), ("bytes 101-199/1000", 100, False),
     ("", 0, False), ("items 0-9/10", 0, False), ("bytes */1000", 0, False)],
)
def test_content_range_must_start_where_asked(header: str, start: int, ok: bool) -> None:
    assert download._range_starts_at(header, start) is ok


async def test_ordered_hasher_out_of_order_parts(tmp_path: object) -> None:
    import hashlib
    import os
    import random
    from pathlib import Path

    path = Path(str(tmp_path)) / "partial"
    blob = os.urandom(300_000)
    path.write_bytes(b"\0" * len(blob))
    parts = [Part(0, 100_000), Part(100_000, 200_000), Part(200_000, 300_000)]
    hasher = OrderedHasher(path, parts)
    # Pieces of every part, written in a shuffled order that keeps each part sequential.
    queues = [[(p.start + i, blob[p.start + i : min(p.end, p.start + i + 7_000)]) for i in range(0, p.end - p.start, 7_000)] for p in parts]
    rng = random.Random(7)
    with open(path, "r+b") as f:
        while any(queues):
            q = rng.choice([q for q in queues if q])
            pos, data = q.pop(0)
            f.seek(pos)
            f.write(data)
            f.flush()
            part = next(p for p in parts if p.start <= pos < p.end)
            part.done += len(data)
            hasher.written(pos, [data])
    assert hasher.digest(len(blob)) == "sha256:" + hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize("limit", [1 << 30, 10_000])
def test_ordered_hasher_reads_back_what_it_could_not_keep(tmp_path: object, limit: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    import os
    from pathlib import Path

    monkeypatch.setattr(parts_mod, "PENDING_LIMIT", limit)
    path = Path(str(tmp_path)) / "partial"
    blob = os.urandom(90_000)
    path.write_bytes(blob[:30_000] + b"\0" * 60_000)
    # A resumed pull: part 0 already on disk, then part 2 lands before part 1.
    parts = [Part(0, 30_000, done=30_000), Part(30_000, 60_000), Part(60_000, 90_000)]
    hasher = OrderedHasher(path, parts)
    assert hasher.frontier == 30_000
    with open(path, "r+b") as f:
        for pos in (60_000, 75_000, 30_000, 45_000):
            f.seek(pos)
            f.write(blob[pos : pos + 15_000])
            f.flush()
            hasher.written(pos, [blob[pos : pos + 5_000], blob[pos + 5_000 : pos + 15_000]])
    assert hasher.digest(len(blob)) == "sha256:" + hashlib.sha256(blob).hexdigest()
    assert hasher.ahead == {} and hasher.ahead_bytes == 0


def test_partial_blob_writes_many_chunks_at_once(tmp_path: object) -> None:
    from pathlib import Path

    from ollamalike.store import Store

    store = Store(Path(str(tmp_path)) / "models")
    try:
        part = store.partial("sha256:" + "a" * 64, 2_000)
        chunks = [bytes([i]) * (i + 1) for i in range(40)]
        part.write_chunks_at(100, chunks)
        many = [b"z"] * 1_000  # above IOV_MAX: split over several pwritev calls
        part.write_chunks_at(1_000, many)
        part.flush()  # what the downloader runs in the background every FLUSH_EVERY bytes
        data = part.path.read_bytes()
        assert data[100 : 100 + sum(map(len, chunks))] == b"".join(chunks)
        assert data[1_000:2_000] == b"z" * 1_000
        with pytest.raises(RegistryError):
            part.write_chunks_at(1_999, [b"a", b"b"])
    finally:
        store.close()


@pytest.mark.parametrize(
    ("host", "local"),
    [("127.0.0.1:5000", True), ("localhost", True), ("[::1]:5000", True), ("::1", True),
     ("registry.ollama.ai", False), ("10.0.0.1:5000", False), ("[fe80::1]:80", False)],
)
def test_loopback_registries_get_fewer_streams(host: str, local: bool) -> None:
    assert download._is_loopback(host) is local


def test_local_plan_is_one_part() -> None:
    assert plan_parts(1 << 30, download.LOCAL_CHUNKS) == [Part(0, 1 << 30)]
    assert plan_parts(3 * MIN_PART, 2) == [Part(0, 3 * MIN_PART // 2), Part(3 * MIN_PART // 2, 3 * MIN_PART)]


def test_ordered_hasher_copies_what_it_keeps_from_reused_buffers(tmp_path: object) -> None:
    import hashlib
    import os
    from pathlib import Path

    path = Path(str(tmp_path)) / "partial"
    blob = os.urandom(40_000)
    path.write_bytes(blob)
    hasher = OrderedHasher(path, [Part(0, 20_000), Part(20_000, 40_000)])
    buffer = bytearray(blob[20_000:])
    hasher.written(20_000, [memoryview(buffer)], copy=True)  # ahead of the frontier: kept
    buffer[:] = b"\xff" * len(buffer)  # the reader reuses its buffer for the next read
    hasher.written(0, [blob[:20_000]])
    assert hasher.digest(len(blob)) == "sha256:" + hashlib.sha256(blob).hexdigest()


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, 0), ("", 0), ("0-0", 0), ("0-9", 10), ("bytes=0-1048575", 1048576), ("5-9", None), ("0-x", None), ("junk", None)],
)
def test_upload_status_range(header: str | None, expected: int | None) -> None:
    from ollamalike.registry.upload import uploaded_bytes

    if expected is None:
        with pytest.raises(RegistryError, match="unreadable upload range"):
            uploaded_bytes(header)
    else:
        assert uploaded_bytes(header) == expected


async def test_a_token_renewed_by_another_request_is_reused_not_fetched_again() -> None:
    from types import SimpleNamespace

    from ollamalike.names import ModelName
    from ollamalike.registry import oci

    class NoSession:
        def __getattr__(self, name: str) -> object:
            raise AssertionError("no token should be fetched")

    client = oci.RegistryClient(NoSession(), ModelName.parse("registry.example.com/ns/m:1"))  # type: ignore[arg-type]
    client._authorization = "Bearer fresh"  # what a parallel request just got from the realm
    challenge = SimpleNamespace(headers={"WWW-Authenticate": 'Bearer realm="https://auth.example.com/token"'})
    # This request's 401 was for the token before: retry with the fresh one.
    assert await client._answer_challenge(challenge, sent="Bearer stale") is True  # type: ignore[arg-type]
    assert client._authorization == "Bearer fresh"
