"""Oracles: models retrained from scratch on exactly the owned ids, cached by content.

An oracle depends only on the data (fingerprint), the owned ids, the architecture, the recipe and the seed;
never on a method. So its key is a hash of those, and a sweep computes each one once. Its training runs
through a :class:`TrainAccess` that blocks every id not owned, so it cannot see unlearned data even by
mistake, and the ids it did fetch are recorded next to its outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from clutune.clu.access import TrainAccess, crop_flip
from clutune.clu.training import predict_logits, sgd_epochs, steps_per_epoch
from clutune.config import OracleConfig
from clutune.data import Dataset
from clutune.models import build_model

FORMAT_VERSION = 1


@dataclass(frozen=True)
class OracleRecipe:
    model: dict[str, Any]
    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    schedule: str
    augment: bool

    @classmethod
    def from_config(cls, oracle: OracleConfig, model: dict[str, Any]) -> OracleRecipe:
        return cls(
            model=dict(model),
            epochs=oracle.epochs,
            lr=oracle.lr,
            momentum=oracle.momentum,
            weight_decay=oracle.weight_decay,
            batch_size=oracle.batch_size,
            schedule=oracle.schedule,
            augment=oracle.augment,
        )


@dataclass
class OracleOutputs:
    key: str
    logits_train: torch.Tensor  # (n_train, C): every training sample, owned or not
    logits_test: torch.Tensor
    trained_ids: torch.Tensor  # sorted ids the oracle's training actually fetched
    seconds: float
    samples_processed: int
    cached: bool = False


def oracle_key(fingerprint: str, owned_ids: torch.Tensor, recipe: OracleRecipe, seed: int) -> str:
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION}|{fingerprint}|{seed}|".encode())
    h.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    h.update(owned_ids.sort().values.to(torch.int64).numpy().tobytes())
    return h.hexdigest()[:24]


def train_oracle(
    dataset: Dataset,
    owned_ids: torch.Tensor,
    recipe: OracleRecipe,
    seed: int,
    key: str | None = None,
) -> tuple[torch.nn.Module, OracleOutputs]:
    """Train from scratch on ``owned_ids``; deterministic for a given seed on a given device.

    The global RNG is forked, so whether an oracle was cached or had to be trained never changes what the
    method being evaluated draws next.
    """
    devices = [dataset.x_train.device] if dataset.x_train.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return _train_oracle(dataset, owned_ids, recipe, seed, key)


def _train_oracle(
    dataset: Dataset, owned_ids: torch.Tensor, recipe: OracleRecipe, seed: int, key: str | None
) -> tuple[torch.nn.Module, OracleOutputs]:
    owned_ids = owned_ids.sort().values.cpu()
    torch.manual_seed(seed)
    model = build_model(recipe.model, dataset.input_shape, dataset.num_classes).to(dataset.x_train.device)
    access = TrainAccess(dataset.x_train, dataset.y_train, dataset.inputs, crop_flip if recipe.augment else None)
    access.blocked[:] = True
    access.blocked[owned_ids] = False
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    total = recipe.epochs * steps_per_epoch(len(owned_ids), recipe.batch_size)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total)) if recipe.schedule == "cosine" else None
    )
    t0 = time.perf_counter()
    if len(owned_ids):
        sgd_epochs(model, access, owned_ids, recipe.epochs, recipe.batch_size, opt, sched, generator)
    if dataset.x_train.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    outputs = OracleOutputs(
        key=key or oracle_key(dataset.fingerprint, owned_ids, recipe, seed),
        logits_train=predict_logits(model, dataset.x_train, dataset.inputs),
        logits_test=predict_logits(model, dataset.x_test, dataset.inputs),
        trained_ids=access.touched.nonzero().flatten(),
        seconds=seconds,
        samples_processed=recipe.epochs * len(owned_ids),
    )
    return model, outputs


class OracleCache:
    """A folder per key: ``weights.pt``, ``outputs.pt``, ``meta.json``; written whole or not at all."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "meta.json").exists()

    def load(self, key: str) -> OracleOutputs | None:
        folder = self.path(key)
        if not (folder / "meta.json").exists():
            return None
        meta = json.loads((folder / "meta.json").read_text())
        blob = torch.load(folder / "outputs.pt", weights_only=True)
        return OracleOutputs(
            key=key,
            logits_train=blob["logits_train"],
            logits_test=blob["logits_test"],
            trained_ids=blob["trained_ids"],
            seconds=meta["seconds"],
            samples_processed=meta["samples_processed"],
            cached=True,
        )

    def load_weights(self, key: str) -> dict[str, torch.Tensor]:
        return torch.load(self.path(key) / "weights.pt", weights_only=True)

    def store(self, model: torch.nn.Module, outputs: OracleOutputs, meta: dict[str, Any]) -> None:
        """Write into a temporary sibling folder, then rename: readers never see half an oracle."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.path(outputs.key)
        if final.exists():
            return
        tmp = Path(tempfile.mkdtemp(prefix=f".{outputs.key}.", dir=self.root))
        try:
            torch.save({k: v.cpu() for k, v in model.state_dict().items()}, tmp / "weights.pt")
            torch.save(
                {
                    "logits_train": outputs.logits_train,
                    "logits_test": outputs.logits_test,
                    "trained_ids": outputs.trained_ids,
                },
                tmp / "outputs.pt",
            )
            record = {"seconds": outputs.seconds, "samples_processed": outputs.samples_processed, **meta}
            (tmp / "meta.json").write_text(json.dumps(record, indent=1, sort_keys=True))
            os.rename(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not self.has(outputs.key):  # another writer won the race with the same content: fine
                raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def get_oracle(
    dataset: Dataset,
    owned_ids: torch.Tensor,
    recipe: OracleRecipe,
    seed: int,
    cache: OracleCache,
) -> OracleOutputs:
    """The cached oracle for this owned set, training (and storing) it only when absent."""
    key = oracle_key(dataset.fingerprint, owned_ids, recipe, seed)
    hit = cache.load(key)
    if hit is not None:
        return hit
    model, outputs = train_oracle(dataset, owned_ids, recipe, seed, key)
    meta = {
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint,
        "seed": seed,
        "n_owned": len(owned_ids),
        "recipe": asdict(recipe),
    }
    cache.store(model, outputs, meta)
    return outputs
