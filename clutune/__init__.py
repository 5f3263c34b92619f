"""clutune: continual learning-unlearning research at scale.

``import clutune`` is cheap: the API's functions and types load on first use (the commands need Ray and MLflow,
a method author needs only torch).
"""

from __future__ import annotations

import importlib
from typing import Any

from clutune.platform.run.telemetry import telemetry_off_by_default

__version__ = "0.1.0"

telemetry_off_by_default()  # before anything imports MLflow (docs/reliability.md, Telemetry)

# public name -> the module that defines it
_EXPORTS = {
    "run": "clutune.api",
    "compare": "clutune.api",
    "study": "clutune.api",
    "sweep": "clutune.api",
    "aggregate": "clutune.api",
    "oracles": "clutune.api",
    "report": "clutune.api",
    "export": "clutune.api",
    "sync": "clutune.api",
    "check_method": "clutune.api",
    "ui": "clutune.api",
    "dashboard": "clutune.api",
    "Config": "clutune.core.config",
    "load_config": "clutune.core.config",
    "Method": "clutune.clu.methods",
    "BaseHparams": "clutune.clu.methods",
    "UserError": "clutune.errors",
    "RunFailed": "clutune.errors",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'clutune' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
