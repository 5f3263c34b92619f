"""The small recipes tests share, so a test names only what it changes: the oracle recipe the cache and oracle
tests train (an MLP on digits with the shipped SGD settings), the one-epoch digits config that the API, fuzzer
and full-disk tests run, and a bench script imported by path (bench/ is not a package) for its rebuild."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from clutune.core.oracle import OracleRecipe

BENCH = Path(__file__).resolve().parents[1] / "bench"


def load_bench(name: str) -> ModuleType:
    """bench/<name>.py as a module, as `make results` imports it."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import their helpers (table.py) as their own run does
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def tiny_recipe(hidden: int = 16, epochs: int = 1) -> OracleRecipe:
    return OracleRecipe(
        model={"name": "mlp", "hidden": [hidden]},
        epochs=epochs,
        lr=0.05,
        momentum=0.9,
        weight_decay=5e-4,
        batch_size=64,
        schedule="cosine",
        augment=False,
    )


def tiny_config(
    name: str,
    *,
    classes_per_task: int = 5,
    requests: list[dict] | None = None,
    methods: tuple[str, ...] = ("finetune",),
) -> dict:
    """A config dict whose run takes about a second: one epoch everywhere, an 8-unit MLP, the oracle of the final
    request only; by default one learn and one class unlearn."""
    return {
        "name": name,
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [8]},
        "oracle": {"epochs": 1, "policy": "final", "batch_size": 128},
        "probe_size": 0,
        "scenario": {
            "classes_per_task": classes_per_task,
            "requests": requests or [{"learn": {"task": 0}}, {"unlearn": {"classes": [0]}}],
        },
        "methods": {m: {"epochs_per_learn": 1, "iters_per_unlearn": 1, "batch_size": 128} for m in methods},
    }
