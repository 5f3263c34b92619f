"""Names to methods, models and dataset readers, resolved the same way in every process.

The first lookup of a kind reads the installed packages' entry points of its group (``clutune.methods``,
``clutune.models``, ``clutune.datasets``), once per process, importing none: a package that claims a built-in's
name is refused whichever name is asked for, since a user who installed it would otherwise run clutune's
``er`` believing it theirs. A name is then looked up in clutune's built-in table first, and only the one entry
point asked for is imported. A Ray worker or an oracle task resolves a name exactly as the driver does, because
both read the same installed metadata; nothing registered at run time in one process is needed in another.

Standard library only, so the PyTorch-only algorithm library can use it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from clutune.errors import UserError

T = TypeVar("T")

BUILT_IN = "clutune (built in)"


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def _package(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"package {dist.name}" if dist is not None and dist.name else f"module {ep.module}"


def load_reference(ref: str) -> Any:
    """The object a ``module:attribute`` reference names (the entry point value format)."""
    module, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """One kind of named thing: built-ins (objects or ``module:attribute`` references imported on first use),
    then entry points of ``group``. ``check(obj, name)`` returns what is wrong with a loaded object, or None.

    Loaded objects are cached per process; entry points are read once per process, on the first lookup.
    """

    def __init__(
        self,
        group: str,
        kind: str,
        builtins: Mapping[str, T | str],
        check: Callable[[Any, str], str | None],
    ) -> None:
        self.group = group
        self.kind = kind
        self._builtins = dict(builtins)
        self._check = check
        self._loaded: dict[str, T] = {}
        self._plugins: dict[str, EntryPoint] | None = None

    def get(self, name: str) -> T:
        """The thing called ``name``; an unknown name, a clash or a broken plugin is a one-line UserError."""
        if name in self._loaded:
            return self._loaded[name]
        plugins = self.plugins()  # refuses a package claiming a built-in name, even when the built-in is asked for
        if name in self._builtins:
            ref = self._builtins[name]
            obj = load_reference(ref) if isinstance(ref, str) else ref
        else:
            ep = plugins.get(name)
            if ep is None:
                raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
            obj = self._load(ep)
        self._loaded[name] = obj
        return obj

    def names(self) -> list[str]:
        """Every name, built in or from an installed package (reading entry points, importing none)."""
        return sorted({*self._builtins, *self.plugins()})

    def origin(self, name: str) -> str:
        """Who provides ``name``: clutune itself or the package whose entry point claims it."""
        if name in self._builtins:
            return BUILT_IN
        ep = self.plugins().get(name)
        if ep is None:
            raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return _package(ep)

    def plugins(self) -> dict[str, EntryPoint]:
        """The group's entry points by name, read once per process; a name claimed twice is refused."""
        if self._plugins is None:
            found: dict[str, EntryPoint] = {}
            for ep in entry_points(group=self.group):
                other = found.get(ep.name)
                if other is not None and (other.value, _package(other)) == (ep.value, _package(ep)):
                    continue  # the same distribution seen twice on sys.path
                if other is not None or ep.name in self._builtins:
                    first = _package(other) if other is not None else BUILT_IN
                    raise UserError(
                        f"{self.kind} name {ep.name!r} is claimed twice: by {first} and by {_package(ep)} "
                        f"(entry point group {self.group}); uninstall or rename one"
                    )
                found[ep.name] = ep
            self._plugins = found
        return self._plugins

    def _load(self, ep: EntryPoint) -> T:
        where = f"{self.kind} {ep.name!r} from {_package(ep)} (entry point {ep.value!r})"
        try:
            obj = ep.load()
        # any import-time failure of foreign code is that package's bad input; a sys.exit(0) or a raised
        # KeyboardInterrupt in a plugin's module would otherwise end clutune itself, with exit 0 or 130
        except (Exception, SystemExit, KeyboardInterrupt) as e:
            raise UserError(f"{where} failed to import: {_first_line(e)}") from None
        problem = self._check(obj, ep.name)
        if problem is not None:
            raise UserError(f"{where}: {problem}")
        return obj
