"""``Engine``: a model backed by an external OpenAI-compatible inference engine, as its Modelfile
declares it and its manifest stores it.

The Modelfile line (``ENGINE`` takes the place of ``FROM``)::

    ENGINE openai http://gpu-host:8000/v1 model=Qwen/Qwen2.5-7B-Instruct api_key_env=VLLM_API_KEY num_parallel=16

``openai`` is the engine's API (the only one so far: vLLM, llama-server, SGLang, another
ollamalike all speak it); then the base URL the engine's ``/v1`` routes hang off; then ``key=value``
options: ``model`` (required: the engine's model id), ``api_key_env`` (the NAME of the environment
variable of the daemon that holds the key: the key itself is never written into a layer) and
``num_parallel`` (requests in flight to it at once; the daemon's OLLAMALIKE_NUM_PARALLEL when
unset). The manifest stores it as one small JSON layer (``MEDIA_ENGINE``) whose bytes depend only
on these values, so ``show --modelfile`` writes a line that creates the same digest again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ollamalike.errors import BadRequest

KINDS = ("openai",)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_MODEL_ID_RE = re.compile(r"[^\s\"']{1,256}\Z")
_OPTIONS = ("model", "api_key_env", "num_parallel")
MAX_NUM_PARALLEL = 4096


@dataclass(frozen=True)
class Engine:
    kind: str
    url: str  # the base URL, without a trailing slash: "/chat/completions" etc. are appended
    model: str  # the engine's model id
    api_key_env: str | None = None
    num_parallel: int = 0  # 0: the daemon's num_parallel

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise BadRequest(f"ENGINE: unknown engine API {self.kind!r} (expected {' or '.join(KINDS)})")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise BadRequest(f"ENGINE: the engine URL must be http:// or https:// with a host, got {self.url!r}")
        if parts.username is not None or parts.password is not None:
            # A credential in the URL would be stored in a layer and shown by ``show``.
            raise BadRequest("ENGINE: the engine URL must not hold credentials: name the key's environment "
                             "variable with api_key_env=")
        if parts.query or parts.fragment:
            raise BadRequest(f"ENGINE: the engine URL must not have a query or fragment, got {self.url!r}")
        try:
            parts.port  # noqa: B018 (raises ValueError on a bad port)
        except ValueError:
            raise BadRequest(f"ENGINE: the engine URL has an invalid port: {self.url!r}") from None
        if self.url.endswith("/"):
            object.__setattr__(self, "url", self.url.rstrip("/"))
        if not _MODEL_ID_RE.match(self.model):
            raise BadRequest(f"ENGINE: model= must be the engine's model id (no blanks or quotes), got {self.model!r}")
        if self.api_key_env is not None and not _ENV_NAME_RE.match(self.api_key_env):
            raise BadRequest(f"ENGINE: api_key_env= must be an environment variable name, got {self.api_key_env!r}")
        if not 0 <= self.num_parallel <= MAX_NUM_PARALLEL:
            raise BadRequest(f"ENGINE: num_parallel must be 1-{MAX_NUM_PARALLEL}, got {self.num_parallel}")

    @property
    def host(self) -> str:
        """``host:port`` of the engine: what ``ps`` shows as the PROCESSOR."""
        return urlsplit(self.url).netloc

    @property
    def label(self) -> str:
        """How errors name the engine."""
        return f"remote engine {self.url} (model {self.model})"

    # -- the Modelfile line ---------------------------------------------------------------------
    @classmethod
    def parse_line(cls, value: str) -> Engine:
        """The value of an ENGINE line: ``openai URL model=ID [api_key_env=NAME] [num_parallel=N]``."""
        words = value.split()
        if len(words) < 2:
            raise BadRequest("ENGINE needs the engine API, its URL and model=<id>, e.g. "
                             "ENGINE openai http://127.0.0.1:8000/v1 model=my-model")
        kind, url, rest = words[0].lower(), words[1], words[2:]
        seen: dict[str, str] = {}
        for word in rest:
            key, sep, val = word.partition("=")
            key = key.lower()
            if not sep or key not in _OPTIONS:
                raise BadRequest(f"ENGINE: unknown option {word[:60]!r} (expected {', '.join(k + '=' for k in _OPTIONS)})")
            if key in seen:
                raise BadRequest(f"ENGINE: {key}= is given twice")
            if not val:
                raise BadRequest(f"ENGINE: {key}= needs a value")
            seen[key] = val
        if "model" not in seen:
            raise BadRequest("ENGINE: model=<the engine's model id> is required")
        parallel = seen.get("num_parallel", "0")
        if "num_parallel" in seen and (not parallel.isdigit() or int(parallel) < 1):
            raise BadRequest(f"ENGINE: num_parallel must be a positive integer, got {parallel!r}")
        return cls(kind=kind, url=url, model=seen["model"], api_key_env=seen.get("api_key_env"),
                   num_parallel=int(parallel))

    def line_value(self) -> str:
        """The ENGINE line's value that ``parse_line`` reads back to this engine."""
        words = [self.kind, self.url, f"model={self.model}"]
        if self.api_key_env:
            words.append(f"api_key_env={self.api_key_env}")
        if self.num_parallel:
            words.append(f"num_parallel={self.num_parallel}")
        return " ".join(words)

    # -- the manifest layer ---------------------------------------------------------------------
    def to_layer(self) -> bytes:
        """The layer's bytes: fixed keys in a fixed order, so equal engines give equal digests."""
        return json.dumps({"kind": self.kind, "url": self.url, "model": self.model,
                           "api_key_env": self.api_key_env, "num_parallel": self.num_parallel},
                          separators=(",", ":")).encode()

    @classmethod
    def from_layer(cls, data: bytes) -> Engine:
        """The engine a layer stores; a malformed (pulled) layer is a clear 400."""
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            raise BadRequest("model has an invalid engine layer: not JSON") from None
        if not isinstance(obj, dict):
            raise BadRequest("model has an invalid engine layer: not an object")
        kind, url, model = obj.get("kind"), obj.get("url"), obj.get("model")
        key_env, parallel = obj.get("api_key_env"), obj.get("num_parallel", 0)
        if not (isinstance(kind, str) and isinstance(url, str) and isinstance(model, str)
                and (key_env is None or isinstance(key_env, str))
                and isinstance(parallel, int) and not isinstance(parallel, bool)):
            raise BadRequest("model has an invalid engine layer: wrong or missing fields")
        return cls(kind=kind, url=url, model=model, api_key_env=key_env, num_parallel=parallel)
