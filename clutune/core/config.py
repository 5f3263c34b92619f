"""Experiment configuration: one YAML file, validated whole before any work starts.

Precedence for a method's hyperparameters, lowest first: the dataclass defaults, then the tuned defaults
``clutune/presets/best/<method>-<dataset>.yaml``, then the file's ``methods.<method>`` section, then ``--set``.

Presets and tuned defaults are package resources, read through :mod:`importlib.resources`, so an installed
wheel finds them from any folder, exactly as a source checkout does.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, ClassVar

import yaml

from clutune.errors import UserError
from clutune.guards.memory_check import check_fits
from clutune.guards.safe_names import check_name
from clutune.guards.typed import from_dict, to_dict

CONFIG_DIR: Traversable = files("clutune") / "presets"  # scenario and experiment presets, by file stem
BEST_DIR: Traversable = CONFIG_DIR / "best"  # tuned defaults, <method>-<dataset>.yaml
_PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MNIST1D_MIN_SAMPLES = 100
MAX_SEED = 2**32 - 1  # numpy's seeds are unsigned 32-bit words; torch's and Optuna's take these too
MAX_DIM = 1 << 16  # a layer width or channel count; beyond it a model does not fit in any machine's memory
DEVICE_TYPES = ("cpu", "cuda", "mps")
# A generated request's share of memory besides its ids: its record, its draws, its row in every result
REQUEST_OVERHEAD_BYTES = 2048
MNIST1D_SAMPLE_BYTES = 40 * 4 * 4  # 40 float32 features, with the generator's intermediate copies


def check_seed(value: int, key: str) -> None:
    if not 0 <= value <= MAX_SEED:
        raise UserError(f"config key {key!r}: a seed must be in 0..{MAX_SEED}, got {value}")


def check_number(
    value: float, key: str, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> None:
    """``value`` finite and in the interval (``low_open``/``high_open``: that end excluded)."""
    ok = (
        math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise UserError(f"config key {key!r}: must be a finite number in {interval}, got {value!r}")


@dataclass
class DatasetConfig:
    """The ``dataset`` section, handed whole to the reader called ``name`` (clutune.data.DATASETS).

    ``root`` and ``path`` are the two ways a reader is pointed at data (a folder, a file); ``options`` holds a
    plugin reader's own keys, so a typo in a built-in key is still refused while a plugin reads what it defines.
    """

    name: str = "digits"
    root: str | None = None  # a folder: cifar-10-batches-py or tiny-imagenet-200 inside it, or an image folder
    path: str | None = None  # a file: the .npz a reader loads (x_train, y_train, x_test, y_test)
    # mnist1d only: total samples to generate (train + test, split 80/20); None = the package's 5,000.
    samples: int | None = None
    image_size: int | None = None  # imagefolder only: resize every image to image_size x image_size
    options: dict[str, Any] = field(default_factory=dict)  # a plugin reader's own keys

    # The built-in readers that read no file: a path given to one of them is a mistake.
    NO_FILE: ClassVar[tuple[str, ...]] = ("digits", "mnist1d", "cifar10", "tinyimagenet", "imagefolder")

    def validate(self, prefix: str) -> None:
        if self.name == "npz" and not self.path:
            raise UserError(f"config key '{prefix}.path': npz needs the .npz file (x_train, y_train, x_test, y_test)")
        if self.path is not None and self.name in self.NO_FILE:
            raise UserError(f"config key '{prefix}.path': {self.name} reads no file (npz does)")
        if self.name == "imagefolder" and not self.root:
            raise UserError(f"config key '{prefix}.root': imagefolder needs the folder holding train/ and test/")
        if self.image_size is not None:
            if self.name != "imagefolder":
                raise UserError(f"config key '{prefix}.image_size': only imagefolder resizes images, not {self.name}")
            if self.image_size < 1:
                raise UserError(f"config key '{prefix}.image_size': must be at least 1")
        if self.samples is None:
            return
        if self.name != "mnist1d":
            raise UserError(f"config key '{prefix}.samples': only mnist1d can generate samples, not {self.name}")
        if self.samples < MNIST1D_MIN_SAMPLES:
            raise UserError(f"config key '{prefix}.samples': must be at least {MNIST1D_MIN_SAMPLES}")
        check_fits(self.samples * MNIST1D_SAMPLE_BYTES, f"{prefix}.samples", f"{self.samples} mnist1d samples")


@dataclass
class ModelConfig:
    """The ``model`` section, handed to the builder called ``name`` (clutune.models.MODELS) as :meth:`spec`."""

    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [128])  # mlp
    width: int = 32  # cnn
    options: dict[str, Any] = field(default_factory=dict)  # a plugin model's own keys; torchvision: arch

    def validate(self, prefix: str) -> None:
        for i, size in enumerate(self.hidden):
            if not 1 <= size <= MAX_DIM:
                raise UserError(f"config key '{prefix}.hidden[{i}]': a layer width must be in 1..{MAX_DIM}, got {size}")
        if not 1 <= self.width <= MAX_DIM:
            raise UserError(f"config key '{prefix}.width': must be in 1..{MAX_DIM}, got {self.width}")
        widest = max([0, *(a * b for a, b in zip(self.hidden, self.hidden[1:], strict=False))])
        check_fits(widest * 4 * 4, f"{prefix}.hidden", "the widest pair of hidden layers (weights, grads, momentum)")

    def spec(self) -> dict[str, Any]:
        """The section as a plain dict (what a builder receives and an oracle key hashes), without empty options
        so that the oracle keys of configs written before ``options`` existed stay the same."""
        return _without_unset_new_keys(to_dict(self))


def _without_unset_new_keys(section: dict[str, Any]) -> dict[str, Any]:
    """A section without the keys added after configs were first hashed (``path``, ``image_size``, ``options``)
    while they are unset, so a config that does not use them keeps its hash, its oracle keys and cached oracles."""
    return {k: v for k, v in section.items() if not (k in ("options", "path", "image_size") and not v)}


@dataclass
class ComputeConfig:
    """How models compute, never what (docs/gpu.md, Compute settings): speed knobs for CUDA, each off or without
    effect on the CPU, and ``flush_denormal`` for the CPU.

    They apply to method training, oracle training and evaluation alike.
    """

    precision: str = "fp32"  # fp32 or bf16 (autocast on CUDA; on the CPU a one-time warning and fp32)
    channels_last: bool = False  # channels-last weights and image batches for convolutional models (CUDA only)
    compile: bool = False  # torch.compile the model; compile time is reported apart (row column compile_seconds)
    eval_batch_size: int = 1024  # rows per forward pass when scoring every train and test sample
    flush_denormal: bool = True  # CPU: subnormal floats (|x| < 1.2e-38) computed as zero, at full speed

    def validate(self, prefix: str) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"config key '{prefix}.precision': expected fp32 or bf16, got {self.precision!r}")
        if not 1 <= self.eval_batch_size <= 1 << 24:
            raise UserError(f"config key '{prefix}.eval_batch_size': must be in 1..{1 << 24}")


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
    # Which requests get an exact oracle (see clutune.core.oracle.oracle_requests); the others get NaN oracle metrics.
    policy: str = "every"
    every: int = 1  # the period of policy every_k
    keep_weights: bool = False  # cache each oracle's weights too, not only its outputs
    ensemble: int = 1  # oracles per scored request, seeds seed .. seed+ensemble-1 (clutune.core.members)
    pack: int = 16  # the most oracles trained together in one packed step (clutune.core.packed_oracles)

    POLICIES: ClassVar[tuple[str, ...]] = ("every", "every_k", "unlearn", "final")

    def validate(self, prefix: str) -> None:
        if self.schedule not in ("cosine", "constant"):
            raise UserError(f"config key '{prefix}.schedule': expected cosine or constant, got {self.schedule!r}")
        for name in ("epochs", "batch_size", "every", "ensemble", "pack"):
            if getattr(self, name) < 1:
                raise UserError(f"config key '{prefix}.{name}': must be at least 1, got {getattr(self, name)}")
            if getattr(self, name) > 1 << 31:
                raise UserError(f"config key '{prefix}.{name}': must be at most {1 << 31}, got {getattr(self, name)}")
        # The recipe defines the right answer: a NaN or negative rate would train an all-NaN oracle and cache it.
        check_number(self.lr, f"{prefix}.lr", 0, 1e3, low_open=True)
        check_number(self.momentum, f"{prefix}.momentum", 0, 1, high_open=True)
        check_number(self.weight_decay, f"{prefix}.weight_decay", 0, 1e3)
        check_seed(self.seed, f"{prefix}.seed")
        check_seed(self.seed + self.ensemble - 1, f"{prefix}.seed + {prefix}.ensemble - 1 (the last member's seed)")
        if not self.cache_dir.strip():
            raise UserError(f"config key '{prefix}.cache_dir': must name a folder")
        if self.policy not in self.POLICIES:
            known = ", ".join(self.POLICIES)
            raise UserError(f"config key '{prefix}.policy': expected one of {known}, got {self.policy!r}")


@dataclass
class KlomConfig:
    """How KLoM is estimated from the models at hand (clutune.core.klom explains both estimators)."""

    estimator: str = "auto"  # binned (EasyDUB's), normal (a normal fit per sample) or auto (binned from 64 a side)

    ESTIMATORS: ClassVar[tuple[str, ...]] = ("binned", "normal", "auto")

    def validate(self, prefix: str) -> None:
        if self.estimator not in self.ESTIMATORS:
            known = ", ".join(self.ESTIMATORS)
            raise UserError(f"config key '{prefix}.estimator': expected one of {known}, got {self.estimator!r}")


@dataclass
class EvaluationConfig:
    """Evaluation that spans several runs, computed in the parent after a grid: it never changes a run's rows."""

    klom: KlomConfig = field(default_factory=KlomConfig)


@dataclass
class GenerateConfig:
    """A generated request stream (clutune.core.scenario_generator); the same settings always give the same stream."""

    n_requests: int = 100  # the stream length, exactly
    learn_chunk: int = 32  # new samples per learn request
    # Request 0 learns this many never-seen samples across every class (a base set, as a deployed model starts
    # from); 0: request 0 is an ordinary learn of learn_chunk.
    first_learn: int = 0
    learn_classes: str = "task"  # task: a chunk from one task's classes, tasks in round-robin; all: any class
    unlearn_ratio: float = 0.3  # share of unlearn requests (the first request is always a learn)
    # Relative weights of the unlearn kinds: task (what is still owned of one task), class (one class across
    # tasks), random (random_fraction of the owned samples, across tasks).
    unlearn_mix: dict[str, float] = field(default_factory=lambda: {"task": 1.0, "class": 1.0, "random": 1.0})
    random_fraction: float = 0.1
    relearn: bool = True  # new samples of an unlearned class may arrive later (never the unlearned ids)
    seed: int = 0

    UNLEARN_KINDS: ClassVar[tuple[str, ...]] = ("task", "class", "random")
    LEARN_CLASSES: ClassVar[tuple[str, ...]] = ("task", "all")

    def validate(self, prefix: str) -> None:
        for name in ("n_requests", "learn_chunk"):
            if getattr(self, name) < 1:
                raise UserError(f"config key '{prefix}.{name}': must be at least 1")
        per_request = REQUEST_OVERHEAD_BYTES + 8 * self.learn_chunk
        estimate = self.n_requests * per_request + 8 * self.first_learn
        check_fits(estimate, f"{prefix}.n_requests", f"a stream of {self.n_requests} generated requests")
        if self.first_learn < 0:
            raise UserError(f"config key '{prefix}.first_learn': must be >= 0 (0: an ordinary first learn)")
        if self.learn_classes not in self.LEARN_CLASSES:
            raise UserError(f"config key '{prefix}.learn_classes': expected task or all, got {self.learn_classes!r}")
        if not 0 <= self.unlearn_ratio < 1:
            raise UserError(f"config key '{prefix}.unlearn_ratio': must be in [0, 1), got {self.unlearn_ratio}")
        if not 0 < self.random_fraction <= 1:
            raise UserError(f"config key '{prefix}.random_fraction': must be in (0, 1], got {self.random_fraction}")
        check_seed(self.seed, f"{prefix}.seed")
        mix = self.unlearn_mix
        for kind, weight in mix.items():
            if kind not in self.UNLEARN_KINDS:
                known = ", ".join(self.UNLEARN_KINDS)
                raise UserError(f"config key '{prefix}.unlearn_mix': unknown kind {kind!r}; known: {known}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf:
                raise UserError(f"config key '{prefix}.unlearn_mix.{kind}': expected a weight >= 0, got {weight!r}")
        if self.unlearn_ratio > 0 and not any(w > 0 for w in mix.values()):
            raise UserError(f"config key '{prefix}.unlearn_mix': give at least one kind a weight > 0")


@dataclass
class ScenarioConfig:
    """Tasks are groups of classes; requests learn or unlearn over them (docs/configuration.md, Requests)."""

    classes_per_task: int = 2
    tasks: list[list[int]] | None = None  # explicit class groups; overrides classes_per_task
    seed: int = 0  # draws the random-sample unlearn sets, so every method and seed sees the same requests
    requests: list[dict[str, Any]] = field(default_factory=list)
    generate: GenerateConfig | None = None  # a generated stream instead of requests (docs/configuration.md)

    def validate(self, prefix: str) -> None:
        from clutune.core.scenarios import check_request_specs

        if self.generate is not None and self.requests:
            raise UserError(
                f"config key '{prefix}.requests': must be empty when {prefix}.generate is set "
                "(the generator writes the request list); remove one of the two"
            )
        if not 1 <= self.classes_per_task <= MAX_DIM:
            raise UserError(f"config key '{prefix}.classes_per_task': must be in 1..{MAX_DIM}")
        for t, classes in enumerate(self.tasks or []):
            if not classes or any(not 0 <= c < MAX_DIM for c in classes):
                raise UserError(f"config key '{prefix}.tasks[{t}]': a non-empty list of class indices 0..{MAX_DIM - 1}")
        check_seed(self.seed, f"{prefix}.seed")
        check_request_specs(self.requests)


@dataclass
class Resources:
    cpu: float = 1.0
    gpu: float = 0.0  # fractions pack several trials on one GPU

    def validate(self, prefix: str) -> None:
        finite = math.isfinite(self.cpu) and math.isfinite(self.gpu)
        if not finite or self.cpu < 0 or self.gpu < 0 or self.cpu + self.gpu == 0:
            raise UserError(f"config key '{prefix}': cpu and gpu must be >= 0 and not both 0")


@dataclass
class PBTConfig:
    """``sweep.scheduler: pbt``: every ``interval`` requests the worst ``quantile`` of the population copies the
    complete state and hyperparameters of a trial in the best ``quantile``, then perturbs them (multiplies by a
    factor, or resamples from the space with ``resample_probability``), clipped into the search space."""

    interval: int = 10  # requests between decisions; the score is the objective's mean over the window
    quantile: float = 0.25
    resample_probability: float = 0.25
    perturbation_factors: list[float] = field(default_factory=lambda: [1.2, 0.8])

    def validate(self, prefix: str) -> None:
        if self.interval < 1:
            raise UserError(f"config key '{prefix}.interval': must be at least 1")
        if not 0 < self.quantile <= 0.5:
            raise UserError(f"config key '{prefix}.quantile': must be in (0, 0.5]")
        if not 0 <= self.resample_probability <= 1:
            raise UserError(f"config key '{prefix}.resample_probability': must be in [0, 1]")
        if len(self.perturbation_factors) != 2 or any(not f > 0 for f in self.perturbation_factors):
            raise UserError(f"config key '{prefix}.perturbation_factors': give two factors > 0")


PICK_RULES = ("knee", "first", "weights")


@dataclass
class SweepConfig:
    """How ``clutune sweep`` searches; the search space itself ships as clutune/search_spaces/<method>.yaml."""

    # Request-mean metrics to minimise; two or more make a multi-objective study with a Pareto front.
    objectives: list[str] = field(default_factory=lambda: ["kl_oracle_all"])
    sampler: str = "gp"  # gp, tpe or random (docs/search.md); gp, as the sampler study measured
    sampler_seed: int = 0
    asha: bool = True  # prune at request boundaries on the first objective
    grace_period: int = 3  # requests before a trial can be pruned
    reduction_factor: int = 2
    trial_resources: Resources = field(default_factory=Resources)
    oracle_resources: Resources = field(default_factory=Resources)
    # Ray Tune experiment folders: a URI workers can reach, or a local path, relative to the folder the command
    # runs in (like --out and ./mlflow.db), made absolute before any worker starts.
    storage_path: str = "runs/sweeps"
    study_storage: str | None = None  # Optuna storage: None = a journal file in the sweep folder; or an RDB URL
    experiment: str | None = None  # MLflow experiment name; default: the config's name
    # Every trial runs its configuration on each of these run seeds and reports the mean over them.
    seeds: list[int] = field(default_factory=lambda: [0])
    robust: float = 0.0  # kappa: each objective is mean + kappa x std over seeds (sample std)
    # After the search, the best trial (one objective) or every Pareto trial is re-run on these fresh seeds.
    confirm_seeds: list[int] = field(default_factory=list)
    # A confirmed objective worse than the tuned one by more than this share of it is flagged.
    confirm_tolerance: float = 0.25
    confirm_front: bool = False  # with several objectives: confirm every Pareto trial, not only the picked one
    # The confirmation also runs a neighbour of each confirmed trial (every value moved this share of its range,
    # in the space's own scale, toward the inside of the space), so a pick at the edge of divergence shows;
    # 0 runs none.
    stability_step: float = 0.05
    # How the picked trial is taken from a multi-objective front (docs/search.md, "The pick"): knee (the smallest
    # sum over objectives of the value over the front's best), first (the best on the first objective among the
    # members within pick_tolerance of the front's best on every other objective), or weights (the knee's sum
    # weighted by pick_weights).
    pick: str = "knee"
    pick_tolerance: float | None = None  # first: relative slack allowed on the other objectives; null: any
    pick_weights: list[float] | None = None  # weights: one per objective
    # A trial checkpoints after a request once checkpoint_seconds of its time have passed since its last
    # checkpoint, or checkpoint_every requests (when set), and always after the last. A resume repeats what came
    # after the last checkpoint, exactly; each checkpoint costs a save, an upload and a Tune snapshot.
    checkpoint_every: int | None = None
    checkpoint_seconds: float = 30.0
    # Restarts of a trial whose worker or node died, each from its last checkpoint (Tune's FailureConfig).
    max_failures: int = 3
    # A finished trial's worker runs the next trial (its data already loaded); false gives every trial a fresh
    # worker wherever resources free first, which spreads a sweep's trials over a cluster's nodes.
    reuse_actors: bool = True
    # The closing line of a sweep calls it converged when its last quarter of trials improved the best value (one
    # objective) or the dominated hypervolume (several) by no more than this share of the value before them.
    converged_tolerance: float = 0.01
    # Hypervolume reference point, one value per objective; null: 10% beyond the worst complete trial.
    reference_point: list[float] | None = None
    # Stop a sweep once converged (checked after each complete trial from min_trials on); --trials is the cap.
    stop_converged: bool = False
    min_trials: int = 20
    scheduler: str = "asha"  # asha (on when sweep.asha) or pbt: population-based training over the stream
    pbt: PBTConfig = field(default_factory=PBTConfig)

    def validate(self, prefix: str) -> None:
        from clutune.core import storage

        storage.check_location(self.storage_path, f"config key '{prefix}.storage_path'")
        if self.experiment is not None and not self.experiment.strip():
            raise UserError(f"config key '{prefix}.experiment': must not be empty (null: the config's name)")
        for i, seed in enumerate([self.sampler_seed, *self.seeds, *self.confirm_seeds]):
            check_seed(seed, f"{prefix}.{'sampler_seed' if i == 0 else 'seeds'}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"config key '{prefix}.seeds': give at least one seed, each once")
        if set(self.confirm_seeds) & set(self.seeds):
            both = sorted(set(self.confirm_seeds) & set(self.seeds))
            raise UserError(f"config key '{prefix}.confirm_seeds': seeds {both} are also tuning seeds")
        if len(set(self.confirm_seeds)) != len(self.confirm_seeds):
            raise UserError(f"config key '{prefix}.confirm_seeds': a seed is listed twice")
        if self.robust < 0 or self.confirm_tolerance < 0:
            raise UserError(f"config key '{prefix}': robust and confirm_tolerance must be >= 0")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise UserError(f"config key '{prefix}.checkpoint_every': must be at least 1 (or null: by time only)")
        if not self.checkpoint_seconds >= 0:
            raise UserError(f"config key '{prefix}.checkpoint_seconds': must be >= 0")
        if self.max_failures < 0:
            raise UserError(f"config key '{prefix}.max_failures': must be >= 0")
        if not self.objectives:
            raise UserError(f"config key '{prefix}.objectives': give at least one metric")
        if self.sampler not in ("tpe", "gp", "random"):
            raise UserError(f"config key '{prefix}.sampler': expected tpe, gp or random, got {self.sampler!r}")
        if not self.converged_tolerance >= 0:
            raise UserError(f"config key '{prefix}.converged_tolerance': must be >= 0")
        if self.reference_point is not None and len(self.reference_point) != len(self.objectives):
            raise UserError(f"config key '{prefix}.reference_point': give one value per objective")
        if self.pick not in PICK_RULES:
            raise UserError(f"config key '{prefix}.pick': expected {', '.join(PICK_RULES)}, got {self.pick!r}")
        if self.pick_tolerance is not None and not self.pick_tolerance >= 0:
            raise UserError(f"config key '{prefix}.pick_tolerance': must be >= 0 (null: no limit)")
        if self.pick == "weights" and (
            self.pick_weights is None
            or len(self.pick_weights) != len(self.objectives)
            or not all(math.isfinite(w) and w >= 0 for w in self.pick_weights)
            or not any(w > 0 for w in self.pick_weights)
        ):
            raise UserError(f"config key '{prefix}.pick_weights': give one weight >= 0 per objective, not all 0")
        if not 0 <= self.stability_step < 0.5:
            raise UserError(f"config key '{prefix}.stability_step': must be in [0, 0.5)")
        if self.min_trials < 2:
            raise UserError(f"config key '{prefix}.min_trials': must be at least 2")
        if self.scheduler not in ("asha", "pbt"):
            raise UserError(f"config key '{prefix}.scheduler': expected asha or pbt, got {self.scheduler!r}")
        if self.scheduler == "pbt" and self.confirm_seeds:
            raise UserError(
                f"config key '{prefix}.confirm_seeds': a pbt trial follows a schedule of hyperparameters, "
                "not one point to confirm; leave confirm_seeds empty"
            )
        self.pbt.validate(f"{prefix}.pbt")
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
    # Stability diagnostics (dead units, weight magnitude, effective rank) after every request run on a fixed
    # probe set of this many samples (owned train plus test, drawn once by scenario.seed); 0 turns them off.
    probe_size: int = 2000
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    methods: dict[str, Any] = field(default_factory=dict)  # methods.<name>.<hyperparameter>

    def validate(self, prefix: str) -> None:
        """The top-level keys; each section checked its own (``validate`` of each, when built)."""
        check_name(self.name, "config key 'name'")
        check_seed(self.seed, "seed")
        check_device(self.device)
        if not 0 <= self.threads <= 4096:
            raise UserError(f"config key 'threads': must be in 0..4096 (0: torch's default), got {self.threads}")
        if not 0 <= self.probe_size <= 1 << 24:
            raise UserError(f"config key 'probe_size': must be in 0..{1 << 24} (0: no diagnostics)")

    def as_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def hash(self) -> str:
        """Identity of everything that can change a result except the method and run seed.

        Of the compute settings only a non-default precision enters (bf16 changes results on CUDA); the others
        change speed, not results, and leaving fp32 out keeps the hashes of configs written before them.
        """
        payload = self.as_dict()
        compute = payload.pop("compute")
        if compute["precision"] != "fp32":
            payload["precision"] = compute["precision"]
        payload["dataset"] = _without_unset_new_keys(payload["dataset"])
        payload["model"] = _without_unset_new_keys(payload["model"])
        payload.pop("seed")
        payload.pop("methods")
        payload.pop("sweep")
        payload.pop("evaluation")
        payload.pop("threads")
        payload["oracle"].pop("cache_dir")
        payload["oracle"].pop("keep_weights")
        payload["oracle"].pop("pack")
        if payload["oracle"]["ensemble"] == 1:  # configs written before ensembles keep their hash
            del payload["oracle"]["ensemble"]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]


def check_device(device: str) -> None:
    """``auto`` or a device torch's own grammar accepts (``cpu``, ``cuda``, ``cuda:1``, ``mps``), parsed without
    initialising CUDA; whether that device exists here is asked when the run starts."""
    if device == "auto":
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        raise UserError(f"config key 'device': {device!r} is not a device; expected auto, cpu, cuda, cuda:N or mps")


ConfigSource = Config | Mapping[str, Any] | str | os.PathLike
# Overrides as the API takes them ({"oracle.epochs": 30, "gamma": 2}) or as --set gives them (["oracle.epochs=30"]).
Overrides = Mapping[str, Any] | Sequence[str] | None


def parse_set(items: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``key.sub=value`` pairs; values are parsed as YAML so numbers, lists and booleans keep their type."""
    out = []
    for item in items:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise UserError(f"--set {key}: cannot parse value {raw!r}: {yaml_problem(e)}") from None
        out.append((key.strip().split("."), value))
    return out


def override_pairs(overrides: Overrides) -> list[tuple[list[str], Any]]:
    """Either form of overrides as (dotted path, value) pairs, in the order given."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        pairs = []
        for key, value in overrides.items():
            if not isinstance(key, str) or not key.strip():
                raise UserError(f"override {key!r}: keys are dotted config keys or hyperparameter names")
            pairs.append((key.strip().split("."), value))
        return pairs
    if isinstance(overrides, str):
        raise UserError(f"overrides {overrides!r}: give a mapping of key to value, or a list of key=value strings")
    return parse_set(overrides)


def with_override(overrides: Overrides, key: str, value: Any) -> dict[str, Any]:
    """``overrides`` as a mapping, with ``key`` set last (a keyword option wins over the same key given as an
    override)."""
    return {**{".".join(path): v for path, v in override_pairs(overrides)}, key: value}


def sets_to_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``--set`` strings as the API's overrides mapping (a later --set of the same key wins, as on the shell)."""
    return {".".join(path): value for path, value in parse_set(items)}


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


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: what is wrong and where (PyYAML's own message spans several, with a caret)."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = error.problem or error.context or "invalid YAML"
        return f"{what} (line {mark.line + 1}, column {mark.column + 1})" if mark else what
    lines = str(error).splitlines()
    return lines[0] if lines else "invalid YAML"


def resolve_config_path(path: str | os.PathLike) -> Path | Traversable:
    """A file path, else a preset name (``digits-random``) shipped with the package; a folder is refused here,
    before it is read.

    A file wins when both exist, so a local edit of a preset can be run under its own path; a name that is not a
    file is looked up among the presets whatever the current folder is.
    """
    p = Path(path)
    if p.is_dir():
        raise UserError(f"--config {str(path)!r} is a folder; give a YAML file or a preset name")
    if p.is_file():
        return p
    name = str(path)
    if _PRESET_NAME.fullmatch(name):
        preset = CONFIG_DIR / f"{name.removesuffix('.yaml')}.yaml"
        if preset.is_file():
            return preset
    raise UserError(f"config {name!r} not found: neither a file nor a preset ({', '.join(preset_names())})")


def preset_names() -> list[str]:
    """The shipped presets, by the name ``--config`` takes."""
    return sorted(p.name.removesuffix(".yaml") for p in CONFIG_DIR.iterdir() if p.name.endswith(".yaml"))


def read_yaml(path: Path | Traversable) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not a UTF-8 text file (byte {e.start} cannot be decoded)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: malformed YAML: {yaml_problem(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _raw_config(source: ConfigSource) -> dict[str, Any]:
    if isinstance(source, Config):
        return source.as_dict()
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    if isinstance(source, (str, os.PathLike)):
        return read_yaml(resolve_config_path(source))
    raise UserError(f"config: expected a Config, a mapping, a file path or a preset name, got {type(source).__name__}")


def load_config(source: ConfigSource, overrides: Overrides = None) -> Config:
    """A validated Config from a file path, a preset name, a mapping or a Config (copied, never changed), with
    ``overrides`` applied. Bare hyperparameter names among the overrides are left out here: see
    :func:`bare_overrides`."""
    raw = _raw_config(source)
    # A bare hyperparameter name (``gamma=2``) is shorthand for every configured method's key; resolved by the
    # caller that knows the method, so keep it out of the structural config here.
    top = {f for f in Config.__dataclass_fields__}
    structural = [(p, v) for p, v in override_pairs(overrides) if p[0] in top or len(p) > 1]
    config = from_dict(Config, apply_overrides(raw, structural))
    for key in config.methods:
        if not isinstance(config.methods[key], dict):
            raise UserError(f"config key 'methods.{key}': expected a mapping of hyperparameters")
    return config


def bare_overrides(overrides: Overrides) -> dict[str, Any]:
    """The overrides whose name is not a config section: method hyperparameters."""
    top = {f for f in Config.__dataclass_fields__}
    return {p[0]: v for p, v in override_pairs(overrides) if len(p) == 1 and p[0] not in top}


def tuned_defaults_path(method: str, dataset: str) -> Path | Traversable | None:
    """The file of ``method``'s tuned hyperparameters on ``dataset``: the one the method ships itself first (a
    plugin's, clutune.plugins.method_files), else clutune's own; None when neither exists."""
    from clutune.plugins.method_files import own_tuned_defaults  # imports the method library: only when asked

    path = own_tuned_defaults(method, dataset) or BEST_DIR / f"{method}-{dataset}.yaml"
    return path if path.is_file() else None


def best_defaults(method: str, dataset: str) -> dict[str, Any]:
    """Tuned hyperparameters of ``method`` on ``dataset``; {} when it has none (its class defaults hold)."""
    path = tuned_defaults_path(method, dataset)
    return read_yaml(path) if path is not None else {}
