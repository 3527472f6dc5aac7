"""Dataclasses to strict JSON and back: how a snapshot and an answer cross the process
boundary between the supervisor and its clients (docs/console-engine.md, "Client protocol").

`encode` is `dataclasses.asdict` with tuples as lists. `decode(cls, data)` rebuilds `cls`
from its field types: nested dataclasses, lists, tuples, dicts and optionals; a key the
class does not know is ignored and a missing one takes the field's default, so a client and
a supervisor of neighbouring versions still understand each other.
"""

from __future__ import annotations

import dataclasses
import sys
import types
import typing
from functools import lru_cache


def encode(obj):
    """Plain JSON-ready data of a dataclass (or of lists/dicts of them)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [encode(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): encode(v) for k, v in obj.items()}
    return obj


@lru_cache(maxsize=None)
def _hints(cls) -> dict:
    module = sys.modules.get(cls.__module__)
    return typing.get_type_hints(cls, vars(module) if module else None)


def decode(tp, data):
    """`data` (decoded JSON) as type `tp`; ValueError when it cannot be."""
    if data is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        last: Exception | None = None
        for option in options:
            try:
                return decode(option, data)
            except (TypeError, ValueError) as e:
                last = e
        raise ValueError(f"{data!r} fits none of {options}") from last
    if origin is typing.Literal:
        if data not in typing.get_args(tp):
            raise ValueError(f"{data!r} is not one of {typing.get_args(tp)}")
        return data
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"{tp.__name__}: expected an object, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {f.name: decode(hints[f.name], data[f.name])
                  for f in dataclasses.fields(tp) if f.init and f.name in data}
        return tp(**kwargs)
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise ValueError(f"expected a list, got {type(data).__name__}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(data):
                raise ValueError(f"expected {len(args)} items, got {len(data)}")
            return tuple(decode(a, v) for a, v in zip(args, data))
        item = args[0] if args else typing.Any
        out = [decode(item, v) for v in data]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(data, dict):
            raise ValueError(f"expected an object, got {type(data).__name__}")
        _, value = typing.get_args(tp) or (str, typing.Any)
        return {k: decode(value, v) for k, v in data.items()}
    if tp is typing.Any or tp is object:
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ValueError(f"expected a number, got {data!r}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ValueError(f"expected an integer, got {data!r}")
        return data
    if tp in (str, bool, dict, list):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise ValueError(f"expected {tp.__name__}, got {type(data).__name__}")
        return data
    raise TypeError(f"cannot decode into {tp!r}")
