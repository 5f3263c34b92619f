"""The search space and tuned defaults a method ships with itself (``Method.search_space``,
``Method.tuned_defaults``): package data beside the method's module, so a plugin package carries its own and
clutune reads them before the files it keeps for its built-in methods."""

from __future__ import annotations

import sys
from importlib.resources import files
from pathlib import Path

from clutune.clu.methods import get_method
from clutune.errors import UserError


def _shipped(method: str, attribute: str, *parts: str) -> Path | None:
    cls = get_method(method)
    relative = getattr(cls, attribute)
    if relative is None:
        return None
    module = sys.modules[cls.__module__]
    package = module.__package__ or cls.__module__
    resource = files(package).joinpath(relative, *parts)
    return Path(str(resource))


def own_search_space(method: str) -> Path | None:
    """The search space file ``method`` ships, or None when it ships none; a declared file that is missing from
    the installed package is the package's error, named in one line."""
    path = _shipped(method, "search_space")
    if path is not None and not path.is_file():
        raise UserError(f"method {method!r} declares search_space {path.name!r}, but its package has no file {path}")
    return path


def own_tuned_defaults(method: str, dataset: str) -> Path | None:
    """The tuned-defaults file ``method`` ships for ``dataset``, or None (no folder declared, or none for it)."""
    path = _shipped(method, "tuned_defaults", f"{dataset}.yaml")
    return path if path is not None and path.is_file() else None
