"""One codec for every typed record: frozen dataclasses <-> JSON-ready values, and their JSON Schema.

Used for run.json (bench.results), for benchmarks.toml tables (bench.config.reader builds knob and
spec records with it, so a TOML value is checked exactly as a result file is) and for the cached
device peaks. Supported annotations: the JSON scalars (int, float, str, bool), `X | None` and
other unions, Literal, tuple[X, ...], dict[str, X], Any, and nested dataclasses.

Decoding is strict, because result files and suites come from outside: unknown keys are refused
(with a "did you mean"), a bool is not an int, a float must be finite, and a record's own
`validate() -> (key, message) | None` runs once its fields decode. Every error is a DecodeError
whose text names the key path and what is allowed, in the words the CLI prints.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from typing import Any, Literal

_SCALAR_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


class DecodeError(ValueError):
    """A value that does not fit its annotation; `path` is where, the message says what is allowed."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def did_you_mean(value: str, allowed: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(value), list(allowed), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_keys(table: dict, allowed: typing.Iterable[str], path: str) -> None:
    """Refuse a key that is not allowed, naming it, the closest allowed one and all of them."""
    allowed = list(allowed)
    for key in table:
        if key not in allowed:
            raise DecodeError(f"{path}.{key}" if path else str(key),
                              f"unknown key {key!r}{did_you_mean(key, allowed)} (allowed: {', '.join(sorted(allowed))})")


def describe(tp: Any) -> str:
    """What a value of this annotation looks like, in words ("an integer", "a list of numbers")."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return "a list of " + _plural(describe(typing.get_args(tp)[0]))
    if origin is dict:
        return "a table"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a table"
    return _SCALAR_NAMES.get(tp, str(tp))


def _plural(words: str) -> str:
    words = words.removeprefix("an ").removeprefix("a ")
    return {"true or false": "booleans"}.get(words, words + "s")


def to_json(obj: Any) -> Any:
    """Records -> JSON-ready dicts and lists (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    return obj


def _not_allowed(path: str, value: Any, tp: Any) -> DecodeError:
    return DecodeError(path, f"{value!r} is not allowed; expected {describe(tp)}")


def from_json(tp: Any, data: Any, path: str = "") -> Any:
    """JSON-ready data -> a value of annotation `tp`, checked as it goes (DecodeError on a misfit)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if data is None and len(args) < len(typing.get_args(tp)):
            return None
        if len(args) == 1:  # X | None: X's own (deeper) message is the useful one
            return from_json(args[0], data, path)
        for arg in args:
            try:
                return from_json(arg, data, path)
            except DecodeError:
                pass
        raise _not_allowed(path, data, tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if data not in allowed or isinstance(data, bool) != any(isinstance(a, bool) for a in allowed):
            raise DecodeError(path, f"{data!r} is not allowed{did_you_mean(str(data), [str(a) for a in allowed])} "
                                    f"(allowed: {', '.join(str(a) for a in allowed)})")
        return data
    if origin is tuple:
        if not isinstance(data, (list, tuple)):
            raise _not_allowed(path, data, tp)
        inner = typing.get_args(tp)
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(from_json(inner[0], v, f"{path}[{i}]") for i, v in enumerate(data))
        if len(inner) != len(data):
            raise _not_allowed(path, data, tp)
        return tuple(from_json(t, v, f"{path}[{i}]") for i, (t, v) in enumerate(zip(inner, data)))
    if origin is dict:
        if not isinstance(data, dict):
            raise _not_allowed(path, data, tp)
        inner = typing.get_args(tp)[1]
        return {k: from_json(inner, v, f"{path}.{k}") for k, v in data.items()}
    if dataclasses.is_dataclass(tp):
        return _record(tp, data, path)
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise _not_allowed(path, data, tp)
        if not math.isfinite(data):
            raise DecodeError(path, f"{data!r} is not allowed; expected a finite number")
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise _not_allowed(path, data, tp)
        return data
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def _record(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise _not_allowed(path, data, cls)
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    check_keys(data, [f.name for f in fields], path)
    kwargs = {}
    for f in fields:
        sub = f"{path}.{f.name}" if path else f.name
        if f.name in data:
            kwargs[f.name] = from_json(hints[f.name], data[f.name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise DecodeError(path, f"missing key {f.name!r}")
    record = cls(**kwargs)
    check = getattr(record, "validate", None)
    problem = check() if callable(check) else None
    if problem:
        key, message = problem
        raise DecodeError(f"{path}.{key}" if path else key, message)
    return record


def json_schema(root: type, schema_id: str, title: str, pinned: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of `root` and every record it holds; `pinned` replaces the
    schema of root's named properties (e.g. a const schema_version)."""
    defs: dict[str, Any] = {}

    def of(tp: Any) -> dict[str, Any]:
        origin = typing.get_origin(tp)
        if tp is Any:
            return {}
        if origin in (typing.Union, types.UnionType):
            return {"anyOf": [of(a) for a in typing.get_args(tp)]}
        if tp is type(None):
            return {"type": "null"}
        if origin is Literal:
            return {"enum": list(typing.get_args(tp))}
        if origin is tuple:
            args = typing.get_args(tp)
            if len(args) == 2 and args[1] is Ellipsis:
                return {"type": "array", "items": of(args[0])}
            return {"type": "array", "prefixItems": [of(a) for a in args], "items": False}
        if origin is dict:
            return {"type": "object", "additionalProperties": of(typing.get_args(tp)[1])}
        if dataclasses.is_dataclass(tp):
            name = tp.__name__
            if name not in defs:
                defs[name] = {}  # placeholder against recursion
                hints = typing.get_type_hints(tp)
                fields = dataclasses.fields(tp)
                defs[name] = {
                    "type": "object",
                    "properties": {f.name: of(hints[f.name]) for f in fields},
                    "required": [f.name for f in fields
                                 if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING],
                    "additionalProperties": False,
                }
            return {"$ref": f"#/$defs/{name}"}
        return {float: {"type": "number"}, int: {"type": "integer"}, str: {"type": "string"},
                bool: {"type": "boolean"}}[tp]

    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id, "title": title,
              **of(root), "$defs": defs}
    for key, value in (pinned or {}).items():
        defs[root.__name__]["properties"][key] = value
    return schema
