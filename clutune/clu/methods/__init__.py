"""Methods by name: clutune's own in the table below, then any installed package's under the entry point group
``clutune.methods`` (``name = "module:Class"``), resolved the same way in every process (clutune.plugins.registry).

A method class subclasses :class:`Method`, its ``Hparams`` subclasses :class:`BaseHparams`, and its ``name``
is the name it is registered under. Modules are imported on first lookup, so naming one method imports one file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from clutune.clu.methods.base import BaseHparams, Method
from clutune.plugins.registry import Registry

BUILTIN_METHODS: dict[str, str] = {
    "clpu": "clutune.clu.methods.clpu:CLPU",
    "derpp": "clutune.clu.methods.derpp:DERpp",
    "er": "clutune.clu.methods.er:ER",
    "ewc": "clutune.clu.methods.ewc:EWC",
    "finetune": "clutune.clu.methods.finetune:Finetune",
    "ga": "clutune.clu.methods.ga:GA",
    "lwf": "clutune.clu.methods.lwf:LwF",
    "retrain": "clutune.clu.methods.retrain:Retrain",
    "rl": "clutune.clu.methods.rl:RL",
    "salun": "clutune.clu.methods.salun:SalUn",
    "scrub": "clutune.clu.methods.scrub:SCRUB",
    "sfron": "clutune.clu.methods.sfron:SFRon",
    "ugclu": "clutune.clu.methods.ugclu:UGCLU",
}


def method_problem(obj: Any, name: str) -> str | None:
    """What keeps ``obj`` from being the method ``name``, or None: the contract every method class keeps."""
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        return f"is not a subclass of clutune.clu.methods.Method (got {obj!r})"
    hp = getattr(obj, "Hparams", None)
    if not (isinstance(hp, type) and issubclass(hp, BaseHparams) and dataclasses.is_dataclass(hp)):
        return f"{obj.__name__}.Hparams is not a dataclass subclassing clutune.clu.methods.BaseHparams"
    if getattr(obj, "name", None) != name:
        return f"{obj.__name__}.name is {getattr(obj, 'name', None)!r}, not the entry point name {name!r}"
    return None


METHODS: Registry[type[Method]] = Registry("clutune.methods", "method", BUILTIN_METHODS, method_problem)


def get_method(name: str) -> type[Method]:
    """The method class called ``name``; an unknown name or a broken plugin is a one-line UserError."""
    return METHODS.get(name)


def has_hparam(method: str, key: str) -> bool:
    """Whether ``method``'s hyperparameters have ``key``: a setting such as ``buffer_size`` is passed only to
    the methods that keep it."""
    return key in {f.name for f in dataclasses.fields(get_method(method).Hparams)}


def exact_methods(names: Iterable[object]) -> set[str]:
    """Those of ``names`` that are registered methods declaring exact unlearning (:attr:`Method.exact`). A name
    no method is registered under (a trial id, a label in a table) is simply not exact."""
    known = set(METHODS.names())
    return {str(n) for n in names if str(n) in known and get_method(str(n)).exact}


__all__ = [
    "BUILTIN_METHODS",
    "METHODS",
    "BaseHparams",
    "Method",
    "exact_methods",
    "get_method",
    "has_hparam",
    "method_problem",
]
