"""GET /metrics (Prometheus text format) and the one-line-per-request access log: on the app
with aiohttp's test client, and on the real daemon with a tiny model (tokens, latencies,
loaded models, queue depth, pull bytes)."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ollamalike.config import load_config
from ollamalike.server.app import make_app
from tests.daemon import Daemon
from tests.infer_helpers import create_model, start_serving_daemon
from tests.registry_server import DockerRegistry, registry_available


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} from Prometheus text (the official parser validates it)."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> Any:
    return await aiohttp_client(make_app(load_config({"OLLAMALIKE_HOME": str(tmp_path / "home")})))


async def test_metrics_format_and_request_counts_by_route_pattern(client: Any) -> None:
    for _ in range(3):
        assert (await client.get("/api/tags")).status == 200
    assert (await client.post("/api/show", json={"model": "nope"})).status == 404
    assert (await client.head("/api/blobs/sha256:" + "a" * 64)).status == 404
    assert (await client.head("/api/blobs/sha256:" + "b" * 64)).status == 404
    assert (await client.get("/no/such/path/123")).status == 404
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    found = samples(await resp.text())
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).endswith("# EOF\n")
    total = "ollamalike_http_requests_total"
    assert value(found, total, method="GET", endpoint="/api/tags", status="200") == 3
    assert value(found, total, method="POST", endpoint="/api/show", status="404") == 1
    # Route patterns, not raw paths: both digests count under one label set.
    assert value(found, total, method="HEAD", endpoint="/api/blobs/{digest}", status="404") == 2
    assert value(found, total, method="GET", endpoint="unmatched", status="404") == 1
    assert not any("aaaa" in str(labels) or "/no/such" in str(labels) for _, labels in found)
    assert value(found, "ollamalike_http_request_duration_seconds_count", method="GET", endpoint="/api/tags") == 3
    assert value(found, "ollamalike_queue_depth") == 0
    assert value(found, "ollamalike_loaded_models") == 0
    assert value(found, "ollamalike_pull_bytes_total") == 0


async def test_each_app_has_its_own_registry(aiohttp_client: Any, tmp_path: Path) -> None:
    a = await aiohttp_client(make_app(load_config({"OLLAMALIKE_HOME": str(tmp_path / "a")})))
    b = await aiohttp_client(make_app(load_config({"OLLAMALIKE_HOME": str(tmp_path / "b")})))
    await a.get("/api/version")
    await a.get("/api/version")
    found_b = samples(await (await b.get("/metrics")).text())
    assert value(found_b, "ollamalike_http_requests_total", method="GET", endpoint="/api/version", status="200") == 0
    found_a = samples(await (await a.get("/metrics")).text())
    assert value(found_a, "ollamalike_http_requests_total", method="GET", endpoint="/api/version", status="200") == 2


async def test_inference_observer_derives_token_latencies(client: Any) -> None:
    from ollamalike.inference import GenerateRequest

    observe = client.server.app["state"].inference.observer
    # 4 prompt tokens, 5 generated in 0.5 s, 1.5 s in all: first token after 1.0 + 0.1 s.
    observe(GenerateRequest(model="m1"), {"prompt_eval_count": 4, "eval_count": 5, "eval_duration": 500_000_000,
                                          "total_duration": 1_500_000_000})
    observe(GenerateRequest(model="m1"), {"prompt_eval_count": 2, "eval_count": 0, "total_duration": 10})
    found = samples(await (await client.get("/metrics")).text())
    assert value(found, "ollamalike_prompt_tokens_total", model="m1") == 6
    assert value(found, "ollamalike_output_tokens_total", model="m1") == 5
    assert value(found, "ollamalike_time_to_first_token_seconds_count", model="m1") == 1
    assert value(found, "ollamalike_time_to_first_token_seconds_sum", model="m1") == pytest.approx(1.1)
    assert value(found, "ollamalike_token_latency_seconds_sum", model="m1") == pytest.approx(0.1)
    assert value(found, "ollamalike_time_to_first_token_seconds_bucket", model="m1", le="1.0") == 0
    assert value(found, "ollamalike_time_to_first_token_seconds_bucket", model="m1", le="2.5") == 1


async def test_access_log_line_per_request(client: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ollamalike.access"):
        await client.get("/api/tags")
        await client.post("/api/show", json={"model": "missing-model"})
        await client.post("/api/generate", data=b"{not json")
    lines = [r.getMessage() for r in caplog.records if r.name == "ollamalike.access"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("GET /api/tags 200 ") and lines[0].endswith("s")
    assert lines[1].startswith("POST /api/show 404 ")
    assert lines[2].startswith("POST /api/generate 400 ")


# -- the real daemon --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory, tiny_chat_gguf: Path) -> Iterator[Daemon]:
    home = tmp_path_factory.mktemp("metrics-home")
    daemon = start_serving_daemon(home, tiny_chat_gguf, env={"OLLAMALIKE_NUM_PARALLEL": "2"})
    try:
        yield daemon
    finally:
        print(daemon.logs())
        daemon.stop()


def scrape(d: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(d.base_url + "/metrics", timeout=30) as resp:
        return samples(resp.read().decode())


SECRET_PROMPT = "purple-elephant-prompt-7731"


@pytest.mark.e2e
def test_daemon_metrics_after_inference(d: Daemon) -> None:
    status, gen = d.request("POST", "/api/generate", {"model": "tiny", "prompt": SECRET_PROMPT, "stream": False,
                                                      "options": {"num_predict": 6, "temperature": 0}})
    assert status == 200, gen
    status, chat = d.request("POST", "/v1/chat/completions", {"model": "tiny", "max_tokens": 4,
                                                             "messages": [{"role": "user", "content": "hi"}]})
    assert status == 200, chat
    found = scrape(d)
    prompt = gen["prompt_eval_count"] + chat["usage"]["prompt_tokens"]
    output = gen["eval_count"] + chat["usage"]["completion_tokens"]
    assert value(found, "ollamalike_prompt_tokens_total", model="tiny") == prompt
    assert value(found, "ollamalike_output_tokens_total", model="tiny") == output
    assert value(found, "ollamalike_time_to_first_token_seconds_count", model="tiny") == 2
    assert 0 < value(found, "ollamalike_time_to_first_token_seconds_sum", model="tiny") < 60
    assert value(found, "ollamalike_token_latency_seconds_count", model="tiny") == 2
    assert value(found, "ollamalike_http_requests_total", method="POST", endpoint="/api/generate", status="200") == 1
    assert value(found, "ollamalike_http_requests_total", method="POST", endpoint="/v1/chat/completions",
                 status="200") == 1
    assert value(found, "ollamalike_loaded_models") == 1
    status, ps = d.request("GET", "/api/ps")
    name = ps["models"][0]["name"]
    assert value(found, "ollamalike_model_memory_bytes", model=name, kind="total") == ps["models"][0]["size"] > 0
    assert value(found, "ollamalike_queue_depth") == 0

    logs = d.logs()
    line = next(x for x in logs.splitlines() if "ollamalike.access: POST /api/generate 200" in x)
    assert f"model=tiny tokens={gen['prompt_eval_count']}/{gen['eval_count']}" in line
    assert "model=tiny" in next(x for x in logs.splitlines() if "POST /v1/chat/completions 200" in x)
    assert SECRET_PROMPT not in logs  # prompts are not logged unless asked


@pytest.mark.e2e
def test_prompts_logged_only_when_asked(daemon_factory: Callable[..., Daemon], tiny_chat_gguf: Path,
                                        tmp_path: Path) -> None:
    d = daemon_factory({"OLLAMALIKE_LOG_PROMPTS": "1"})
    create_model(d, "tiny", f"FROM {tiny_chat_gguf}\n", tmp_path)
    status, _ = d.request("POST", "/api/generate", {"model": "tiny", "prompt": SECRET_PROMPT, "stream": False,
                                                    "options": {"num_predict": 2}})
    assert status == 200
    assert f"prompt='{SECRET_PROMPT}'" in d.logs()


@pytest.mark.e2e
@pytest.mark.registry
@pytest.mark.skipif(not registry_available(), reason="needs /usr/bin/docker-registry")
def test_pull_bytes_counted(daemon_factory: Callable[..., Daemon], tiny_chat_gguf: Path, tmp_path: Path) -> None:
    registry = DockerRegistry(tmp_path / "registry")
    registry.start()
    try:
        a = daemon_factory()
        b = daemon_factory()
        name = f"{registry.host}/m/tiny:v1"
        create_model(a, name, f"FROM {tiny_chat_gguf}\n", tmp_path)
        assert a.cli("push", name, "--insecure").returncode == 0
        assert b.cli("pull", name, "--insecure").returncode == 0
        size = tiny_chat_gguf.stat().st_size
        pulled = value(scrape(b), "ollamalike_pull_bytes_total")
        # The model layer plus the small config blob.
        assert size <= pulled < size + 64 * 1024
        assert value(scrape(a), "ollamalike_pull_bytes_total") == 0
    finally:
        registry.stop()


async def test_debug_access_log_has_client_details(aiohttp_client: Any, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    app = make_app(load_config({"OLLAMALIKE_HOME": str(tmp_path / "home"), "OLLAMALIKE_DEBUG": "1"}))
    client = await aiohttp_client(app)
    with caplog.at_level(logging.INFO, logger="ollamalike.access"):
        await client.get("/api/version", headers={"User-Agent": "probe/1.0"})
    line = next(r.getMessage() for r in caplog.records if r.name == "ollamalike.access")
    assert line.startswith("GET /api/version 200 ") and "remote=127.0.0.1" in line and "ua='probe/1.0'" in line
