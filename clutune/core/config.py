"""Experiment configuration: one YAML file, validated whole before any work starts.

Every section is a pydantic model (clutune.core.settings): unknown keys and wrong types are refused in one line,
and each field declares its bounds, its message and its part in the identity that the config hash and the
oracle cache key are built from (clutune.core.identity). Adding a setting is one line in its section::

    pack: Int = setting(1, ge=1, says="must be at least 1", identity=Identity.EXCLUDED)

A field left without ``identity=`` is part of the identity; a new one that can change results declares
``identity=Identity.WHEN_SET`` so that configs which do not set it keep their hashes and cached oracles, and
tests/test_config_identity.py fails until one of the two is chosen (or ``HASH_VERSION`` is bumped).

Precedence for a method's hyperparameters, lowest first: the dataclass defaults, then the tuned defaults
``clutune/presets/best/<method>-<dataset>.yaml``, then the file's ``methods.<method>`` section, then ``--set``.

Presets and tuned defaults are package resources, read through :mod:`importlib.resources`, so an installed
wheel finds them from any folder, exactly as a source checkout does.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any, ClassVar

import yaml
from pydantic import Field, model_validator

from clutune.core.identity import Identity, identity
from clutune.core.settings import Float, Int, Section, problem, setting
from clutune.errors import UserError
from clutune.guards.memory_check import memory_problem
from clutune.guards.safe_names import check_name

CONFIG_DIR: Traversable = files("clutune") / "presets"  # scenario and experiment presets, by file stem
BEST_DIR: Traversable = CONFIG_DIR / "best"  # tuned defaults, <method>-<dataset>.yaml
_PRESET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MNIST1D_MIN_SAMPLES = 100
MAX_SEED = 2**32 - 1  # numpy's seeds are unsigned 32-bit words; torch's and Optuna's take these too
MAX_DIM = 1 << 16  # a layer width or channel count; beyond it a model does not fit in any machine's memory
MAX_COUNT = 1 << 31  # epochs, batch sizes, periods
DEVICE_TYPES = ("cpu", "cuda", "mps")
# A generated request's share of memory besides its ids: its record, its draws, its row in every result
REQUEST_OVERHEAD_BYTES = 2048
MNIST1D_SAMPLE_BYTES = 40 * 4 * 4  # 40 float32 features, with the generator's intermediate copies
# The version of the config hash's identity; it enters the hash only from 2 on, so the hashes of version 1
# (every hash before the version existed) stay as they were. Bump it when the identity changes on purpose.
HASH_VERSION = 1

SEED = {"ge": 0, "le": MAX_SEED, "says": f"a seed must be in 0..{MAX_SEED}, got {{value}}"}
COUNT = {
    "ge": 1,
    "le": MAX_COUNT,
    "says": {"ge": "must be at least 1, got {value}", "le": f"must be at most {MAX_COUNT}, got {{value}}"},
}
LayerWidth = Annotated[int, Field(ge=1, le=MAX_DIM)]


class DatasetConfig(Section):
    """The ``dataset`` section, handed whole to the reader called ``name`` (clutune.data.DATASETS).

    ``root`` and ``path`` are the two ways a reader is pointed at data (a folder, a file); ``options`` holds a
    plugin reader's own keys, so a typo in a built-in key is still refused while a plugin reads what it defines.
    ``path``, ``image_size`` and ``options`` came after the first hashes: they enter the identity when set.
    """

    name: str = "digits"
    root: str | None = None  # a folder: cifar-10-batches-py or tiny-imagenet-200 inside it, or an image folder
    # a file: the .npz a reader loads (x_train, y_train, x_test, y_test)
    path: str | None = setting(None, identity=Identity.WHEN_SET)
    # mnist1d only: total samples to generate (train + test, split 80/20); None = the package's 5,000.
    samples: Int | None = None
    # imagefolder only: resize every image to image_size x image_size
    image_size: Int | None = setting(None, identity=Identity.WHEN_SET)
    # npz, imagefolder: read a file or folder linked from outside the data's folder
    follow_links: bool = setting(False, identity=Identity.WHEN_SET)
    options: dict[str, Any] = setting(factory=dict, identity=Identity.WHEN_SET)  # a plugin reader's own keys

    # The built-in readers that read no file: a path given to one of them is a mistake.
    NO_FILE: ClassVar[tuple[str, ...]] = ("digits", "mnist1d", "cifar10", "tinyimagenet", "imagefolder")

    @model_validator(mode="after")
    def _consistent(self) -> DatasetConfig:
        if self.name == "npz" and not self.path:
            raise problem("path", "npz needs the .npz file (x_train, y_train, x_test, y_test)")
        if self.path is not None and self.name in self.NO_FILE:
            raise problem("path", f"{self.name} reads no file (npz does)")
        if self.name == "imagefolder" and not self.root:
            raise problem("root", "imagefolder needs the folder holding train/ and test/")
        if self.image_size is not None:
            if self.name != "imagefolder":
                raise problem("image_size", f"only imagefolder resizes images, not {self.name}")
            if self.image_size < 1:
                raise problem("image_size", "must be at least 1")
        if self.samples is None:
            return self
        if self.name != "mnist1d":
            raise problem("samples", f"only mnist1d can generate samples, not {self.name}")
        if self.samples < MNIST1D_MIN_SAMPLES:
            raise problem("samples", f"must be at least {MNIST1D_MIN_SAMPLES}")
        too_big = memory_problem(self.samples * MNIST1D_SAMPLE_BYTES, f"{self.samples} mnist1d samples")
        if too_big:
            raise problem("samples", too_big)
        return self


class ModelConfig(Section):
    """The ``model`` section, handed to the builder called ``name`` (clutune.models.MODELS) as :meth:`spec`."""

    name: str = "mlp"
    hidden: list[LayerWidth] = setting(  # mlp
        factory=lambda: [128], says=f"a layer width must be in 1..{MAX_DIM}, got {{value}}"
    )
    width: Int = setting(32, ge=1, le=MAX_DIM, says=f"must be in 1..{MAX_DIM}, got {{value}}")  # cnn
    # a plugin model's own keys; torchvision: arch
    options: dict[str, Any] = setting(factory=dict, identity=Identity.WHEN_SET)

    @model_validator(mode="after")
    def _fits(self) -> ModelConfig:
        widest = max([0, *(a * b for a, b in zip(self.hidden, self.hidden[1:], strict=False))])
        too_big = memory_problem(widest * 4 * 4, "the widest pair of hidden layers (weights, grads, momentum)")
        if too_big:
            raise problem("hidden", too_big)
        return self

    def spec(self) -> dict[str, Any]:
        """The section as a plain dict (what a builder receives and an oracle key hashes): its identity, so the
        keys of configs written before ``options`` existed stay the same."""
        return identity(self)


class ComputeConfig(Section):
    """How models compute, never what (docs/gpu.md, Compute settings): speed knobs for CUDA, each off or without
    effect on the CPU, and ``flush_denormal`` for the CPU.

    They apply to method training, oracle training and evaluation alike. Only a non-default precision enters the
    identity (bf16 changes results on CUDA); the others change speed, not results.
    """

    # fp32 or bf16 (autocast on CUDA; on the CPU a one-time warning and fp32)
    precision: str = setting("fp32", identity=Identity.WHEN_SET)
    # channels-last weights and image batches for convolutional models (CUDA only)
    channels_last: bool = setting(False, identity=Identity.EXCLUDED)
    # torch.compile the model; compile time is reported apart (row column compile_seconds)
    compile: bool = setting(False, identity=Identity.EXCLUDED)
    # rows per forward pass when scoring every train and test sample
    eval_batch_size: Int = setting(1024, ge=1, le=1 << 24, says=f"must be in 1..{1 << 24}", identity=Identity.EXCLUDED)
    # CPU: subnormal floats (|x| < 1.2e-38) computed as zero, at full speed
    flush_denormal: bool = setting(True, identity=Identity.EXCLUDED)

    @model_validator(mode="after")
    def _known_precision(self) -> ComputeConfig:
        if self.precision not in ("fp32", "bf16"):
            raise problem("precision", f"expected fp32 or bf16, got {self.precision!r}")
        return self


class OracleConfig(Section):
    """The retrain recipe that defines the right answer; independent of every method's settings."""

    epochs: Int = setting(60, **COUNT)
    # The recipe defines the right answer: a NaN or negative rate would train an all-NaN oracle and cache it.
    lr: Float = setting(0.05, gt=0, le=1e3, says="must be a finite number in (0, 1000], got {value!r}")
    momentum: Float = setting(0.9, ge=0, lt=1, says="must be a finite number in [0, 1), got {value!r}")
    weight_decay: Float = setting(5e-4, ge=0, le=1e3, says="must be a finite number in [0, 1000], got {value!r}")
    batch_size: Int = setting(64, **COUNT)
    schedule: str = "cosine"
    augment: bool = False
    seed: Int = setting(0, **SEED)
    cache_dir: str = setting("~/.cache/clutune/oracles", identity=Identity.EXCLUDED)
    # Which requests get an exact oracle (see clutune.core.oracle.oracle_requests); the others get NaN oracle metrics.
    policy: str = "every"
    every: Int = setting(1, **COUNT)  # the period of policy every_k
    # cache each oracle's weights too, not only its outputs
    keep_weights: bool = setting(False, identity=Identity.EXCLUDED)
    # oracles per scored request, seeds seed .. seed+ensemble-1 (clutune.core.members); member 0 is the oracle of
    # ensemble 1, so configs written before ensembles keep their hash while it is 1
    ensemble: Int = setting(1, identity=Identity.WHEN_SET, **COUNT)
    # the most oracles trained together in one packed step (clutune.core.packed_oracles): speed, never a result
    pack: Int = setting(16, identity=Identity.EXCLUDED, **COUNT)

    POLICIES: ClassVar[tuple[str, ...]] = ("every", "every_k", "unlearn", "final")

    @model_validator(mode="after")
    def _known_names(self) -> OracleConfig:
        if self.schedule not in ("cosine", "constant"):
            raise problem("schedule", f"expected cosine or constant, got {self.schedule!r}")
        if not self.cache_dir.strip():
            raise problem("cache_dir", "must name a folder")
        if self.policy not in self.POLICIES:
            raise problem("policy", f"expected one of {', '.join(self.POLICIES)}, got {self.policy!r}")
        last = self.seed + self.ensemble - 1
        if last > MAX_SEED:
            raise problem(
                "seed + oracle.ensemble - 1 (the last member's seed)", f"a seed must be in 0..{MAX_SEED}, got {last}"
            )
        return self


class KlomConfig(Section):
    """How KLoM is estimated from the models at hand (clutune.core.klom explains both estimators)."""

    estimator: str = "auto"  # binned (EasyDUB's), normal (a normal fit per sample) or auto (binned from 64 a side)

    ESTIMATORS: ClassVar[tuple[str, ...]] = ("binned", "normal", "auto")

    @model_validator(mode="after")
    def _known(self) -> KlomConfig:
        if self.estimator not in self.ESTIMATORS:
            raise problem("estimator", f"expected one of {', '.join(self.ESTIMATORS)}, got {self.estimator!r}")
        return self


# --- attacks on forgetting: U-LiRA and the competition's ε score (docs/attacks.md) ---
class UliraConfig(Section):
    """Per-example U-LiRA at scored unlearn requests (clutune.core.ulira); off while ``shadows`` is 0."""

    # shadow models per attacked request, each trained on a random half of its pool (even; 0: off)
    shadows: Int = setting(0, ge=0, le=4096, says="must be in 0..4096 (0: off), got {value}")
    every: Int = setting(1, **COUNT)  # attack every every-th unlearn request the oracle policy scores
    seed: Int = setting(0, **SEED)  # draws the shadows' halves

    @model_validator(mode="after")
    def _even(self) -> UliraConfig:
        if self.shadows and (self.shadows < 2 or self.shadows % 2):
            raise problem("shadows", f"must be even and at least 2, so each sample is in for half (got {self.shadows})")
        return self


class EpsilonConfig(Section):
    """The NeurIPS 2023 competition's ε score of a grid's method seeds against the oracle members, beside the
    score of exact retrains at the same counts (clutune.core.epsilon)."""

    enabled: bool = False
    bootstrap: Int = setting(1000, ge=10, le=1 << 20, says="must be in 10..1048576, got {value}")  # resamples


# --- end of the attacks' block ---


# The attacks on a run's forgetting (clutune.core.relearn, clutune.core.relapse): off by default, each adds
# columns to the run's rows and changes none of the others.
class RelearnConfig(Section):
    """The relearning attack after each unlearn request (clutune.core.relearn): a copy of the model, and one of
    the request's oracle, fine-tuned on the same batches of retained data."""

    steps: Int = setting(0, ge=0, le=MAX_COUNT, says=f"must be in 0..{MAX_COUNT} (0: no attack), got {{value}}")
    lr: Float = setting(0.01, gt=0, le=1e3, says="must be a finite number in (0, 1000], got {value!r}")
    batch_size: Int = setting(64, **COUNT)
    # draws the attack's batches with the request index, so every method, seed and the oracle see the same ones
    seed: Int = setting(0, **SEED)


class RelapseConfig(Section):
    """Relapse (clutune.core.relapse): every earlier unlearned set scored again at each later request."""

    enabled: bool = False


class EvaluationConfig(Section):
    """Evaluation beyond the per-request metrics. KLoM and the ε score span several runs and are computed in the
    parent after a grid; U-LiRA, the relearning attack and relapse add columns to each run's rows, and change none
    of the others."""

    klom: KlomConfig = setting(factory=KlomConfig)
    ulira: UliraConfig = setting(factory=UliraConfig)
    epsilon: EpsilonConfig = setting(factory=EpsilonConfig)
    relearn: RelearnConfig = setting(factory=RelearnConfig)
    relapse: RelapseConfig = setting(factory=RelapseConfig)


class GenerateConfig(Section):
    """A generated request stream (clutune.core.scenario_generator); the same settings always give the same stream."""

    n_requests: Int = setting(100, ge=1, says="must be at least 1")  # the stream length, exactly
    learn_chunk: Int = setting(32, ge=1, says="must be at least 1")  # new samples per learn request
    # Request 0 learns this many never-seen samples across every class (a base set, as a deployed model starts
    # from); 0: request 0 is an ordinary learn of learn_chunk.
    first_learn: Int = setting(0, ge=0, says="must be >= 0 (0: an ordinary first learn)")
    learn_classes: str = "task"  # task: a chunk from one task's classes, tasks in round-robin; all: any class
    # share of unlearn requests (the first request is always a learn)
    unlearn_ratio: Float = setting(0.3, ge=0, lt=1, says="must be in [0, 1), got {value}")
    # Relative weights of the unlearn kinds: task (what is still owned of one task), class (one class across
    # tasks), random (random_fraction of the owned samples, across tasks).
    unlearn_mix: dict[str, Any] = setting(factory=lambda: {"task": 1.0, "class": 1.0, "random": 1.0})
    random_fraction: Float = setting(0.1, gt=0, le=1, says="must be in (0, 1], got {value}")
    relearn: bool = True  # new samples of an unlearned class may arrive later (never the unlearned ids)
    seed: Int = setting(0, **SEED)

    UNLEARN_KINDS: ClassVar[tuple[str, ...]] = ("task", "class", "random")
    LEARN_CLASSES: ClassVar[tuple[str, ...]] = ("task", "all")

    @model_validator(mode="after")
    def _stream(self) -> GenerateConfig:
        estimate = self.n_requests * (REQUEST_OVERHEAD_BYTES + 8 * self.learn_chunk) + 8 * self.first_learn
        too_big = memory_problem(estimate, f"a stream of {self.n_requests} generated requests")
        if too_big:
            raise problem("n_requests", too_big)
        if self.learn_classes not in self.LEARN_CLASSES:
            raise problem("learn_classes", f"expected task or all, got {self.learn_classes!r}")
        mix = self.unlearn_mix
        for kind, weight in mix.items():
            if kind not in self.UNLEARN_KINDS:
                raise problem("unlearn_mix", f"unknown kind {kind!r}; known: {', '.join(self.UNLEARN_KINDS)}")
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
                raise problem(f"unlearn_mix.{kind}", f"expected a weight >= 0, got {weight!r}")
        if self.unlearn_ratio > 0 and not any(w > 0 for w in mix.values()):
            raise problem("unlearn_mix", "give at least one kind a weight > 0")
        return self


class ScenarioConfig(Section):
    """Tasks are groups of classes; requests learn or unlearn over them (docs/configuration.md, Requests)."""

    classes_per_task: Int = setting(2, ge=1, le=MAX_DIM, says=f"must be in 1..{MAX_DIM}")
    tasks: list[list[Int]] | None = None  # explicit class groups; overrides classes_per_task
    # draws the random-sample unlearn sets, so every method and seed sees the same requests
    seed: Int = setting(0, **SEED)
    requests: list[dict[str, Any]] = setting(factory=list)
    generate: GenerateConfig | None = None  # a generated stream instead of requests (docs/configuration.md)

    @model_validator(mode="after")
    def _requests(self) -> ScenarioConfig:
        from clutune.core.scenarios import check_request_specs

        if self.generate is not None and self.requests:
            raise problem(
                "requests",
                "must be empty when scenario.generate is set (the generator writes the request list); "
                "remove one of the two",
            )
        for t, classes in enumerate(self.tasks or []):
            if not classes or any(not 0 <= c < MAX_DIM for c in classes):
                raise problem(f"tasks[{t}]", f"a non-empty list of class indices 0..{MAX_DIM - 1}")
        check_request_specs(self.requests)
        return self


class Resources(Section):
    cpu: Float = 1.0
    gpu: Float = 0.0  # fractions pack several trials on one GPU

    @model_validator(mode="after")
    def _some(self) -> Resources:
        if self.cpu < 0 or self.gpu < 0 or self.cpu + self.gpu == 0:
            raise problem("", "cpu and gpu must be >= 0 and not both 0")
        return self


class PBTConfig(Section):
    """``sweep.scheduler: pbt``: every ``interval`` requests the worst ``quantile`` of the population copies the
    complete state and hyperparameters of a trial in the best ``quantile``, then perturbs them (multiplies by a
    factor, or resamples from the space with ``resample_probability``), clipped into the search space."""

    # requests between decisions; the score is the objective's mean over the window
    interval: Int = setting(10, ge=1, says="must be at least 1")
    quantile: Float = setting(0.25, gt=0, le=0.5, says="must be in (0, 0.5]")
    resample_probability: Float = setting(0.25, ge=0, le=1, says="must be in [0, 1]")
    perturbation_factors: list[Float] = setting(factory=lambda: [1.2, 0.8])

    @model_validator(mode="after")
    def _two_factors(self) -> PBTConfig:
        if len(self.perturbation_factors) != 2 or any(not f > 0 for f in self.perturbation_factors):
            raise problem("perturbation_factors", "give two factors > 0")
        return self


PICK_RULES = ("knee", "first", "weights")
STARTS = ("defaults", "sampler")


class SweepConfig(Section):
    """How ``clutune sweep`` searches; the search space itself ships as clutune/search_spaces/<method>.yaml."""

    # Request-mean metrics to minimise; two or more make a multi-objective study with a Pareto front.
    objectives: list[str] = setting(factory=lambda: ["kl_oracle_all"])
    sampler: str = "gp"  # gp, tpe or random (docs/search.md); gp, as the sampler study measured
    sampler_seed: Int = setting(0, **SEED)
    asha: bool = True  # prune at request boundaries on the first objective
    grace_period: Int = 3  # requests before a trial can be pruned
    reduction_factor: Int = 2
    trial_resources: Resources = setting(factory=Resources)
    oracle_resources: Resources = setting(factory=Resources)
    # Ray Tune experiment folders: a URI workers can reach, or a local path, relative to the folder the command
    # runs in (like --out and ./mlflow.db), made absolute before any worker starts.
    storage_path: str = "runs/sweeps"
    study_storage: str | None = None  # Optuna storage: None = a journal file in the sweep folder; or an RDB URL
    experiment: str | None = None  # MLflow experiment name; default: the config's name
    # Every trial runs its configuration on each of these run seeds and reports the mean over them.
    seeds: list[Int] = setting(factory=lambda: [0])
    robust: Float = 0.0  # kappa: each objective is mean + kappa x std over seeds (sample std)
    # After the search, the best trial (one objective) or every Pareto trial is re-run on these fresh seeds.
    confirm_seeds: list[Int] = setting(factory=list)
    # A confirmed objective worse than the tuned one by more than this share of it is flagged.
    confirm_tolerance: Float = 0.25
    confirm_front: bool = False  # with several objectives: confirm every Pareto trial, not only the picked one
    # The confirmation also runs a neighbour of each confirmed trial (every value moved this share of its range,
    # in the space's own scale, toward the inside of the space), so a pick at the edge of divergence shows;
    # 0 runs none.
    stability_step: Float = setting(0.05, ge=0, lt=0.5, says="must be in [0, 0.5)")
    # How the picked trial is taken from a multi-objective front (docs/search.md, "The pick"): knee (the smallest
    # sum over objectives of the value over the front's best), first (the best on the first objective among the
    # members within pick_tolerance of the front's best on every other objective), or weights (the knee's sum
    # weighted by pick_weights).
    pick: str = "knee"
    # The first trial: the method's defaults (tuned where a file ships them), so a sweep starts from the known-good
    # point; or sampler, every trial drawn by the sampler, for a study of the samplers themselves (a first trial at
    # already-tuned defaults can leave no room to improve, and every sampler then scores the same).
    start: str = "defaults"
    # first: relative slack allowed on the other objectives; null: any
    pick_tolerance: Float | None = setting(None, ge=0, says="must be >= 0 (null: no limit)")
    pick_weights: list[Float] | None = None  # weights: one per objective
    # A trial checkpoints after a request once checkpoint_seconds of its time have passed since its last
    # checkpoint, or checkpoint_every requests (when set), and always after the last. A resume repeats what came
    # after the last checkpoint, exactly; each checkpoint costs a save, an upload and a Tune snapshot.
    checkpoint_every: Int | None = setting(None, ge=1, says="must be at least 1 (or null: by time only)")
    checkpoint_seconds: Float = setting(30.0, ge=0, says="must be >= 0")
    # Restarts of a trial whose worker or node died, each from its last checkpoint (Tune's FailureConfig).
    max_failures: Int = setting(3, ge=0, says="must be >= 0")
    # A finished trial's worker runs the next trial (its data already loaded); false gives every trial a fresh
    # worker wherever resources free first, which spreads a sweep's trials over a cluster's nodes.
    reuse_actors: bool = True
    # The closing line of a sweep calls it converged when its last quarter of trials improved the best value (one
    # objective) or the dominated hypervolume (several) by no more than this share of the value before them.
    converged_tolerance: Float = setting(0.01, ge=0, says="must be >= 0")
    # Hypervolume reference point, one value per objective; null: 10% beyond the worst complete trial.
    reference_point: list[Float] | None = None
    # Stop a sweep once converged (checked after each complete trial from min_trials on); --trials is the cap.
    stop_converged: bool = False
    min_trials: Int = setting(20, ge=2, says="must be at least 2")
    scheduler: str = "asha"  # asha (on when sweep.asha) or pbt: population-based training over the stream
    pbt: PBTConfig = setting(factory=PBTConfig)

    @model_validator(mode="after")
    def _consistent(self) -> SweepConfig:
        from clutune.core import storage

        storage.check_location(self.storage_path, "config key 'sweep.storage_path'")
        if self.experiment is not None and not self.experiment.strip():
            raise problem("experiment", "must not be empty (null: the config's name)")
        for seed in [*self.seeds, *self.confirm_seeds]:
            if not 0 <= seed <= MAX_SEED:
                raise problem("seeds", f"a seed must be in 0..{MAX_SEED}, got {seed}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise problem("seeds", "give at least one seed, each once")
        if set(self.confirm_seeds) & set(self.seeds):
            both = sorted(set(self.confirm_seeds) & set(self.seeds))
            raise problem("confirm_seeds", f"seeds {both} are also tuning seeds")
        if len(set(self.confirm_seeds)) != len(self.confirm_seeds):
            raise problem("confirm_seeds", "a seed is listed twice")
        if self.robust < 0 or self.confirm_tolerance < 0:
            raise problem("", "robust and confirm_tolerance must be >= 0")
        if not self.objectives:
            raise problem("objectives", "give at least one metric")
        if self.sampler not in ("tpe", "gp", "random"):
            raise problem("sampler", f"expected tpe, gp or random, got {self.sampler!r}")
        if self.reference_point is not None and len(self.reference_point) != len(self.objectives):
            raise problem("reference_point", "give one value per objective")
        if self.start not in STARTS:
            raise problem("start", f"expected {', '.join(STARTS)}, got {self.start!r}")
        if self.pick not in PICK_RULES:
            raise problem("pick", f"expected {', '.join(PICK_RULES)}, got {self.pick!r}")
        weights = self.pick_weights
        if self.pick == "weights" and (
            weights is None or len(weights) != len(self.objectives) or min(weights) < 0 or not any(weights)
        ):
            raise problem("pick_weights", "give one weight >= 0 per objective, not all 0")
        if self.scheduler not in ("asha", "pbt"):
            raise problem("scheduler", f"expected asha or pbt, got {self.scheduler!r}")
        if self.scheduler == "pbt" and self.confirm_seeds:
            raise problem(
                "confirm_seeds",
                "a pbt trial follows a schedule of hyperparameters, not one point to confirm; "
                "leave confirm_seeds empty",
            )
        if self.grace_period < 1 or self.reduction_factor < 2:
            raise problem("", "grace_period must be >= 1 and reduction_factor >= 2")
        return self


class Config(Section):
    name: str = "unnamed"
    seed: Int = setting(0, identity=Identity.EXCLUDED, **SEED)
    device: str = "auto"
    # torch intra-op threads for this run; 0 keeps torch's default. Small models run many times faster on one
    # thread than on several that contend for cores with other trials.
    threads: Int = setting(
        1, ge=0, le=4096, says="must be in 0..4096 (0: torch's default), got {value}", identity=Identity.EXCLUDED
    )
    augment: bool = False  # random crop + flip on image batches during method training
    # Stability diagnostics (dead units, weight magnitude, effective rank) after every request run on a fixed
    # probe set of this many samples (owned train plus test, drawn once by scenario.seed); 0 turns them off.
    probe_size: Int = setting(2000, ge=0, le=1 << 24, says=f"must be in 0..{1 << 24} (0: no diagnostics)")
    dataset: DatasetConfig = setting(factory=DatasetConfig)
    model: ModelConfig = setting(factory=ModelConfig)
    compute: ComputeConfig = setting(factory=ComputeConfig, identity=Identity.INLINE)
    oracle: OracleConfig = setting(factory=OracleConfig)
    scenario: ScenarioConfig = setting(factory=ScenarioConfig)
    sweep: SweepConfig = setting(factory=SweepConfig, identity=Identity.EXCLUDED)
    # evaluation beyond the per-request metrics (KLoM, the ε score, U-LiRA, relearning, relapse): never in the
    # hash, as it changes none of the metrics the hash stands for
    evaluation: EvaluationConfig = setting(factory=EvaluationConfig, identity=Identity.EXCLUDED)
    # methods.<name>.<hyperparameter>, checked against each method's own Hparams (clutune.core.hparams)
    methods: dict[str, Any] = setting(factory=dict, identity=Identity.EXCLUDED)

    @model_validator(mode="after")
    def _top_level(self) -> Config:
        check_name(self.name, "config key 'name'")
        check_device(self.device)
        for key, section in self.methods.items():
            if not isinstance(section, dict):
                raise problem(f"methods.{key}", "expected a mapping of hyperparameters")
        return self

    def hash(self) -> str:
        """Identity of everything that can change a result except the method and run seed: the fields each
        section declares part of it (clutune.core.identity)."""
        payload = identity(self)
        if HASH_VERSION > 1:
            payload["identity_version"] = HASH_VERSION
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
    structural = [(p, v) for p, v in override_pairs(overrides) if p[0] in Config.model_fields or len(p) > 1]
    return Config.build(apply_overrides(raw, structural))


def bare_overrides(overrides: Overrides) -> dict[str, Any]:
    """The overrides whose name is not a config section: method hyperparameters."""
    return {p[0]: v for p, v in override_pairs(overrides) if len(p) == 1 and p[0] not in Config.model_fields}


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
