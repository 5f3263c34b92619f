"""A method's hyperparameters checked with pydantic, from the bounds its dataclass declares.

The algorithm library imports torch alone, so a method declares each hyperparameter's bounds as dataclass field
metadata (:func:`clutune.clu.methods.base.hparam`); here that declaration becomes a pydantic model, built once per
class, with the same strict types and one-line messages as the config (clutune.core.settings).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import Field, create_model

from clutune.core.settings import Float, Int, Section

H = TypeVar("H")
OUT_OF_RANGE = "value {value!r} is out of range"


def _strict(tp: Any) -> Any:
    """``tp`` with int and float as the config's strict scalars (int64, finite)."""
    if tp is int:
        return Int
    if tp is float:
        return Float
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return functools.reduce(lambda a, b: a | b, [_strict(a) for a in args])
    if origin is list:
        return list[_strict(args[0])]
    return tp


def _declared(cls: type, name: str) -> Mapping[str, Any]:
    """The bounds of ``name`` from the nearest class that declares any, so a subclass that only changes a default
    keeps them."""
    for klass in cls.__mro__:
        own = klass.__dict__.get("__dataclass_fields__", {})
        if name in own and "bounds" in own[name].metadata:
            return own[name].metadata
    return {}


@functools.cache
def hparams_model(cls: type) -> type[Section]:
    """The pydantic model of the dataclass ``cls``: its fields, types and declared bounds."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        declared = _declared(cls, f.name)
        extra = {"says": declared.get("says") or OUT_OF_RANGE}
        if f.default_factory is not dataclasses.MISSING:
            info = Field(default_factory=f.default_factory, json_schema_extra=extra, **declared.get("bounds", {}))
        else:
            info = Field(f.default, json_schema_extra=extra, **declared.get("bounds", {}))
        fields[f.name] = (_strict(hints[f.name]), info)
    return create_model(f"{cls.__name__}Settings", __base__=Section, **fields)


def build_hparams(cls: type[H], raw: Mapping[str, Any], prefix: str) -> H:
    """``cls`` with ``raw`` over its defaults; an unknown name, a wrong type or a value out of its bounds is a
    one-line UserError naming ``prefix.<name>``."""
    checked = hparams_model(cls).build(dict(raw), prefix)
    return cls(**{name: getattr(checked, name) for name in raw})
