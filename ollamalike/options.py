"""The table of model parameters (Ollama's ``Options`` and ``Runner`` fields), their parsing, and ``Options``.

Two inputs carry parameters: Modelfile ``PARAMETER`` lines (text, parsed with Go's ``strconv`` rules
as Ollama does) and the ``options`` object of API requests (JSON values). Both are checked against
``PARAMETERS`` once, at the edge, into an ``Options`` value; everything below the edge (inference,
the scheduler and planner, the runner) takes that value and never checks it again.
Precedence, lowest first: built-in defaults, the model's Modelfile parameters, the request's options.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from ollamalike.errors import BadRequest
from ollamalike.jsonfields import invalid

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT32_MAX = 2**31 - 1

# One option's typed value: what ``Options`` maps a name to (``stop`` is the only list).
OptionValue: TypeAlias = bool | int | float | list[str]
_Stored: TypeAlias = bool | int | float | tuple[str, ...]


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. ``type`` is the element type (``str`` for ``stop``); ``is_list`` marks list values.

    ``load_time`` parameters are fixed when a runner loads the model (changing them means a reload);
    the others apply per request.
    """

    name: str
    type: type
    # The table is heterogeneous (one entry's default is a float, another's a list): ``type`` says
    # which; typed readers (runner/sampling.py's dataclass defaults) take it without a cast.
    default: Any
    is_list: bool = False
    minimum: float | None = None
    maximum: float | None = None
    load_time: bool = False
    choices: tuple[int, ...] | None = None

    @property
    def type_name(self) -> str:
        base = {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}[self.type]
        return "an array of strings" if self.is_list else base


def _p(name: str, typ: type, default: OptionValue, *, minimum: float | None = None, maximum: float | None = None,
       is_list: bool = False, load_time: bool = False, choices: tuple[int, ...] | None = None) -> tuple[str, ParamSpec]:
    return name, ParamSpec(name, typ, default, is_list=is_list, minimum=minimum, maximum=maximum, load_time=load_time,
                           choices=choices)


# Ollama's DefaultOptions(). num_ctx's default applies only when neither the request, the Modelfile
# nor the server configuration chose one; num_gpu -1 lets the memory planner decide; seed -1 is random.
PARAMETERS: dict[str, ParamSpec] = dict(
    [
        # Per-request (sampling and prediction).
        _p("num_keep", int, 4, minimum=-1, maximum=_INT32_MAX),
        _p("seed", int, -1, minimum=_INT64_MIN, maximum=_INT64_MAX),
        _p("num_predict", int, -1, minimum=-2, maximum=_INT64_MAX),
        _p("top_k", int, 40, minimum=0, maximum=_INT32_MAX),
        _p("top_p", float, 0.9, minimum=0.0, maximum=1.0),
        _p("min_p", float, 0.0, minimum=0.0, maximum=1.0),
        _p("typical_p", float, 1.0, minimum=0.0),
        _p("tfs_z", float, 1.0, minimum=0.0),
        _p("repeat_last_n", int, 64, minimum=-1, maximum=_INT32_MAX),
        _p("temperature", float, 0.8, minimum=0.0),
        _p("repeat_penalty", float, 1.1, minimum=0.0),
        _p("presence_penalty", float, 0.0),
        _p("frequency_penalty", float, 0.0),
        _p("mirostat", int, 0, choices=(0, 1, 2)),
        _p("mirostat_tau", float, 5.0, minimum=0.0),
        _p("mirostat_eta", float, 0.1, minimum=0.0),
        _p("penalize_newline", bool, True),
        _p("stop", str, [], is_list=True),
        # Load-time (the Runner struct).
        _p("numa", bool, False, load_time=True),
        _p("num_ctx", int, 4096, minimum=1, maximum=_INT32_MAX, load_time=True),
        _p("num_batch", int, 512, minimum=1, maximum=_INT32_MAX, load_time=True),
        _p("num_gpu", int, -1, minimum=-1, maximum=_INT32_MAX, load_time=True),
        _p("main_gpu", int, 0, minimum=0, maximum=_INT32_MAX, load_time=True),
        _p("low_vram", bool, False, load_time=True),
        _p("f16_kv", bool, True, load_time=True),
        _p("logits_all", bool, False, load_time=True),
        _p("vocab_only", bool, False, load_time=True),
        _p("use_mmap", bool, True, load_time=True),
        _p("use_mlock", bool, False, load_time=True),
        _p("num_thread", int, 0, minimum=0, maximum=_INT32_MAX, load_time=True),
        # Tokens the DRAFT model proposes per step (Ollama's Runner field, default 4). Accepted and stored
        # so Ollama's Modelfiles create; the runner does no speculative decoding yet, so it has no effect.
        _p("draft_num_predict", int, 4, minimum=0, maximum=_INT32_MAX, load_time=True),
    ]
)

LOAD_TIME_OPTIONS = frozenset(name for name, spec in PARAMETERS.items() if spec.load_time)

# Go's strconv.ParseInt (base 10) and ParseFloat (decimal forms), ASCII digits only.
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Go's strconv.ParseBool.
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def _spec(name: str, what: str) -> ParamSpec:
    spec = PARAMETERS.get(name)
    if spec is None:
        raise BadRequest(f'unknown {what} "{_short(name)}"')
    return spec


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr)
    return text if len(text) <= limit else text[:limit] + "…"


def _check_range(spec: ParamSpec, value: int | float, label: str) -> int | float:
    if spec.choices is not None and value not in spec.choices:
        allowed = ", ".join(str(c) for c in spec.choices)
        raise BadRequest(f'invalid {label} "{spec.name}": must be one of {allowed}, got {value}')
    if spec.minimum is not None and value < spec.minimum:
        raise BadRequest(f'invalid {label} "{spec.name}": must be at least {_num(spec.minimum)}, got {value}')
    if spec.maximum is not None and value > spec.maximum:
        raise BadRequest(f'invalid {label} "{spec.name}": must be at most {_num(spec.maximum)}, got {value}')
    return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def parse_parameter(name: str, text: str) -> bool | int | float | str:
    """The typed value of a Modelfile ``PARAMETER name text`` line.

    For list parameters (``stop``) this is one element: each line adds one, see ``params_to_json``.
    """
    spec = _spec(name, "parameter")
    label = "parameter"
    if spec.type is str:
        if text == "":
            raise BadRequest(f'invalid parameter "{name}": value must not be empty')
        return text
    if spec.type is bool:
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise BadRequest(f'invalid parameter "{name}": expected true or false, got "{_short(text)}"')
    if spec.type is int:
        if not _INT_RE.fullmatch(text):
            raise BadRequest(f'invalid parameter "{name}": expected an integer, got "{_short(text)}"')
        return _check_range(spec, int(text), label)
    if not _FLOAT_RE.fullmatch(text):
        raise BadRequest(f'invalid parameter "{name}": expected a number, got "{_short(text)}"')
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest(f'invalid parameter "{name}": number out of range "{_short(text)}"')
    return _check_range(spec, value, label)


def _json_value(spec: ParamSpec, value: object) -> _Stored:
    """One JSON request value, type-checked and converted like Ollama's Options.FromMap."""
    label = "option"
    wrong = BadRequest(f'invalid option "{spec.name}": expected {spec.type_name}, got {_short(value)}')
    if spec.is_list:
        # A lone string is accepted as a one-element list: unambiguous and common in hand-written requests.
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
            raise wrong
        if any(s == "" for s in items):
            raise BadRequest(f'invalid option "{spec.name}": strings must not be empty')
        return tuple(items)
    if spec.type is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong
    if spec.type is int:
        if isinstance(value, float):
            # JSON has one number type: 4096.0 means 4096, but 1.5 is not an integer.
            if not math.isfinite(value) or not value.is_integer():
                raise BadRequest(f'invalid option "{spec.name}": expected an integer, got {value}')
            value = int(value)
        return _check_range(spec, value, label)
    value = float(value)
    if not math.isfinite(value):
        raise BadRequest(f'invalid option "{spec.name}": number must be finite')
    return _check_range(spec, value, label)


class Options(Mapping[str, OptionValue]):
    """Validated options: the only shape options take below the edge that parsed them.

    A read-only mapping rather than a dataclass of thirty fields, because every layer needs "unset"
    as distinct from "the default" (the planner picks num_ctx only when nobody chose one; a request's
    option overrides the Modelfile's only where it is set), and the wire to the runner is this mapping's
    JSON. It is built only by the validating constructors (``from_request`` for JSON, ``from_modelfile``
    for parsed ``PARAMETER`` lines, ``from_stored`` for the params layer of a stored model) and by
    ``merge``/``with_defaults``, which combine values already checked and check nothing again. Values
    are held immutably (``stop`` as a tuple); reading ``stop`` gives a fresh list.
    """

    __slots__ = ("_values",)
    _values: dict[str, _Stored]

    def __init__(self) -> None:
        self._values = {}  # empty; every other instance comes from a validating constructor

    @classmethod
    def _trusted(cls, values: dict[str, _Stored]) -> Options:
        out = cls()
        out._values = values
        return out

    @classmethod
    def checked(cls, value: object) -> tuple[Options, list[str]]:
        """A request's ``options`` object: (the valid known options, names of unknown options).

        Unknown names are not an error (Ollama logs a warning and ignores them). A ``null`` value
        means "not set"; a ``null`` object is no options. Wrong types and out-of-range values raise
        ``BadRequest``.
        """
        if value is None:
            return cls(), []
        if not isinstance(value, Mapping):
            raise invalid("options", "an object", value)
        valid: dict[str, _Stored] = {}
        unknown: list[str] = []
        for name, item in value.items():
            spec = PARAMETERS.get(name) if isinstance(name, str) else None
            if spec is None:
                unknown.append(str(name))
            elif item is not None:
                valid[spec.name] = _json_value(spec, item)
        return cls._trusted(valid), unknown

    @classmethod
    def from_request(cls, value: object) -> Options:
        """A request's ``options`` object, validated (unknown names dropped; see ``checked``)."""
        return cls.checked(value)[0]

    @classmethod
    def from_modelfile(cls, params: Iterable[tuple[str, bool | int | float | str]]) -> Options:
        """Parsed Modelfile ``PARAMETER`` lines (``parse_parameter`` typed them): ranges and names checked."""
        return cls.from_create(params_to_json(params))

    @classmethod
    def from_create(cls, params: Mapping[str, object]) -> Options:
        """A params layer given to create: an unknown name is an error there, unlike in a request."""
        valid, unknown = cls.checked(params)
        if unknown:
            raise BadRequest(f'unknown parameter "{unknown[0]}"')
        return valid

    @classmethod
    def from_stored(cls, params: Mapping[str, object] | None) -> Options:
        """The params layer of a stored model, checked once when the model is resolved.

        A stored value this version does not accept (a model made by another tool) is skipped rather
        than making the model unusable.
        """
        valid: dict[str, _Stored] = {}
        for name, item in (params or {}).items():
            spec = PARAMETERS.get(name)
            if spec is not None and item is not None:
                with contextlib.suppress(BadRequest):
                    valid[name] = _json_value(spec, item)
        return cls._trusted(valid)

    @classmethod
    def merge(cls, model: Options, request: Options) -> Options:
        """The model's options overridden by the request's; a request's ``stop`` replaces the model's list."""
        return cls._trusted({**model._values, **request._values})

    def with_defaults(self) -> Options:
        """Every parameter: the defaults overlaid with these options (what the runner applies)."""
        defaults: dict[str, _Stored] = {
            name: tuple(spec.default) if spec.is_list else spec.default for name, spec in PARAMETERS.items()
        }
        return Options._trusted({**defaults, **self._values})

    def replace(self, **values: _Stored) -> Options:
        """These options with values the daemon chose itself (template stop words, the planned num_ctx)."""
        return Options._trusted({**self._values, **values})

    def to_json(self) -> dict[str, bool | int | float | list[str]]:
        """The JSON object sent to the runner."""
        return {name: list(v) if isinstance(v, tuple) else v for name, v in self._values.items()}

    def __getitem__(self, name: str) -> OptionValue:
        value = self._values[name]
        return list(value) if isinstance(value, tuple) else value

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Options({self.to_json()!r})"


def int_option(options: Mapping[str, OptionValue], name: str) -> int | None:
    """An integer option (``num_ctx``, ``num_gpu``, ...) of validated options, or None when unset."""
    value = options.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# Plain-dict views of the same rules, for callers that want a mutable copy (and the table's tests).
def default_options() -> dict[str, OptionValue]:
    """Every parameter at its default (lists copied, so callers may mutate the result)."""
    return dict(Options().with_defaults())


def with_defaults(options: Options | Mapping[str, OptionValue]) -> dict[str, OptionValue]:
    """Defaults overlaid with ``options`` (already validated): what the runner should apply."""
    out = default_options()
    out.update(options)
    return out


def check_options(options: object) -> tuple[dict[str, OptionValue], list[str]]:
    """``Options.checked`` as a plain dict."""
    valid, unknown = Options.checked(options)
    return dict(valid), unknown


def validate_options(options: object) -> dict[str, OptionValue]:
    """``Options.from_request`` as a plain dict."""
    return dict(Options.from_request(options))


def merge_options(model_params: Mapping[str, object] | None, request: object) -> dict[str, OptionValue]:
    """``Options.merge`` of a stored params layer and a request's raw options, as a plain dict.

    Defaults are not filled in (``with_defaults`` does that), so callers can still tell "unset" from
    "default"; the memory planner needs that for ``num_ctx``.
    """
    return dict(Options.merge(Options.from_stored(model_params), Options.from_request(request)))


def params_to_json(params: Iterable[tuple[str, object]]) -> dict[str, object]:
    """Modelfile parameters in file order -> the ``params`` layer object.

    Repeated list parameters accumulate into one list; a repeated scalar keeps the last value, as in Ollama.
    """
    out: dict[str, object] = {}
    lists: dict[str, list[object]] = {}
    for name, value in params:
        spec = _spec(name, "parameter")
        if spec.is_list:
            if name not in lists:
                lists[name] = []
                out[name] = lists[name]
            lists[name].extend(value if isinstance(value, list) else [value])
        else:
            out[name] = value
    return out


def format_value(value: object) -> str:
    """A typed scalar value as Modelfile text that ``parse_parameter`` reads back to the same value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # repr is the shortest text that reads back to the same float; Go's ParseFloat reads it too.
        return repr(value)
    return str(value)


def json_to_params(params: Mapping[str, object]) -> list[tuple[str, object]]:
    """The inverse of ``params_to_json``: one (name, value) per Modelfile line, lists expanded."""
    out: list[tuple[str, object]] = []
    for name, value in params.items():
        if isinstance(value, list):
            out.extend((name, item) for item in value)
        else:
            out.append((name, value))
    return out


def format_show_parameters(params: Mapping[str, object]) -> str:
    """The ``parameters`` text of ``/api/show``: one ``name value`` line each, strings JSON-quoted."""
    lines = []
    for name, value in json_to_params(params):
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else format_value(value)
        lines.append(f"{name:<30} {text}")
    return "\n".join(lines)
