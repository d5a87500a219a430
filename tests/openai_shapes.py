"""OpenAI's shapes as its own SDK declares them (openai-python, pinned in requirements-dev.txt): the oracle that tests
of the product check its requests and our stand-in's answers against.

The SDK's request TypedDicts, their `Required` keys and their `Literal` values are generated from OpenAI's API spec,
so they are an authority independent of the stand-in's schema (local/openai_standin/schema.py and live_schema.py),
which we wrote ourselves and which a mistake could make agree with the product. Product tests use this module; the
stand-in keeps its own models and never imports the SDK.

- `request_problems(value, shape)`: what is wrong with a JSON request value for a TypedDict: a key the TypedDict does
  not declare (at any depth), a `Required` key missing, a leaf of another type, a string outside its `Literal`s.
- `assert_request(value, shape)`: the same as an assertion (`ShapeError`, an AssertionError).
- `assert_answer(model, data)`: a JSON answer validated by an SDK response model, with nothing in it, at any depth,
  that the model does not declare (the SDK's models accept unknown fields silently, so that is checked here).
"""

from __future__ import annotations

import collections.abc
import types
import typing
from typing import Any, Literal

import typing_extensions
from openai._types import SequenceNotStr
from openai.types.live import ConnectClientEventParam, LiveCreateParams, MediaSessionConfigParam
from openai.types.realtime import ClientSecretCreateParams, RealtimeSessionCreateRequestParam
from pydantic import BaseModel

# The request shapes the product sends, by what OpenAI calls them.
CLIENT_SECRET_REQUEST: Any = ClientSecretCreateParams  # POST /v1/realtime/client_secrets
REALTIME_SESSION: Any = RealtimeSessionCreateRequestParam  # the `session` part of POST /v1/realtime/calls
LIVE_CREATE_REQUEST: Any = LiveCreateParams  # POST /v1/live/sessions
LIVE_SESSION: Any = MediaSessionConfigParam  # its `session`
LIVE_SIDEBAND_CLIENT_EVENT: Any = ConnectClientEventParam  # what a server may send on a Live sideband

_WRAPPERS = (typing.Required, typing.NotRequired, typing_extensions.Required, typing_extensions.NotRequired,
             typing.ReadOnly, typing_extensions.ReadOnly)
# Every container the SDK's params type a JSON array with.
_ARRAYS = (list, tuple, collections.abc.Iterable, collections.abc.Sequence, SequenceNotStr)
_OBJECTS = (dict, collections.abc.Mapping)


class ShapeError(AssertionError):
    """A value that does not fit OpenAI's shape; the message lists every problem with its JSON path."""


def assert_request(value: Any, shape: Any, what: str = "request") -> None:
    found = request_problems(value, shape)
    if found:
        raise ShapeError(f"{what} does not fit openai-python's {_name(shape)}:\n  " + "\n  ".join(found))


def request_problems(value: Any, shape: Any, path: str = "") -> list[str]:
    """Every way `value` (parsed JSON) departs from the type `shape`, each prefixed with its JSON path."""
    shape = _unwrap(shape)
    where = path or "(top)"
    if shape is Any or shape is object:
        return []
    if shape is None or shape is type(None):
        return [] if value is None else [f"{where}: {value!r} is not null"]
    origin = typing.get_origin(shape)
    if origin is Literal:
        allowed = typing.get_args(shape)
        # `True == 1` in Python: a Literal matches only a value of the same JSON type.
        return [] if any(value == a and type(value) is type(a) for a in allowed) else [
            f"{where}: {value!r} is not one of {list(allowed)}"]
    if origin in (typing.Union, types.UnionType):
        return _union_problems(value, typing.get_args(shape), where, path)
    if typing_extensions.is_typeddict(shape):
        return _typeddict_problems(value, shape, where, path)
    if origin in _ARRAYS or shape in _ARRAYS:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__} where {_name(shape)} (a JSON array) was expected"]
        (item,) = typing.get_args(shape) or (Any,)
        return [p for index, element in enumerate(value) for p in request_problems(element, item, f"{path}[{index}]")]
    if origin in _OBJECTS or shape in _OBJECTS:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} where a JSON object was expected"]
        _, item = typing.get_args(shape) or (str, Any)
        return [p for key, element in value.items() for p in request_problems(element, item, _join(path, key))]
    return _scalar_problems(value, shape, where)


def assert_answer[M: BaseModel](model: type[M], data: Any, what: str = "answer") -> M:
    """`data` validated as the SDK's `model`, with no field the model does not declare, at any depth."""
    parsed = model.model_validate(data)
    extras = list(_extras(parsed, ""))
    if extras:
        raise ShapeError(f"{what} has fields openai-python's {model.__name__} does not declare: {extras}")
    return parsed


def _typeddict_problems(value: Any, shape: Any, where: str, path: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {type(value).__name__} where a JSON object ({shape.__name__}) was expected"]
    fields = _fields(shape)
    found = [f"{_join(path, key)}: not a field of {shape.__name__} (it declares {sorted(fields)})"
             for key in value if key not in fields]
    found += [f"{_join(path, key)}: required by {shape.__name__} but missing"
              for key, (_, required) in fields.items() if required and key not in value]
    for key, element in value.items():
        if key in fields:
            found += request_problems(element, fields[key][0], _join(path, key))
    return found


def _fields(shape: Any) -> dict[str, tuple[Any, bool]]:
    """A TypedDict's keys as they go on the wire (a `PropertyInfo(alias=...)` renames one), with their types and
    whether they are required. Read from the annotations: the SDK's modules use `from __future__ import annotations`,
    which leaves `__required_keys__` empty."""
    total = getattr(shape, "__total__", True)
    fields: dict[str, tuple[Any, bool]] = {}
    for name, hint in typing.get_type_hints(shape, include_extras=True).items():
        required, wire_name = total, name
        annotated = hint
        while True:
            origin = typing.get_origin(annotated)
            if origin is typing.Annotated:
                for meta in annotated.__metadata__:
                    alias = getattr(meta, "alias", None)
                    wire_name = alias if isinstance(alias, str) else wire_name
                annotated = typing.get_args(annotated)[0]
            elif origin in (typing.Required, typing_extensions.Required):
                required, annotated = True, typing.get_args(annotated)[0]
            elif origin in (typing.NotRequired, typing_extensions.NotRequired):
                required, annotated = False, typing.get_args(annotated)[0]
            elif origin in (typing.ReadOnly, typing_extensions.ReadOnly):
                annotated = typing.get_args(annotated)[0]
            else:
                break
        fields[wire_name] = (annotated, required)
    return fields


def _union_problems(value: Any, members: tuple[Any, ...], where: str, path: str) -> list[str]:
    attempts = [request_problems(value, member, path) for member in members]
    if any(not found for found in attempts):
        return []
    # Report the member the value was most likely meant to be: one of its JSON kind (an object for an object),
    # then the one it misses least.
    nearest = min(zip(members, attempts, strict=True),
                  key=lambda pair: (_json_kind(_unwrap(pair[0])) != _json_kind_of(value), len(pair[1])))[1]
    return [f"{where}: fits none of {[_name(m) for m in members]}; nearest:", *nearest]


def _json_kind(shape: Any) -> str:
    origin = typing.get_origin(shape)
    if typing_extensions.is_typeddict(shape) or origin in _OBJECTS or shape in _OBJECTS:
        return "object"
    if origin in _ARRAYS or shape in _ARRAYS:
        return "array"
    return "scalar"


def _json_kind_of(value: Any) -> str:
    return "object" if isinstance(value, dict) else "array" if isinstance(value, list) else "scalar"


def _scalar_problems(value: Any, shape: Any, where: str) -> list[str]:
    # JSON has one number type: an integer is a valid float; a bool is neither.
    checks: dict[Any, Any] = {
        str: lambda v: isinstance(v, str),
        bool: lambda v: isinstance(v, bool),
        int: lambda v: isinstance(v, int) and not isinstance(v, bool),
        float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    }
    if shape not in checks:
        # A type this oracle cannot read must not pass silently: teach it, rather than accept anything.
        raise TypeError(f"openai_shapes cannot check {where} against {shape!r}")
    return [] if checks[shape](value) else [f"{where}: {value!r} is not a {shape.__name__}"]


def _extras(value: Any, path: str) -> typing.Iterator[str]:
    if isinstance(value, BaseModel):
        for key in value.model_extra or {}:
            yield _join(path, key)
        for name in type(value).model_fields:
            yield from _extras(getattr(value, name), _join(path, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _extras(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _extras(item, _join(path, str(key)))


def _unwrap(shape: Any) -> Any:
    while typing.get_origin(shape) in (typing.Annotated, *_WRAPPERS):
        shape = typing.get_args(shape)[0]
    return shape


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _name(shape: Any) -> str:
    return getattr(shape, "__name__", None) or repr(shape)
