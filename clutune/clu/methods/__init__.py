"""Methods by name. Each method file registers its class here; no scanning, no ``eval``."""

from __future__ import annotations

from clutune.clu.methods.base import BaseHparams, Method
from clutune.errors import UserError

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


from clutune.clu.methods import clpu, derpp, er, ewc, finetune, ga, lwf, retrain, rl, salun, scrub, sfron, ugclu  # noqa: E402,F401  (registers)

__all__ = ["METHODS", "BaseHparams", "Method", "get_method", "register"]
