"""docs/configuration.md claims every config key: walk the config classes and find each dotted key on the page.

Written against the config's public structure (dataclass fields or pydantic ``model_fields``), so it keeps working
whichever of the two the config classes are.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path

from clutune.core.config import Config

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _fields(cls: type) -> dict[str, object]:
    if dataclasses.is_dataclass(cls):
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}
    return {name: field.annotation for name, field in cls.model_fields.items()}


def _section(annotation: object) -> type | None:
    """The config class a field holds (unwrapping ``X | None``), or None for a leaf value."""
    options = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    for candidate in [annotation, *options]:
        if isinstance(candidate, type) and (dataclasses.is_dataclass(candidate) or hasattr(candidate, "model_fields")):
            return candidate
    return None


def config_keys(cls: type = Config, prefix: str = "") -> list[str]:
    keys = []
    for name, annotation in _fields(cls).items():
        key = f"{prefix}{name}"
        section = _section(annotation)
        keys += config_keys(section, f"{key}.") if section else [key]
    return keys


def test_the_walk_finds_nested_and_optional_sections() -> None:
    keys = config_keys()
    assert {"seed", "oracle.epochs", "sweep.pbt.interval", "scenario.generate.n_requests"} <= set(keys)
    assert "sweep.trial_resources.gpu" in keys and "sweep" not in keys


def test_configuration_md_documents_every_config_key() -> None:
    text = PAGE.read_text()
    missing = [key for key in config_keys() if f"`{key}`" not in text and f"`{key}." not in text]
    assert not missing, f"docs/configuration.md lacks {missing}"
