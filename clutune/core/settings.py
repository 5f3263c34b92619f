"""Typed settings on pydantic v2, with every refusal as one line: ``config key 'x.y': what is wrong``.

Types are strict, as a config is read from YAML: a bool is not an int, a number is not a string, except that a
float also takes a numeric string (YAML 1.1 reads ``1e-3`` as one). Ints fit an int64 and floats are finite,
because torch and numpy take them and a NaN poisons every result. A field's bounds, its message when out of
them and its part in the identity (clutune.core.identity) are declared together with :func:`setting`.
"""

from __future__ import annotations

import math
import sys
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

from clutune.core.identity import Identity
from clutune.errors import UserError

MAX_INT = 2**63 - 1  # what an int setting may hold: torch and numpy take it as an int64
MAX_FLOAT = sys.float_info.max
M = TypeVar("M", bound=BaseModel)


def problem(key: str, text: str) -> PydanticCustomError:
    """A refusal a section's own check raises: ``key`` relative to the section ("" for the section itself)."""
    return PydanticCustomError("problem", "{text}", {"key": key, "text": text})


def _int64(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_INT <= value <= MAX_INT:
        raise PydanticCustomError("int64", "{text}", {"text": f"{value} is out of range (an int64)"})
    return value


def _finite(value: Any) -> Any:
    number = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if abs(value) <= MAX_FLOAT else math.inf
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
    if number is None:
        return value  # the float type refuses it
    if not math.isfinite(number):  # NaN and infinities mean nothing in any setting, and poison results
        raise PydanticCustomError("finite", "{text}", {"text": f"expected a finite number, got {value!r}"})
    return number


Int = Annotated[int, BeforeValidator(_int64)]
Float = Annotated[float, BeforeValidator(_finite)]


def setting(
    default: Any = None,
    *,
    factory: Any = None,
    identity: Identity = Identity.INCLUDED,
    says: str | Mapping[str, str] | None = None,
    **bounds: float,
) -> Any:
    """A field: its default (or ``factory``), bounds (ge, gt, le, lt), the message when out of them (a template
    with ``{value}``, or one per bound), and its part in the identity."""
    extra: dict[str, Any] = {"identity": identity.value}
    if says is not None:
        extra["says"] = dict(says) if isinstance(says, Mapping) else says
    if factory is not None:
        return Field(default_factory=factory, json_schema_extra=extra, **bounds)
    return Field(default, json_schema_extra=extra, **bounds)


class Section(BaseModel):
    """A config section: unknown keys refused, types strict, and defaults as given (never shared)."""

    model_config = ConfigDict(extra="forbid", strict=True, validate_default=False)

    @classmethod
    def build(cls: type[M], data: Any, prefix: str = "") -> M:
        """The section from plain data; anything wrong is a one-line :class:`UserError` naming the key."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise UserError(refusal(cls, e.errors()[0], data, prefix)) from None

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


def type_name(tp: Any) -> str:
    """An annotation as the config documents it (``int | None``, ``list[float]``), the strict aliases unwrapped."""
    origin = typing.get_origin(tp)
    if origin is Annotated:
        return type_name(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _plain(tp: Any) -> Any:
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def _section_in(tp: Any) -> type[BaseModel] | None:
    """The section class of a ``Section`` or ``Section | None`` annotation."""
    tp = _plain(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)] if typing.get_origin(tp) else [tp]
    found = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
    return found[0] if len(args) == 1 and found else None


def _takes_float(tp: Any) -> bool:
    """A float setting, or an optional one: its bound messages show the value as the float it became."""
    tp = _plain(tp)
    return tp is float or (_is_union(tp) and any(_plain(a) is float for a in typing.get_args(tp)))


def _is_union(tp: Any) -> bool:
    return typing.get_origin(_plain(tp)) in (typing.Union, types.UnionType)


def refusal(model: type[BaseModel], error: Any, data: Any, prefix: str) -> str:
    """pydantic's first error as the one line clutune prints, worded as the config's own checks word it."""
    key, raw, tp, info, sections = prefix, data, None, None, model
    loc = list(error["loc"])
    while loc:
        step = loc[0]
        if sections is not None:
            if step not in sections.model_fields:
                break
            info = sections.model_fields[step]
            tp = info.annotation
            key = f"{key}.{step}" if key else str(step)
            raw = raw.get(step) if isinstance(raw, Mapping) else None
            loc.pop(0)
            nested = _section_in(tp)
            if nested is not None:
                sections, tp = nested, None
                if loc and loc[0] == nested.__name__:
                    loc.pop(0)
                continue
            sections = None
            if _is_union(tp) and error["type"] not in ("problem", *BOUNDS_ERRORS):
                return f"config key {key!r}: expected {type_name(tp)}, got {raw!r}"
            continue
        inner = typing.get_args(_plain(tp))
        if isinstance(step, int) and typing.get_origin(_plain(tp)) is list:
            key, tp = f"{key}[{step}]", inner[0]
            raw = raw[step] if isinstance(raw, list) and step < len(raw) else None
            loc.pop(0)
            nested = _section_in(tp)
            if nested is not None:
                sections = nested
            continue
        break
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        unknown = f"{key}.{loc[0]}" if key else str(loc[0])
        known = ", ".join(sorted(sections.model_fields)) if sections is not None else ""
        return f"unknown config key {unknown!r}; known keys here: {known}"
    if kind == "problem":
        where = ".".join(p for p in (key, ctx["key"]) if p)
        return f"config key {where!r}: {ctx['text']}"
    if kind in ("int64", "finite"):
        return f"config key {key!r}: {ctx['text']}"
    if kind in BOUNDS_ERRORS:
        bound = BOUNDS_ERRORS[kind]
        extra = info.json_schema_extra if info is not None and isinstance(info.json_schema_extra, dict) else {}
        value = error["input"]
        if _takes_float(tp):
            value = float(value)
        says = extra.get("says")
        if isinstance(says, Mapping):
            says = says.get(bound)
        says = says or f"must be {BOUND_WORDS[bound]} {ctx[bound]}, got {{value!r}}"
        return f"config key {key!r}: {says.format(value=value)}"
    if kind == "list_type":
        return f"config key {key!r}: expected a list, got {error['input']!r}"
    if kind in ("dict_type", "model_type", "model_attributes_type", "dataclass_type"):
        return f"config key {key!r}: expected a mapping, got {error['input']!r}"
    if tp is not None:
        return f"config key {key!r}: expected {type_name(tp)}, got {error['input']!r}"
    return f"config key {key!r}: {error['msg']}"


BOUNDS_ERRORS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le", "less_than": "lt"}
BOUND_WORDS = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
