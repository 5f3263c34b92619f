"""The Python API's arguments checked by type and range, each refusal one line naming the keyword.

The command line hands the API strings argparse has already typed; a notebook hands it anything. Without these
checks a wrong type reached a comparison or a path deep inside a command (``trials="3"`` a TypeError, ``out=None``
a folder named ``None``), after the command had started writing. A path is a ``str`` or an ``os.PathLike``
wherever one is taken; ``True`` is never a number.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from clutune.errors import UserError
from clutune.guards.seeds import check_seed_option


def check_type(name: str, value: object, kinds: tuple[type, ...], expected: str) -> None:
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise UserError(f"{name}={value!r}: expected {expected}")


def check_bool(name: str, value: object) -> None:
    check_type(name, value, (bool,), "True or False")


def check_int(name: str, value: object, minimum: int | None = None) -> None:
    check_type(name, value, (int,), "an integer" if minimum is None else f"an integer of at least {minimum}")
    if minimum is not None and value < minimum:
        raise UserError(f"{name}={value!r}: expected an integer of at least {minimum}")


def check_optional_int(name: str, value: object, minimum: int | None = None) -> None:
    if value is not None:
        check_int(name, value, minimum)


def check_str(name: str, value: object) -> None:
    check_type(name, value, (str,), "a string")
    if not value.strip():
        raise UserError(f"{name}={value!r}: expected a non-empty string")


def check_optional_str(name: str, value: object) -> None:
    if value is not None:
        check_str(name, value)


def check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices or not isinstance(value, str):
        raise UserError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def check_path(name: str, value: object) -> None:
    """A non-empty path: ``""`` would name the current folder, ``None`` a folder called ``None``."""
    check_type(name, value, (str, os.PathLike), "a path")
    if not os.fspath(value).strip():
        raise UserError(f"{name}={value!r}: expected a non-empty path")


def check_optional_path(name: str, value: object) -> None:
    if value is not None:
        check_path(name, value)


def check_paths(name: str, values: object) -> None:
    if isinstance(values, (str, os.PathLike)) or not isinstance(values, Sequence) or not values:
        raise UserError(f"{name}={values!r}: expected a list of folders")
    for value in values:
        check_path(name, value)


def check_names(name: str, values: object) -> None:
    """A non-empty list of names (methods): a bare string would be read letter by letter."""
    if isinstance(values, str) or not isinstance(values, Sequence) or not values:
        raise UserError(f"{name}={values!r}: expected a non-empty list of names, e.g. {name}=['er', 'ugclu']")
    for value in values:
        check_str(name, value)


def check_seed(name: str, value: object) -> None:
    """Named as the flag (``--seed``), as the commands' own checks further in name it."""
    check_seed_option(value, f"--{name}")


def check_optional_seed(name: str, value: object) -> None:
    if value is not None:
        check_seed(name, value)


def check_seeds(name: str, values: object) -> None:
    if isinstance(values, (str, int)) or not isinstance(values, Sequence) or not values:
        raise UserError(f"{name}={values!r}: expected a non-empty list of seeds, e.g. {name}=[0, 1]")
    for value in values:
        check_seed(name, value)


def check_config(value: object) -> None:
    """What :func:`clutune.core.config.load_config` reads: a Config, a mapping, a file path or a preset name."""
    from clutune.core.config import Config

    if not isinstance(value, (Config, Mapping)):
        check_type("config", value, (str, os.PathLike), "a Config, a mapping, a YAML file path or a preset name")
        check_path("config", value)


def check_overrides(value: object) -> None:
    """A mapping of dotted keys to values, or ``--set``'s list of ``key=value`` strings."""
    if value is None:
        return
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str) or not key.strip():
                raise UserError(f"overrides key {key!r}: expected a dotted config key or a hyperparameter name")
        return
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise UserError(f"overrides={value!r}: expected a mapping or a list of 'key=value' strings")
    for item in value:
        if not isinstance(item, str) or "=" not in item:
            raise UserError(f"overrides item {item!r}: expected a 'key=value' string")


def check_log(value: object) -> None:
    if not callable(value):
        raise UserError(f"log={value!r}: expected a function taking one line of text")
