"""Operations: ``GET /metrics`` (Prometheus) and one access-log line per request.

Each app has its own ``CollectorRegistry`` (several apps can live in one test process). Request
counts and durations come from the access middleware, keyed by the route pattern; token counts
and latencies from the final chunk of each generate/chat/embed (the inference service calls the
observer this module installs on ``state.inference``); queue depth and loaded models are read from
the scheduler at scrape time; pull bytes from the registry's shared transfer counter.

This module also installs the security (``server.security``) and size-limit (``server.limits``)
middlewares: it is the route module ``make_app`` lists, and their order matters (host, CORS,
auth, limits), so they are composed here in one place.
"""

from __future__ import annotations

import contextvars
import logging
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from ollamalike.errors import OllamalikeError
from ollamalike.inference import ChatRequest, GenerateRequest, InferenceRequest
from ollamalike.server import limits, security
from ollamalike.server.chunk_fields import count_of

log = logging.getLogger("ollamalike.access")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

METRICS_KEY = "metrics"

# Model loads and long generations are slow; the buckets reach minutes.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)

# Per-request facts the access line reports, filled in by the inference observer. A ContextVar
# holding a mutable dict: tasks spawned by the handler copy the context and share the dict.
_REQUEST_INFO: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar("ollamalike_request_info",
                                                                                      default=None)


class Metrics:
    """The app's registry and the metrics recorded as events happen."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("ollamalike_http_requests", "HTTP requests by route pattern, method and status",
                                ["method", "endpoint", "status"], registry=self.registry)
        self.request_seconds = Histogram("ollamalike_http_request_duration_seconds",
                                         "Time to answer a request (streams: until the last byte)",
                                         ["method", "endpoint"], buckets=_DURATION_BUCKETS, registry=self.registry)
        self.prompt_tokens = Counter("ollamalike_prompt_tokens", "Prompt tokens evaluated, by model",
                                     ["model"], registry=self.registry)
        self.output_tokens = Counter("ollamalike_output_tokens", "Tokens generated, by model",
                                     ["model"], registry=self.registry)
        self.first_token = Histogram("ollamalike_time_to_first_token_seconds",
                                     "From request start to the first generated token (queue, load and prompt included)",
                                     ["model"], buckets=_DURATION_BUCKETS, registry=self.registry)
        self.token_latency = Histogram("ollamalike_token_latency_seconds",
                                       "Mean time per generated token after the first, per request",
                                       ["model"], buckets=_TOKEN_BUCKETS, registry=self.registry)

    def observe_inference(self, req: InferenceRequest, final: Mapping[str, object]) -> None:
        """Record one finished generate/chat/embed from its final chunk (durations in ns): the
        service's ``InferenceObserver``."""
        model = str(req.model or final.get("model") or "unknown")
        prompt = count_of(final, "prompt_eval_count")
        output = count_of(final, "eval_count")
        self.prompt_tokens.labels(model).inc(prompt)
        self.output_tokens.labels(model).inc(output)
        eval_ns = count_of(final, "eval_duration")
        total_ns = count_of(final, "total_duration")
        if output > 0 and total_ns > 0:
            per_token_ns = eval_ns / output
            # The runner's eval_duration covers the generated tokens; everything before it, plus
            # one token's worth, is what the client waited for the first token.
            self.first_token.labels(model).observe(max(0.0, (total_ns - eval_ns + per_token_ns) / 1e9))
            if output > 1:
                self.token_latency.labels(model).observe(per_token_ns / 1e9)
        info = _REQUEST_INFO.get()
        if info is not None:
            info.update(model=model, prompt_tokens=prompt, output_tokens=output)
            if info.get("log_prompts"):
                info["prompt"] = _prompt_of(req)


def _prompt_of(req: InferenceRequest) -> object:
    """What the access log shows as the prompt (OLLAMALIKE_LOG_PROMPTS): text, messages or inputs."""
    if isinstance(req, GenerateRequest):
        return req.prompt or None
    if isinstance(req, ChatRequest):
        return req.messages or None
    return req.input or None


class SchedulerCollector(Collector):
    """Gauges read from the live scheduler and the pull counter at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        state = self._app.get("state")
        if state is None:
            return
        scheduler = state.scheduler
        queue = GaugeMetricFamily("ollamalike_queue_depth", "Requests waiting for a runner slot")
        queue.add_metric([], float(scheduler.queued))
        yield queue
        loaded = scheduler.ps()
        count = GaugeMetricFamily("ollamalike_loaded_models", "Models loaded in runner processes")
        count.add_metric([], float(len(loaded)))
        yield count
        memory = GaugeMetricFamily("ollamalike_model_memory_bytes", "Memory a loaded model uses",
                                   labels=["model", "kind"])
        for entry in loaded:
            size, vram = int(entry.get("size") or 0), int(entry.get("size_vram") or 0)
            memory.add_metric([str(entry.get("name")), "total"], float(size))
            memory.add_metric([str(entry.get("name")), "vram"], float(vram))
        yield memory
        pulled = CounterMetricFamily("ollamalike_pull_bytes", "Bytes downloaded by model pulls")
        pulled.add_metric([], float(state.pull_stats.get("transferred", 0)))
        yield pulled


def _metrics(app: web.Application) -> Metrics:
    metrics: Metrics = app[METRICS_KEY]
    return metrics


def _endpoint(request: web.Request) -> str:
    """The route pattern ("/api/blobs/{digest}"), never the raw path (unbounded label values)."""
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    if resource is None:
        return "unmatched"
    return str(resource.canonical)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    started = time.perf_counter()
    info: dict[str, object] = {"log_prompts": request.app["config"].log_prompts}
    token = _REQUEST_INFO.set(info)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except OllamalikeError as e:
        status = e.status
        raise
    except web.HTTPException as e:
        status = e.status
        raise
    except BaseException:
        # Cancelled (client gone) or a crash the error middleware will answer with 500.
        status = 499 if request.transport is None or request.transport.is_closing() else 500
        raise
    finally:
        _REQUEST_INFO.reset(token)
        elapsed = time.perf_counter() - started
        _log_request(request, status, elapsed, info)
        if METRICS_KEY in request.app:
            endpoint = _endpoint(request)
            metrics = _metrics(request.app)
            metrics.requests.labels(request.method, endpoint, str(status)).inc()
            metrics.request_seconds.labels(request.method, endpoint).observe(elapsed)


def _log_request(request: web.Request, status: int, elapsed: float, info: dict[str, object]) -> None:
    config = request.app["config"]
    parts = [request.method, request.path, str(status)]
    if "model" in info:
        parts.append(f"model={info['model']}")
        parts.append(f"tokens={info.get('prompt_tokens', 0)}/{info.get('output_tokens', 0)}")
    parts.append(f"{elapsed:.3f}s")
    if config.debug:
        parts.append(f"remote={request.remote} ua={request.headers.get('User-Agent', '-')!r}")
    if config.log_prompts and info.get("prompt") is not None:
        parts.append(f"prompt={info['prompt']!r}")
    log.info("%s", " ".join(parts))


async def metrics_handler(request: web.Request) -> web.Response:
    # Negotiated from Accept: the classic 0.0.4 text format by default, OpenMetrics when asked.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(_metrics(request.app).registry)
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _install_observers(app: web.Application) -> None:
    """After the state exists (on_startup runs after the state context): hand it our hooks."""
    state = app["state"]
    state.inference.observer = _metrics(app).observe_inference


def setup(app: web.Application) -> None:
    metrics = Metrics()
    metrics.registry.register(SchedulerCollector(app))
    with warnings.catch_warnings():
        # Plain string keys, like app["state"] (see server.app._set).
        warnings.simplefilter("ignore", web.NotAppKeyWarning)
        app[METRICS_KEY] = metrics
    app.on_startup.append(_install_observers)
    security.setup(app)
    app.router.add_get("/metrics", metrics_handler)


MIDDLEWARES: list[Middleware] = [access_middleware, *security.MIDDLEWARES, *limits.MIDDLEWARES]
