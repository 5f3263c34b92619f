"""Experiment configuration: one YAML file, validated whole before any work starts.

Precedence for a method's hyperparameters, lowest first: the dataclass defaults, then
``configs/best/<method>-<dataset>.yaml``, then the file's ``methods.<method>`` section, then ``--set``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from clutune.errors import UserError
from clutune.typed import from_dict, to_dict

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = REPO_ROOT / "configs"
BEST_DIR = CONFIG_DIR / "best"


@dataclass
class DatasetConfig:
    name: str = "digits"
    root: str | None = None  # folder holding cifar-10-batches-py or tiny-imagenet-200


@dataclass
class ModelConfig:
    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128])
    width: int = 32


@dataclass
class OracleConfig:
    """The retrain recipe that defines the right answer; independent of every method's settings."""

    epochs: int = 60
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 64
    schedule: str = "cosine"
    augment: bool = False
    seed: int = 0
    cache_dir: str = "~/.cache/clutune/oracles"

    def validate(self, prefix: str) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise UserError(f"config key '{prefix}.schedule': expected cosine or constant, got {self.schedule!r}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"config key '{prefix}.{name}': must be at least 1")


@dataclass
class ScenarioConfig:
    """Tasks are groups of classes; requests learn or unlearn over them (see README, Scenarios)."""

    classes_per_task: int = 2
    tasks: list[list[int]] | None = None  # explicit class groups; overrides classes_per_task
    seed: int = 0  # draws the random-sample unlearn sets, so every method and seed sees the same requests
    requests: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0  # fractions pack several trials on one GPU

    def validate(self, prefix: str) -> None:
        if self.cpu < 0 or self.gpu < 0 or self.cpu + self.gpu == 0:
            raise UserError(f"config key '{prefix}': cpu and gpu must be >= 0 and not both 0")


@dataclass
class SweepConfig:
    """How ``clutune sweep`` searches; the search space itself lives in search_spaces/<method>.yaml."""

    # Request-mean metrics to minimise; two or more make a multi-objective study with a Pareto front.
    objectives: list[str] = field(default_factory=lambda: ["kl_oracle_all"])
    sampler: str = "tpe"  # tpe or random
    sampler_seed: int = 0
    asha: bool = True  # prune at request boundaries on the first objective
    grace_period: int = 3  # requests before a trial can be pruned
    reduction_factor: int = 2
    trial_resources: Resources = field(default_factory=Resources)
    oracle_resources: Resources = field(default_factory=Resources)
    storage_path: str = "runs/sweeps"  # Ray Tune experiment folders (local path or a URI workers can reach)
    study_storage: str | None = None  # Optuna storage: None = a journal file in the sweep folder; or an RDB URL
    experiment: str | None = None  # MLflow experiment name; default: the config's name

    def validate(self, prefix: str) -> None:
        if not self.objectives:
            raise UserError(f"config key '{prefix}.objectives': give at least one metric")
        if self.sampler not in ("tpe", "random"):
            raise UserError(f"config key '{prefix}.sampler': expected tpe or random, got {self.sampler!r}")
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise UserError(f"config key '{prefix}': grace_period must be >= 1 and reduction_factor >= 2")


@dataclass
class Config:
    name: str = "unnamed"
    seed: int = 0
    device: str = "auto"
    # torch intra-op threads for this run; 0 keeps torch's default. Small models run many times faster on one
    # thread than on several that contend for cores with other trials.
    threads: int = 1
    augment: bool = False  # random crop + flip on image batches during method training
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    methods: dict[str, Any] = field(default_factory=dict)  # methods.<name>.<hyperparameter>

    def as_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def hash(self) -> str:
        """Identity of everything that can change a result except the method and run seed."""
        payload = self.as_dict()
        payload.pop("seed")
        payload.pop("methods")
        payload.pop("sweep")
        payload.pop("threads")
        payload["oracle"].pop("cache_dir")
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def parse_set(items: list[str]) -> list[tuple[list[str], Any]]:
    """``key.sub=value`` pairs; values are parsed as YAML so numbers, lists and booleans keep their type."""
    out = []
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise UserError(f"--set {key}: cannot parse value {raw!r}: {e}") from None
        out.append((key.strip().split("."), value))
    return out


def apply_overrides(raw: dict[str, Any], overrides: list[tuple[list[str], Any]]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for path, value in overrides:
        node = raw
        for part in path[:-1]:
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise UserError(f"--set {'.'.join(path)}: {part!r} is not a section")
            node = nxt
        node[path[-1]] = value
    return raw


def resolve_config_path(path: str | Path) -> Path:
    """A preset name (``digits-random``) or a file path."""
    p = Path(path)
    if p.exists():
        return p
    preset = CONFIG_DIR / f"{path}.yaml"
    if preset.exists():
        return preset
    raise UserError(f"config {str(path)!r} not found (neither a file nor a preset in {CONFIG_DIR})")


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0] if str(e) else "invalid YAML"
        raise UserError(f"{path}: malformed YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(path: str | Path, sets: list[str] | None = None) -> Config:
    raw = read_yaml(resolve_config_path(path))
    overrides = parse_set(sets or [])
    # A bare hyperparameter name in --set (``--set gamma=2``) is shorthand for every configured method's key;
    # resolved by the caller that knows the method, so keep it out of the structural config here.
    top = {f for f in Config.__dataclass_fields__}
    structural = [(p, v) for p, v in overrides if p[0] in top or len(p) > 1]
    config = from_dict(Config, apply_overrides(raw, structural))
    for key in config.methods:
        if not isinstance(config.methods[key], dict):
            raise UserError(f"config key 'methods.{key}': expected a mapping of hyperparameters")
    return config


def bare_overrides(sets: list[str] | None) -> dict[str, Any]:
    """The ``--set name=value`` items whose name is not a config section: method hyperparameters."""
    top = {f for f in Config.__dataclass_fields__}
    return {p[0]: v for p, v in parse_set(sets or []) if len(p) == 1 and p[0] not in top}


def best_defaults(method: str, dataset: str) -> dict[str, Any]:
    path = BEST_DIR / f"{method}-{dataset}.yaml"
    return read_yaml(path) if path.exists() else {}
