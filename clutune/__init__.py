"""clutune: continual learning-unlearning research at scale.

Public names are imported on first use (module ``__getattr__``), so ``import clutune`` stays cheap and pulls in
neither torch, Ray nor MLflow; add a public name by mapping it to the module that defines it in ``_EXPORTS``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module defining it
_EXPORTS: dict[str, str] = {
    "Method": "clutune.clu.methods",
    "BaseHparams": "clutune.clu.methods",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'clutune' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
