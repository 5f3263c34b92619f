"""Search spaces as YAML, checked against the method's hyperparameter dataclass before a sweep starts."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import optuna

from clutune.clu.methods import get_method
from clutune.core.config import read_yaml
from clutune.errors import UserError
from clutune.plugins.method_files import own_search_space

# Shipped inside the package (importlib.resources), so an installed wheel finds them from any folder.
SPACE_DIR: Traversable = files("clutune") / "search_spaces"
_KINDS = {"float": {"low", "high", "log"}, "int": {"low", "high", "log"}, "categorical": {"choices"}}


@dataclass
class SearchSpace:
    method: str
    path: Path | Traversable
    raw: dict[str, Any]
    distributions: dict[str, optuna.distributions.BaseDistribution]

    def contains(self, name: str, value: Any) -> bool:
        """Whether ``value`` is a point of this space (a default outside the bounds cannot seed the search)."""
        dist = self.distributions[name]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            return value in dist.choices
        return not isinstance(value, bool) and dist.low <= value <= dist.high

    def project(self, name: str, value: Any) -> Any:
        """The point of the space nearest to ``value``: a number clipped into the range (rounded for an int
        range), a categorical's nearest numeric choice (its first choice when ``value`` is not a number)."""
        dist = self.distributions[name]
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if (numeric or isinstance(dist, optuna.distributions.CategoricalDistribution)) and self.contains(name, value):
            return value
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            choices = [c for c in dist.choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
            return min(choices, key=lambda c: abs(c - value)) if numeric and choices else dist.choices[0]
        if not numeric:
            return dist.low
        clipped = min(max(value, dist.low), dist.high)
        return int(round(clipped)) if isinstance(dist, optuna.distributions.IntDistribution) else float(clipped)

    def _scale(self, name: str) -> tuple[float, float, bool]:
        dist = self.distributions[name]
        return float(dist.low), float(dist.high), bool(getattr(dist, "log", False))

    def on_bound(self, name: str, value: Any) -> bool:
        """Whether a numeric ``value`` sits on a bound of its range (a pick there asks for a wider space)."""
        if isinstance(self.distributions[name], optuna.distributions.CategoricalDistribution):
            return False
        low, high, _ = self._scale(name)
        span = high - low
        return span > 0 and min(abs(value - low), abs(high - value)) <= 1e-9 * span

    def inward(self, name: str, value: Any, step: float) -> Any:
        """``value`` moved ``step`` of its range toward the middle of the range, in the space's own scale (log
        for a log range), at least one unit for an int range; a categorical value stays. A pick's neighbour."""
        dist = self.distributions[name]
        if isinstance(dist, optuna.distributions.CategoricalDistribution) or step == 0:
            return value
        low, high, log = self._scale(name)
        to, back = (math.log, math.exp) if log else (float, float)
        lo, hi, v = to(low), to(high), to(value)
        moved = v + step * (hi - lo) * (1 if v < (lo + hi) / 2 else -1)
        out = back(min(max(moved, lo), hi))
        if isinstance(dist, optuna.distributions.IntDistribution):
            rounded = int(round(out))
            if rounded == value and high > low:
                rounded = value + (1 if value < (low + high) / 2 else -1)
            return int(min(max(rounded, low), high))
        return float(out)


def start_point(space: SearchSpace, keys: list[str], defaults: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The first trial's point: the method's tuned defaults, each projected into the space when the space
    excludes it (a narrowed range, a one-value categorical), so the sampler always gets a complete point; and
    the line that says which."""
    start = {k: space.project(k, defaults.get(k)) for k in keys}
    moved = [f"{k} {defaults.get(k)!r} -> {start[k]!r}" for k in keys if start[k] != defaults.get(k)]
    if not moved:
        return start, "first trial: the method's tuned defaults"
    return start, f"first trial: the method's tuned defaults, projected into the space ({', '.join(moved)})"


def default_space_path(method: str) -> Path | Traversable:
    """The search space ``method`` ships itself (a plugin's, clutune.plugins.method_files) first, else clutune's."""
    return own_search_space(method) or SPACE_DIR / f"{method}.yaml"


def load_space(path: str | Path | Traversable, method: str) -> SearchSpace:
    """Parse and validate; every problem is a one-line :class:`UserError` naming the key."""
    if isinstance(path, str):
        path = Path(path)
    if not path.is_file():
        raise UserError(f"search space {path} not found")
    data = read_yaml(path)
    unknown = set(data) - {"method", "params"}
    if unknown:
        raise UserError(f"{path}: unknown key {sorted(unknown)[0]!r} (method, params)")
    if data.get("method", method) != method:
        raise UserError(f"{path}: space is for method {data['method']!r}, not {method!r}")
    params = data.get("params")
    if not isinstance(params, dict) or not params:
        raise UserError(f"{path}: 'params' must be a non-empty mapping of hyperparameter -> distribution")
    hp_cls = get_method(method).Hparams
    fields = {f.name: f for f in dataclasses.fields(hp_cls)}
    hints = typing.get_type_hints(hp_cls)
    dists = {}
    for name, spec in params.items():
        where = f"{path}: params.{name}"
        if name not in fields:
            raise UserError(f"{where}: {method} has no hyperparameter {name!r}; known: {', '.join(sorted(fields))}")
        dists[name] = _distribution(where, spec, hints[name])
    return SearchSpace(method, path, data, dists)


def _distribution(where: str, spec: Any, annotation: Any) -> optuna.distributions.BaseDistribution:
    if not isinstance(spec, dict) or "type" not in spec:
        raise UserError(f"{where}: expected a mapping with 'type' (float, int or categorical)")
    kind = spec["type"]
    if kind not in _KINDS:
        raise UserError(f"{where}: unknown type {kind!r} (float, int or categorical)")
    extra = set(spec) - _KINDS[kind] - {"type"}
    if extra:
        raise UserError(f"{where}: unknown key {sorted(extra)[0]!r} for type {kind}")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise UserError(f"{where}: 'choices' must be a non-empty list")
        return optuna.distributions.CategoricalDistribution(choices)
    if "low" not in spec or "high" not in spec:
        raise UserError(f"{where}: needs both 'low' and 'high'")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    number = int if kind == "int" else (int, float)
    for bound in (low, high):
        if isinstance(bound, bool) or not isinstance(bound, number) or not math.isfinite(bound):
            raise UserError(f"{where}: bounds must be finite {kind}s, got {bound!r}")
    if not low < high:
        raise UserError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise UserError(f"{where}: a log scale needs low > 0, got {low}")
    if kind == "int":
        if int not in typing.get_args(annotation) and annotation is not int:
            raise UserError(f"{where}: type int does not fit the hyperparameter's type {annotation}")
        return optuna.distributions.IntDistribution(low, high, log=log)
    if annotation is int:
        raise UserError(f"{where}: type float does not fit an integer hyperparameter; use type: int")
    return optuna.distributions.FloatDistribution(float(low), float(high), log=log)
