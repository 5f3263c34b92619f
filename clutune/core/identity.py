"""Which settings name a result, declared on each field, and the identity built from those declarations.

The config hash and the oracle cache key hash an identity: the settings that can change what is computed. A
field is part of it unless it says otherwise, so a new setting that could change results never reuses a cached
oracle by mistake; the pinned hashes in tests/test_config_identity.py then fail until the field declares one of:

- ``EXCLUDED``: changes speed or bookkeeping, never a result (a cache folder, a thread count);
- ``WHEN_SET``: enters only while it differs from its default, so every config written before the field
  existed keeps its hash and its cached oracles (the form for a new setting that can change results);
- ``INLINE``: a section whose identity fields join its parent's instead of forming their own entry.

The declaration is ``setting(default, identity=Identity.WHEN_SET)`` (clutune.core.settings), one line per field.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel


class Identity(enum.Enum):
    INCLUDED = "included"
    EXCLUDED = "excluded"
    WHEN_SET = "when_set"
    INLINE = "inline"


def declared(model: type[BaseModel], name: str) -> Identity:
    extra = model.model_fields[name].json_schema_extra
    return Identity(extra.get("identity", Identity.INCLUDED.value) if isinstance(extra, dict) else "included")


def _unset(value: Any, default: Any) -> bool:
    """Equal to its default; an optional field (default None) is also unset while empty."""
    return value == default or (default is None and value in ("", [], {}))


def identity(model: BaseModel) -> dict[str, Any]:
    """The identity fields of ``model`` as plain data, sections recursively, in a form ``json.dumps`` hashes."""
    out: dict[str, Any] = {}
    for name, info in type(model).model_fields.items():
        mode = declared(type(model), name)
        value = getattr(model, name)
        if mode is Identity.EXCLUDED:
            continue
        if mode is Identity.WHEN_SET and _unset(value, info.get_default(call_default_factory=True)):
            continue
        part = identity(value) if isinstance(value, BaseModel) else value
        if mode is Identity.INLINE:
            out.update(part)
        else:
            out[name] = part
    return out
