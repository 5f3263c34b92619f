"""One method through one scenario: build everything from a config, run it, score each request.

This is the glue between the pure-PyTorch library (:mod:`clutune.clu`) and the rest: datasets, oracles,
metrics and result rows. The CLI, ``clutune compare`` and the Tune trainable all go through
:func:`prepare` and :func:`run_experiment`.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clutune.clu.access import TrainAccess, crop_flip
from clutune.clu.compute import (
    autocast,
    compile_seconds,
    effective_precision,
    flush_denormals,
    input_layout,
    prepare_model,
)
from clutune.clu.diagnostics import owned_probe_ids, plasticity_diagnostics, probe_ids
from clutune.clu.methods import get_method
from clutune.clu.methods.base import BaseHparams, Method
from clutune.clu.runner import Diverged, iter_run
from clutune.clu.training import predict_logits
from clutune.core.config import Config, best_defaults, load_config, tuned_defaults_path
from clutune.core.ensemble_metrics import ensemble_metrics, no_ensemble_metrics
from clutune.core.forgetting import StreamForgetting
from clutune.core.hparams import build_hparams
from clutune.core.margins import correct_class_margin, member_margins_path, run_margins_path, write_margins
from clutune.core.members import get_members
from clutune.core.metrics import SPLITS, Split, request_metrics, softmax64, test_accuracy_by_classes
from clutune.core.oracle import OracleCache, OracleOutputs, OracleRecipe, get_oracle, oracle_requests
from clutune.core.placement import placement
from clutune.core.predictions import write_predictions
from clutune.core.relapse import relapse_columns
from clutune.core.relearn import (
    attack_batches,
    attack_cost,
    keeps_oracle_weights,
    no_relearn_columns,
    oracle_model,
    relearn_columns,
)
from clutune.core.scenario_generator import scenario_requests
from clutune.core.scenarios import Request, Scenario, build_scenario
from clutune.core.shadows import (
    ShadowSet,
    attacked_requests,
    get_shadows,
    pool_dataset,
    pool_ids,
    shadow_cost,
    shadow_specs,
    write_attack_scores,
)
from clutune.core.ulira import attack_columns, auc, confidence, likelihood_ratios, no_columns
from clutune.data import Dataset, read_dataset
from clutune.errors import UserError
from clutune.models import build_model
from clutune.models.fit import check_model_fits


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available on this machine")
    return torch.device(name)


def method_hparams(config: Config, method: str, dataset: str, bare: dict[str, Any] | None = None) -> Any:
    """Defaults < the oracle recipe (for methods that follow it) < presets/best/<method>-<dataset>.yaml
    < config methods.<method> < --set name=value."""
    cls = get_method(method)
    recipe = {k: getattr(config.oracle, k) for k in cls.follows_oracle}
    raw = {**recipe, **best_defaults(method, dataset), **config.methods.get(method, {}), **(bare or {})}
    return build_hparams(cls.Hparams, raw, prefix=f"methods.{method}")


def hparams_source(method: str, dataset: str) -> str:
    """Where a run's defaults came from, recorded beside its hyperparameters: a tuned-defaults file, the oracle
    recipe (a method whose every hyperparameter follows it, as ``retrain``), or the method's class defaults (no
    file for this dataset). Config and --set values override any of them."""
    path = tuned_defaults_path(method, dataset)
    if path is not None:
        return f"tuned defaults {path.name}"
    cls = get_method(method)
    shared = {f.name for f in dataclasses.fields(BaseHparams)}
    own = {f.name for f in dataclasses.fields(cls.Hparams)} - shared - set(cls.follows_oracle)
    return "the oracle recipe" if cls.follows_oracle and not own else "class defaults"


def no_tuned_defaults_notice(method: str, dataset: str) -> str | None:
    """The one line a command prints at its start for a method that runs on its class defaults."""
    if hparams_source(method, dataset) != "class defaults":
        return None
    return f"{method}: no tuned defaults for dataset {dataset}; using the class defaults; `clutune sweep` tunes them"


def hparam_columns(hparams: Any) -> dict[str, Any]:
    """A run's effective hyperparameters as ``hp_<name>`` columns: numbers as floats and flags as booleans (so
    one column holds every method's value), anything else as its JSON text."""
    out: dict[str, Any] = {}
    for k, v in dataclasses.asdict(hparams).items():
        if isinstance(v, bool):
            out[f"hp_{k}"] = v
        elif isinstance(v, (int, float)):
            out[f"hp_{k}"] = float(v)
        else:
            out[f"hp_{k}"] = json.dumps(v)
    return out


def validate_methods_section(config: Config) -> None:
    for name in config.methods:
        method_hparams(config, name, config.dataset.name)


@dataclass
class Prepared:
    """Everything a run needs, built and validated before any training starts."""

    config: Config
    dataset: Dataset
    scenario: Scenario
    recipe: OracleRecipe
    cache: OracleCache
    device: torch.device

    def owned_ids(self, k: int) -> torch.Tensor:
        return self.scenario.owned(k).nonzero().flatten()

    @functools.cached_property
    def oracle_at(self) -> list[bool]:
        """Whether each request gets an exact oracle (``oracle.policy``): asked at every request, computed once."""
        cfg = self.config.oracle
        return oracle_requests(cfg.policy, cfg.every, [r.kind for r in self.scenario.requests])

    @functools.cached_property
    def ulira_at(self) -> list[bool]:
        """Whether U-LiRA attacks the model after each request (``evaluation.ulira``)."""
        ulira = self.config.evaluation.ulira
        if not ulira.shadows:
            return [False] * len(self.scenario.requests)
        return attacked_requests([r.kind for r in self.scenario.requests], self.oracle_at, ulira.every)


def prepare(config: Config, dataset: Dataset | None = None) -> Prepared:
    device = resolve_device(config.device)
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    dataset = dataset or read_dataset(config.dataset)
    check_model_fits(config.model.spec(), dataset.input_shape, dataset.num_classes)
    scenario = build_scenario(
        scenario_requests(config.scenario, dataset.y_train, dataset.num_classes),
        dataset.y_train,
        dataset.num_classes,
        classes_per_task=config.scenario.classes_per_task,
        tasks=config.scenario.tasks,
        seed=config.scenario.seed,
    )
    effective_precision(config.compute.precision, device)  # warns now, before any work, if bf16 cannot apply
    recipe = OracleRecipe.from_config(config.oracle, config.model.spec(), config.compute)
    return Prepared(config, dataset.to(device), scenario, recipe, OracleCache(config.oracle.cache_dir), device)


def prepare_in_worker(config: dict[str, Any]) -> Prepared:
    """``prepare`` once per worker process and config. Ray reuses a worker for the next trial (Tune's
    ``reuse_actors``) or the next oracle task of the same command, and loading the data and building the
    scenario again would cost each of them. The result is shared: callers must not change it."""
    return _prepare_json(json.dumps(config, sort_keys=True))


@functools.lru_cache(maxsize=1)  # one entry: a worker serves one command at a time, and a dataset can be large
def _prepare_json(config_json: str) -> Prepared:
    return prepare(load_config(json.loads(config_json)))


def oracle_for(prep: Prepared, k: int) -> OracleOutputs | None:
    """None where ``oracle.policy`` gives request k no oracle (its oracle metrics are then NaN)."""
    cfg = prep.config.oracle
    if not prep.oracle_at[k]:
        return None
    weights = keeps_oracle_weights(prep.config)
    return get_oracle(prep.dataset, prep.owned_ids(k), prep.recipe, cfg.seed, prep.cache, weights)


def members_for(prep: Prepared, k: int) -> list[OracleOutputs]:
    """The oracle members 1..M-1 of request k (``oracle.ensemble``); empty for M = 1 or without an oracle."""
    cfg = prep.config.oracle
    if cfg.ensemble == 1 or not prep.oracle_at[k]:
        return []
    ids = prep.owned_ids(k)
    return get_members(prep.dataset, ids, prep.recipe, cfg.seed, cfg.ensemble, prep.cache, cfg.keep_weights, cfg.pack)


def no_members(k: int) -> list[OracleOutputs]:
    return []


def shadows_for(prep: Prepared, k: int) -> ShadowSet:
    """Request k's U-LiRA shadows, from the cache or trained here (:mod:`clutune.core.shadows`)."""
    ulira, oracle = prep.config.evaluation.ulira, prep.config.oracle
    return get_shadows(
        prep.dataset, prep.scenario, k, prep.recipe, prep.cache, ulira.shadows, ulira.seed, oracle.seed, oracle.pack
    )


def attack_cost_line(prep: Prepared, runs: int = 1) -> str | None:
    """The cost of the attacks a config asks for (``runs`` runs of it), known before any work: one line, for the
    first a command prints; None when it asks for none."""
    parts = [_shadow_cost(prep), attack_cost(prep.config, [r.kind for r in prep.scenario.requests], prep.oracle_at)]
    if parts[1] is not None and runs > 1:
        parts[1] += f", {runs} runs"
    return "; ".join(p for p in parts if p is not None) or None


def _shadow_cost(prep: Prepared) -> str | None:
    """U-LiRA's shadow models: how many, how many are cached, and the samples training the rest would process."""
    ulira, oracle, ds = prep.config.evaluation.ulira, prep.config.oracle, prep.dataset
    attacked = [k for k, on in enumerate(prep.ulira_at) if on]
    if not ulira.shadows:
        return None
    pooled = pool_dataset(ds)
    pools = [pool_ids(prep.scenario, k, ds.n_train, ds.n_test) for k in attacked]
    cached = sum(
        prep.cache.has(spec.key)
        for pool in pools
        for spec in shadow_specs(pooled, pool, prep.recipe, ulira.shadows, ulira.seed, oracle.seed)[1]
    )
    models, samples = shadow_cost([len(p) for p in pools], ulira.shadows, oracle.epochs)
    return (
        f"U-LiRA: {ulira.shadows} shadow models of the oracle recipe at each of {len(attacked)} attacked unlearn "
        f"request(s): {models} models ({cached} cached), about {samples:,} samples processed if none were"
    )


@dataclass
class Evaluator:
    """Scores a model after request k against oracle k (and, with ``oracle.ensemble`` ≥ 2, against all its
    members); keeps what forgetting needs of the stream so far."""

    prep: Prepared
    oracle: Callable[[int], OracleOutputs | None]  # None: the oracle policy gives this request no oracle
    predictions_dir: Path | None = None
    members: Callable[[int], list[OracleOutputs]] = no_members  # members 1..M-1 of request k
    margins_out: str | None = None  # the results folder whose margins/ receives the margins (clutune.core.margins)
    run_id: str = ""
    probe: tuple[torch.Tensor, torch.Tensor] | None = None  # (train ids, test ids), drawn once per stream
    door: TrainAccess | None = None  # the method's data door, forked by the relearning attack
    shadows: Callable[[int], ShadowSet] | None = None  # request k's U-LiRA shadows (default: shadows_for)
    forgetting: StreamForgetting = field(init=False)

    def __post_init__(self) -> None:
        cfg, ds = self.prep.config, self.prep.dataset
        self.forgetting = StreamForgetting(self.prep.scenario.task_classes, ds.y_test.cpu().numpy(), ds.num_classes)
        if cfg.probe_size > 0:
            self.probe = probe_ids(ds.n_train, ds.n_test, cfg.probe_size, cfg.scenario.seed)

    def diagnostics(self, k: int, model: torch.nn.Module) -> dict[str, float]:
        """Plasticity diagnostics on the probe set's owned training samples plus its test samples."""
        if self.probe is None:
            return {}
        ds = self.prep.dataset
        train = owned_probe_ids(self.probe[0], self.prep.scenario.owned(k).nonzero().flatten())
        dev = ds.x_train.device
        x = torch.cat([ds.inputs(ds.x_train[train.to(dev)]), ds.inputs(ds.x_test[self.probe[1].to(dev)])])
        return plasticity_diagnostics(model, x)

    def splits(
        self, request: Request, model_logits: tuple[torch.Tensor, torch.Tensor], oracle: OracleOutputs | None
    ) -> dict[str, Split]:
        """Without an oracle its outputs are NaN: nothing can be scored against a model that was not trained."""
        sc, ds, k = self.prep.scenario, self.prep.dataset, request.index
        learn = torch.zeros(ds.n_train, dtype=torch.bool)
        if request.kind == "learn":
            learn[request.ids] = True
        masks = {"remain": sc.owned(k) & ~learn, "learn": learn, "unlearn": sc.unlearned(k)}
        y_train, y_test = ds.y_train.cpu().numpy(), ds.y_test.cpu().numpy()
        pm_train, pm_test = softmax64(model_logits[0].numpy()), softmax64(model_logits[1].numpy())
        if oracle is None:
            po_train, po_test = np.full_like(pm_train, np.nan), np.full_like(pm_test, np.nan)
        else:
            po_train, po_test = softmax64(oracle.logits_train.numpy()), softmax64(oracle.logits_test.numpy())
        out = {}
        for name, mask in masks.items():
            idx = mask.nonzero().flatten().numpy()
            out[name] = Split(idx, y_train[idx], pm_train[idx], po_train[idx])
        out["test"] = Split(np.arange(ds.n_test), y_test, pm_test, po_test)
        return out

    def logits(self, model: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's logits on every train and test sample, in the run's precision and evaluation batch size."""
        ds, compute, device = self.prep.dataset, self.prep.config.compute, self.prep.device
        to_inputs = input_layout(ds.inputs, device, compute.channels_last)
        with autocast(compute.precision, device):
            return tuple(predict_logits(model, x, to_inputs, compute.eval_batch_size) for x in (ds.x_train, ds.x_test))

    def __call__(self, request: Request, model: torch.nn.Module) -> dict[str, Any]:
        with flush_denormals(self.prep.config.compute.flush_denormal):
            return self._score(request, model)

    def _score(self, request: Request, model: torch.nn.Module) -> dict[str, Any]:
        ds, sc, k = self.prep.dataset, self.prep.scenario, request.index
        logits = self.logits(model)
        if not (torch.isfinite(logits[0]).all() and torch.isfinite(logits[1]).all()):
            raise Diverged(f"request {k} ({request.kind}): the model's outputs are not finite; lower its step sizes")
        oracle = self.oracle(k)
        splits = self.splits(request, logits, oracle)
        row: dict[str, Any] = {"request": k, "kind": request.kind}
        row.update(request_metrics(splits, request.kind == "learn", with_oracle=oracle is not None))
        if self.prep.config.oracle.ensemble > 1:
            row.update(self.ensemble(k, splits, logits, oracle))
        if self.prep.config.evaluation.ulira.shadows:
            row.update(self.ulira(request, logits, oracle) if self.prep.ulira_at[k] else no_columns())
        row.update(self.class_metrics(request, splits["test"], with_oracle=oracle is not None))
        row.update(self.diagnostics(k, model))
        evaluation = self.prep.config.evaluation
        if evaluation.relearn.steps > 0:
            row.update(self.relearn(request, model, oracle))
        if evaluation.relapse.enabled:
            oracle_train = None if oracle is None else oracle.logits_train
            row.update(relapse_columns(sc.requests, k, logits[0], oracle_train, ds.y_train.cpu().numpy()))
        row.update(
            n_learn=len(splits["learn"]),
            n_unlearn=len(request.ids) if request.kind == "unlearn" else 0,
            n_owned=int(sc.owned(k).sum()),
            n_unlearned_total=len(splits["unlearn"]),
            oracle_evaluated=oracle is not None,
            oracle_seconds=oracle.seconds if oracle else math.nan,
            oracle_samples_processed=oracle.samples_processed if oracle else 0,
            oracle_cached=oracle.cached if oracle else False,
            oracle_key=oracle.key if oracle else "",
            oracle_node_id=oracle.node_id if oracle else "",
            oracle_hostname=oracle.hostname if oracle else "",
        )
        if self.predictions_dir is not None:
            task_of = sc.sample_task.numpy()
            test_task = sc.class_task(ds.num_classes).numpy()
            write_predictions(self.predictions_dir / f"request-{k}.parquet", splits, task_of, test_task)
        return row

    def relearn(self, request: Request, model: torch.nn.Module, oracle: OracleOutputs | None) -> dict[str, float]:
        """The relearning attack's columns (:mod:`clutune.core.relearn`) after an unlearn request; NaN after a
        learn request."""
        if request.kind != "unlearn" or self.door is None:
            return no_relearn_columns()
        prep, k = self.prep, request.index
        cfg, ds = prep.config, prep.dataset
        retained = prep.owned_ids(k)
        batches = attack_batches(self.door.fork(), retained, cfg.evaluation.relearn, k)
        oracle_net = (
            None if oracle is None else oracle_model(ds, retained, prep.recipe, cfg.oracle.seed, prep.cache, oracle.key)
        )
        to_inputs = input_layout(ds.inputs, prep.device, cfg.compute.channels_last)
        compute = cfg.compute
        return relearn_columns(
            model,
            oracle_net,
            batches,
            request.ids,
            ds,
            to_inputs,
            cfg.evaluation.relearn,
            compute.precision,
            compute.eval_batch_size,
        )

    def ensemble(
        self, k: int, splits: dict[str, Split], logits: tuple[torch.Tensor, torch.Tensor], oracle: OracleOutputs | None
    ) -> dict[str, float]:
        """The columns against the members (:mod:`clutune.core.ensemble_metrics`), and the margins of the model and
        of each member written for statistics across runs (:mod:`clutune.core.margins`)."""
        if oracle is None:
            return no_ensemble_metrics()
        members = [oracle, *self.members(k)]
        ids = {name: splits[name].ids for name in SPLITS}
        labels = {name: splits[name].labels for name in SPLITS}

        def per_split(train: torch.Tensor, test: torch.Tensor) -> dict[str, np.ndarray]:
            return {name: (test if name == "test" else train)[torch.from_numpy(ids[name])].numpy() for name in SPLITS}

        model = per_split(*logits)
        member_logits = [per_split(m.logits_train, m.logits_test) for m in members]
        p_model = np.concatenate([splits[name].p_model for name in SPLITS])
        p_members = np.stack([softmax64(np.concatenate([m[name] for name in SPLITS])) for m in member_logits])
        if self.margins_out is not None:
            stacked = {name: np.stack([m[name] for m in member_logits]) for name in SPLITS}
            margins = {name: correct_class_margin(stacked[name], labels[name]) for name in SPLITS}
            write_margins(member_margins_path(self.margins_out, k), ids, margins)
            own = {name: correct_class_margin(model[name], labels[name]) for name in SPLITS}
            write_margins(run_margins_path(self.margins_out, self.run_id, k), ids, own)
        return ensemble_metrics(p_model, p_members)

    def ulira(
        self, request: Request, logits: tuple[torch.Tensor, torch.Tensor], oracle: OracleOutputs | None
    ) -> dict[str, float]:
        """U-LiRA on the model after an unlearn request (:mod:`clutune.core.ulira`): the forget set and the
        retained set, each against the test set, and the oracle's AUCs under the same attack. The model's
        outputs were computed for evaluation already; nothing here fetches a sample through the method's door."""
        ds, k = self.prep.dataset, request.index
        shadows = (self.shadows or (lambda i: shadows_for(self.prep, i)))(k)
        pool = shadows.pool
        labels = torch.cat([ds.y_train.cpu(), ds.y_test.cpu()])[pool].numpy()
        shadow = np.stack([confidence(o.logits_train[pool].numpy(), labels) for o in shadows.outputs])
        test = pool.numpy() >= ds.n_train
        groups = {}
        for name, ids in (("forget", request.ids), ("retain", self.prep.owned_ids(k))):
            members = np.isin(pool.numpy(), ids.numpy())
            # the non-members of the members' classes only: a class the retrain never saw is unlike the others
            groups[name] = members
            groups[f"{name}_test"] = test & np.isin(labels, labels[members])

        def scores(train: torch.Tensor, test: torch.Tensor) -> dict[str, np.ndarray]:
            lr = likelihood_ratios(confidence(torch.cat([train, test])[pool].numpy(), labels), shadow, shadows.inside)
            return {name: lr[mask] for name, mask in groups.items()}

        own = scores(*logits)
        row = {
            **attack_columns(own["forget"], own["forget_test"]),
            **attack_columns(own["retain"], own["retain_test"], "_retain"),
        }
        if oracle is not None:
            theirs = scores(oracle.logits_train, oracle.logits_test)
            row["oracle_ulira_auc"] = auc(theirs["forget"], theirs["forget_test"])
            row["oracle_ulira_auc_retain"] = auc(theirs["retain"], theirs["retain_test"])
        else:
            row["oracle_ulira_auc"] = row["oracle_ulira_auc_retain"] = math.nan
        if self.margins_out is not None:
            write_attack_scores(self.margins_out, self.run_id, k, own)
        return row

    def class_metrics(self, request: Request, test: Split, with_oracle: bool = True) -> dict[str, float]:
        """acc_test_owned / acc_test_unlearned, and forgetting from the per-class test accuracies."""
        sc, ds, k = self.prep.scenario, self.prep.dataset, request.index
        y_owned = ds.y_train.cpu()[sc.owned(k)]
        y_unl = ds.y_train.cpu()[sc.unlearned(k)]
        owned_classes = sorted(set(torch.unique(y_owned).tolist()))
        gone = sorted(set(torch.unique(y_unl).tolist()) - set(owned_classes))
        hits = test.p_model.argmax(1) == test.labels
        per_class = np.array(
            [hits[test.labels == c].mean() if (test.labels == c).any() else np.nan for c in range(ds.num_classes)]
        )
        learned = list(request.tasks) if request.kind == "learn" else []
        forgot = self.forgetting.step(k, learned, per_class, set(owned_classes))
        return {
            "acc_test_owned": test_accuracy_by_classes(test.p_model, test.labels, owned_classes),
            "oracle_acc_test_owned": (
                test_accuracy_by_classes(test.p_oracle, test.labels, owned_classes) if with_oracle else math.nan
            ),
            "acc_test_unlearned": test_accuracy_by_classes(test.p_model, test.labels, gone),
            "oracle_acc_test_unlearned": (
                test_accuracy_by_classes(test.p_oracle, test.labels, gone) if with_oracle else math.nan
            ),
            "forgetting": forgot,
            **self.task_accuracies(test, with_oracle),
        }

    def task_accuracies(self, test: Split, with_oracle: bool) -> dict[str, float]:
        """``acc_task_<t>`` / ``oracle_acc_task_<t>``: test accuracy on each task's classes, the cells of the
        accuracy matrix (task x request) that no request mean can rebuild."""
        out = {}
        for t, classes in enumerate(self.prep.scenario.task_classes):
            mask = np.isin(test.labels, classes)
            hit, oracle_hit = (p[mask].argmax(1) == test.labels[mask] for p in (test.p_model, test.p_oracle))
            out[f"acc_task_{t}"] = float(hit.mean()) if mask.any() else math.nan
            out[f"oracle_acc_task_{t}"] = float(oracle_hit.mean()) if with_oracle and mask.any() else math.nan
        return out


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float:
    """This process's resident memory now (not its peak, which ``getrusage`` gives), in MiB; NaN where the
    kernel does not expose /proc (it is a diagnostic column, never an input)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return math.nan


def build_method(prep: Prepared, method: str, hparams: Any, seed: int) -> Method:
    cls = get_method(method)
    torch.manual_seed(seed)
    ds = prep.dataset
    compute = prep.config.compute
    model = build_model(prep.config.model.spec(), ds.input_shape, ds.num_classes).to(prep.device)
    prepare_model(model, prep.device, compute.channels_last, compute.compile)
    to_inputs = input_layout(ds.inputs, prep.device, compute.channels_last)
    access = TrainAccess(ds.x_train, ds.y_train, to_inputs, crop_flip if prep.config.augment else None)
    instance = cls(model, hparams, access, seed)
    for request in prep.scenario.requests:
        instance.check_request(request)
    return instance


class ExperimentRun:
    """A method on its way through the stream, with everything a checkpoint must hold to continue it exactly."""

    def __init__(
        self,
        prep: Prepared,
        method: str,
        hparams: Any,
        seed: int,
        run_id: str | None = None,
        oracle: Callable[[int], OracleOutputs] | None = None,
        predictions_dir: Path | None = None,
        members: Callable[[int], list[OracleOutputs]] | None = None,
        margins_out: str | Path | None = None,
    ) -> None:
        """``oracle`` and ``members``: request k's member 0 and members 1..M-1 (default: from the cache, trained
        here when absent). ``margins_out``: the results folder that receives the margins when
        ``oracle.ensemble`` ≥ 2 (:mod:`clutune.core.margins`); None writes none."""
        self.prep = prep
        self.method = build_method(prep, method, hparams, seed)
        self.evaluator = Evaluator(
            prep,
            oracle or (lambda k: oracle_for(prep, k)),
            predictions_dir,
            members or (lambda k: members_for(prep, k)),
            None if margins_out is None else str(margins_out),
            door=self.method.data,
        )
        self.head = {
            "run_id": run_id or uuid.uuid4().hex[:12],
            "method": method,
            "config_hash": prep.config.hash(),
            "seed": seed,
            **hparam_columns(hparams),
            "hp_source": hparams_source(method, prep.config.dataset.name),
        }
        self.done = 0  # requests finished, including those before a restored checkpoint
        self.train_compile = 0.0  # compile seconds inside the last request's training (compute.compile)

    def state(self) -> dict[str, Any]:
        return {
            "method": self.method.state_dict(),
            "forgetting": self.evaluator.forgetting.state(),
            "done": self.done,
            "head": dict(self.head),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.method.load_state_dict(state["method"])
        if "forgetting" in state:
            self.evaluator.forgetting.restore(state["forgetting"])
        else:  # written before forgetting kept fronts: its per-class accuracy history
            self.evaluator.forgetting.restore_history(state["class_acc"], state["learned_at"])
        self.done = int(state["done"])
        self.head = dict(state["head"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])

    def steps(self) -> Iterator[dict[str, Any]]:
        """Continue from request ``self.done``, yielding each row (results schema); the caller keeps the rows it
        needs (a trainable reports each and keeps none, so nothing here grows with the stream).

        With ``compute.compile`` the request's ``seconds`` exclude the compile time spent in its training, and
        ``compile_seconds`` holds the compile time of the request's training and evaluation (0 without compile),
        so request times compare across requests and with eager runs. ``cpu_step_seconds`` is the process CPU
        time of the whole step (training and evaluation) beside its wall ``step_seconds``, as ``cpu_seconds`` is
        the training's (:func:`clutune.clu.runner.iter_run`); the evaluation's is their difference.
        """
        requests = self.prep.scenario.requests
        self.evaluator.run_id = self.head["run_id"]  # a restored run's margins go where its rows say they are
        t0, cpu0, c0 = time.perf_counter(), time.process_time(), self._compile_seconds()
        for row in iter_run(self.method, requests, self.evaluator, start=self.done, train_context=self._training):
            row["seconds"] -= self.train_compile
            # step_seconds (method + evaluation) and rss_mb are what a long stream must keep flat
            ordered = {
                **self.head,
                **placement(),  # measured where it ran: after a restart on another node, that node
                **row,
                "compile_seconds": self._compile_seconds() - c0,
                "step_seconds": time.perf_counter() - t0,
                "cpu_step_seconds": time.process_time() - cpu0,
                "intra_op_threads": torch.get_num_threads(),
                "rss_mb": resident_mb(),
            }
            self.done += 1
            yield ordered
            t0, cpu0, c0 = time.perf_counter(), time.process_time(), self._compile_seconds()

    def _compile_seconds(self) -> float:
        return compile_seconds() if self.prep.config.compute.compile else 0.0

    @contextmanager
    def _training(self) -> Iterator[None]:
        """One request's training: in the run's precision, its compile time kept in ``train_compile``."""
        c0 = self._compile_seconds()
        compute = self.prep.config.compute
        with flush_denormals(compute.flush_denormal), autocast(compute.precision, self.prep.device):
            yield
        self.train_compile = self._compile_seconds() - c0

    def run(self, on_row: Callable[[dict[str, Any], ExperimentRun], None] | None = None) -> list[dict[str, Any]]:
        """The rows of the requests from ``self.done`` on; ``on_row`` sees each as soon as it is scored."""
        rows = []
        for row in self.steps():
            rows.append(row)
            if on_row is not None:
                on_row(row, self)
        return rows


def run_experiment(
    prep: Prepared,
    method: str,
    hparams: Any,
    seed: int,
    on_row: Callable[[dict[str, Any], ExperimentRun], None] | None = None,
    predictions_dir: Path | None = None,
    run_id: str | None = None,
) -> list[dict[str, Any]]:
    return ExperimentRun(prep, method, hparams, seed, run_id, predictions_dir=predictions_dir).run(on_row)


__all__ = [
    "ExperimentRun",
    "Prepared",
    "prepare",
    "prepare_in_worker",
    "run_experiment",
    "hparam_columns",
    "hparams_source",
    "method_hparams",
    "members_for",
    "no_tuned_defaults_notice",
    "oracle_for",
    "resolve_device",
]
