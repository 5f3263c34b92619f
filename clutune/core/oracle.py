"""Oracles: models retrained from scratch on exactly the owned ids, cached by content.

An oracle depends only on the data (fingerprint), the owned ids, the architecture, the recipe and the seed;
never on a method. So its key is a hash of those, and a sweep computes each one once. Its training runs
through a :class:`TrainAccess` that blocks every id not owned, so it cannot see unlearned data even by
mistake, and the ids it did fetch are recorded next to its outputs.

On long streams an oracle after every request dominates the cost, so ``oracle.policy`` picks the requests
that get one, and the cache stays bounded: weights are kept only on request, ``clutune oracles --prune``
removes the least recently used entries, and a lease keeps the entries a running job uses.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import time
import uuid
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pyarrow.fs as pafs
import torch
from pydantic import BaseModel, ConfigDict

from clutune.clu.access import TrainAccess, crop_flip
from clutune.clu.compute import (
    autocast,
    compile_seconds,
    effective_precision,
    flush_denormals,
    input_layout,
    prepare_model,
)
from clutune.clu.runner import Diverged
from clutune.clu.training import predict_logits, sgd_epochs, steps_per_epoch
from clutune.core import storage
from clutune.core.config import ComputeConfig, OracleConfig
from clutune.core.identity import Identity, identity
from clutune.core.placement import placement
from clutune.core.settings import setting
from clutune.data import Dataset
from clutune.errors import UserError
from clutune.models import build_model

FORMAT_VERSION = 1
LEASE_DIR = "leases"
# Another host's process cannot be checked, so its lease is trusted this long and then presumed abandoned.
LEASE_MAX_AGE_S = 7 * 24 * 3600.0


def oracle_requests(policy: str, every: int, kinds: list[str]) -> list[bool]:
    """Whether request k (of the kinds ``kinds``) gets an exact oracle under ``policy``.

    - ``every``: every request;
    - ``every_k``: the requests k with (k + 1) % every == 0, plus the last request;
    - ``unlearn``: every unlearn request, plus the last request;
    - ``final``: only the last request.

    The last request always gets one, so every policy scores where the stream ends.
    """
    rules = {
        "every": lambda k: True,
        "every_k": lambda k: (k + 1) % every == 0,
        "unlearn": lambda k: kinds[k] == "unlearn",
        "final": lambda k: False,
    }
    if policy not in rules:
        raise UserError(f"oracle policy {policy!r}: expected one of {', '.join(rules)}")
    if policy == "every_k" and every < 1:
        raise UserError(f"oracle policy every_k: 'every' must be at least 1, got {every}")
    last = len(kinds) - 1
    return [rules[policy](k) or k == last for k in range(len(kinds))]


class OracleRecipe(BaseModel):
    """How an oracle is trained; its identity (clutune.core.identity) is what the oracle key hashes. The fields
    that change how fast an oracle trains, not what it computes (up to float rounding, as another GPU model
    would), never enter it; precision enters only when it is not fp32 (bf16 changes the outputs on CUDA), so fp32
    keys are those of recipes written before precision existed and their cached oracles stay valid."""

    model_config = ConfigDict(frozen=True)

    model: dict[str, Any]
    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    schedule: str
    augment: bool
    # The compute settings (config ``compute:``); precision as requested, so the head of a cluster (CPU) and
    # its GPU workers agree on every key.
    precision: str = setting("fp32", identity=Identity.WHEN_SET)
    channels_last: bool = setting(False, identity=Identity.EXCLUDED)
    compile: bool = setting(False, identity=Identity.EXCLUDED)
    eval_batch_size: int = setting(1024, identity=Identity.EXCLUDED)
    flush_denormal: bool = setting(True, identity=Identity.EXCLUDED)

    @classmethod
    def from_config(
        cls, oracle: OracleConfig, model: dict[str, Any], compute: ComputeConfig | None = None
    ) -> OracleRecipe:
        compute = compute or ComputeConfig()
        return cls(
            model=dict(model),
            epochs=oracle.epochs,
            lr=oracle.lr,
            momentum=oracle.momentum,
            weight_decay=oracle.weight_decay,
            batch_size=oracle.batch_size,
            schedule=oracle.schedule,
            augment=oracle.augment,
            precision=compute.precision,
            channels_last=compute.channels_last,
            compile=compute.compile,
            eval_batch_size=compute.eval_batch_size,
            flush_denormal=compute.flush_denormal,
        )

    def identity(self) -> dict[str, Any]:
        """What the oracle key hashes."""
        return identity(self)


@dataclass
class OracleOutputs:
    key: str
    logits_train: torch.Tensor  # (n_train, C): every training sample, owned or not
    logits_test: torch.Tensor
    trained_ids: torch.Tensor  # sorted ids the oracle's training actually fetched
    seconds: float  # training wall time, compile time excluded
    samples_processed: int
    cached: bool = False
    compile_seconds: float = 0.0  # torch.compile time spent training and scoring it (compute.compile)
    node_id: str = ""  # the Ray node that trained it ("" outside Ray) and that node's hostname
    hostname: str = ""


def oracle_key(fingerprint: str, owned_ids: torch.Tensor, recipe: OracleRecipe, seed: int) -> str:
    h = hashlib.sha256()
    h.update(f"v{FORMAT_VERSION}|{fingerprint}|{seed}|".encode())
    h.update(json.dumps(recipe.identity(), sort_keys=True).encode())
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
    with torch.random.fork_rng(devices=devices), flush_denormals(recipe.flush_denormal):
        return _train_oracle(dataset, owned_ids, recipe, seed, key)


def _train_oracle(
    dataset: Dataset, owned_ids: torch.Tensor, recipe: OracleRecipe, seed: int, key: str | None
) -> tuple[torch.nn.Module, OracleOutputs]:
    owned_ids = owned_ids.sort().values.cpu()
    device = dataset.x_train.device
    torch.manual_seed(seed)
    model = build_model(recipe.model, dataset.input_shape, dataset.num_classes).to(device)
    prepare_model(model, device, recipe.channels_last, recipe.compile)
    to_inputs = input_layout(dataset.inputs, device, recipe.channels_last)
    access = TrainAccess(dataset.x_train, dataset.y_train, to_inputs, crop_flip if recipe.augment else None)
    access.block_all_but(owned_ids)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    total = recipe.epochs * steps_per_epoch(len(owned_ids), recipe.batch_size)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, total)) if recipe.schedule == "cosine" else None
    )
    compiled0 = compile_seconds() if recipe.compile else 0.0
    t0 = time.perf_counter()
    with autocast(recipe.precision, device):
        if len(owned_ids):
            sgd_epochs(model, access, owned_ids, recipe.epochs, recipe.batch_size, opt, sched, generator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        train_compile = compile_seconds() - compiled0 if recipe.compile else 0.0
        seconds = time.perf_counter() - t0 - train_compile
        logits_train = predict_logits(model, dataset.x_train, to_inputs, recipe.eval_batch_size)
        logits_test = predict_logits(model, dataset.x_test, to_inputs, recipe.eval_batch_size)
    outputs = OracleOutputs(
        key=key or oracle_key(dataset.fingerprint, owned_ids, recipe, seed),
        logits_train=logits_train,
        logits_test=logits_test,
        trained_ids=access.touched.nonzero().flatten(),
        seconds=seconds,
        samples_processed=recipe.epochs * len(owned_ids),
        compile_seconds=compile_seconds() - compiled0 if recipe.compile else 0.0,
        **placement(),
    )
    return model, outputs


class SplitShape(NamedTuple):
    """What an oracle's outputs must match: the dataset's split sizes and its number of classes."""

    n_train: int
    n_test: int
    num_classes: int

    @classmethod
    def of(cls, dataset: Dataset) -> SplitShape:
        return cls(len(dataset.y_train), len(dataset.y_test), dataset.num_classes)


META_KEYS = ("seconds", "samples_processed")


def _entry_problem(meta: dict[str, Any], blob: dict[str, Any], shape: SplitShape | None) -> str | None:
    """Why a read entry cannot be served, or None: every field :meth:`OracleCache.load` uses is present, the
    outputs are finite 2-D tensors of one class count, and they fit the dataset's splits when ``shape`` is given."""
    missing = [k for k in META_KEYS if not isinstance(meta.get(k), (int, float))]
    if missing:
        return f"meta.json lacks {', '.join(missing)}"
    logits = {k: blob[k] for k in ("logits_train", "logits_test")}
    for name, t in logits.items():
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or not t.is_floating_point():
            return f"{name} is not a 2-D float tensor"
        if not bool(torch.isfinite(t).all()):
            return f"{name} is not finite"
    if not isinstance(blob["trained_ids"], torch.Tensor) or blob["trained_ids"].dim() != 1:
        return "trained_ids is not a 1-D tensor"
    found = (len(logits["logits_train"]), len(logits["logits_test"]), logits["logits_train"].shape[1])
    if logits["logits_test"].shape[1] != found[2]:
        return "logits_train and logits_test differ in their number of classes"
    if shape is not None and found != tuple(shape):
        return f"outputs of shape {found} (train, test, classes), the dataset has {tuple(shape)}"
    return None


class DamagedEntry(Exception):
    """A committed cache entry (``meta.json`` present) whose files are missing, unreadable or invalid."""


class OracleDiverged(Diverged):
    """An oracle trained to non-finite outputs: never cached, and the run fails with one line (exit 1)."""


@dataclass(frozen=True)
class CacheEntry:
    key: str
    bytes: int
    last_used: float  # epoch seconds: when it was stored or last loaded (the folder's mtime)


@dataclass(frozen=True)
class PrunePlan:
    remove: list[str]  # least recently used first
    spared: list[str]  # over a limit, but protected (asked for, or held by a live lease)


class OracleCache:
    """A folder per key: ``outputs.pt``, ``meta.json`` and, when kept, ``weights.pt``, on a disk or an object store.

    Each file is written whole (a temporary object, then moved into place) and ``meta.json`` goes last: it is the
    commit, so an entry without it does not exist, whatever else its folder holds, and a writer killed midway
    leaves nothing a reader would take. Removal takes ``meta.json`` away first for the same reason.
    Leases (``leases/<host>-<pid>-<id>.json``) name the keys a running job uses, so a prune elsewhere spares them.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = storage.local_path(str(root))
        if not storage.is_remote(self.root) and Path(self.root).exists() and not Path(self.root).is_dir():
            raise UserError(f"oracle cache {self.root} is a file, not a folder; give a folder as the cache")

    def path(self, key: str) -> str:
        return storage.join(self.root, key)

    def has(self, key: str, shape: SplitShape | None = None) -> bool:
        """True only for a whole, valid entry: a damaged one is not there (it will be retrained)."""
        try:
            return self._read(key, shape) is not None
        except DamagedEntry:
            return False

    def _read(self, key: str, shape: SplitShape | None = None) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        """(meta, outputs) of a whole, valid entry; None when there is no entry (no ``meta.json``). An entry
        whose ``outputs.pt`` is missing, truncated or unreadable, whose ``meta.json`` is, or whose contents fail
        :func:`_entry_problem` (``shape``: the dataset's split sizes and classes, when known) raises
        :class:`DamagedEntry`: entries cached by older versions, or edited by hand, are checked on every load."""
        found = self._read_files(key)
        if found is not None:
            problem = _entry_problem(*found, shape)
            if problem:
                raise DamagedEntry(f"oracle cache entry {self.path(key)} is invalid ({problem})")
        return found

    def _read_files(self, key: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        folder = self.path(key)
        try:
            meta_bytes = storage.read_bytes(storage.join(folder, "meta.json"))
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(meta_bytes)
            blob = torch.load(io.BytesIO(storage.read_bytes(storage.join(folder, "outputs.pt"))), weights_only=True)
            if not isinstance(meta, dict) or not all(k in blob for k in ("logits_train", "logits_test", "trained_ids")):
                raise ValueError("fields missing")
        except FileNotFoundError:
            if not storage.exists(storage.join(folder, "meta.json")):
                return None  # a concurrent prune removed the whole entry meanwhile
            raise DamagedEntry(f"oracle cache entry {folder} has meta.json but no outputs.pt") from None
        except Exception as e:  # noqa: BLE001 (torch.load of a torn file raises any of several types)
            raise DamagedEntry(f"oracle cache entry {folder} is unreadable ({type(e).__name__})") from None
        return meta, blob

    def load(self, key: str, shape: SplitShape | None = None) -> OracleOutputs | None:
        """None when absent, when a concurrent prune removed it mid-read, or when the entry is damaged (a
        warning names it): the caller then retrains it, and :meth:`store` rewrites it."""
        folder = self.path(key)
        try:
            found = self._read(key, shape)
        except DamagedEntry as e:
            warnings.warn(f"{e}: treated as absent, retrained once and rewritten", stacklevel=2)
            return None
        if found is None:
            return None
        meta, blob = found
        storage.touch_local(folder)
        return OracleOutputs(
            key=key,
            logits_train=blob["logits_train"],
            logits_test=blob["logits_test"],
            trained_ids=blob["trained_ids"],
            seconds=meta["seconds"],
            samples_processed=meta["samples_processed"],
            cached=True,
            compile_seconds=meta.get("compile_seconds", 0.0),
            node_id=meta.get("node_id", ""),
            hostname=meta.get("hostname", ""),
        )

    def load_weights(self, key: str) -> dict[str, torch.Tensor]:
        try:
            data = storage.read_bytes(storage.join(self.path(key), "weights.pt"))
        except FileNotFoundError:
            raise UserError(
                f"oracle {key}: no weights cached (oracle.keep_weights was false when it was trained)"
            ) from None
        return torch.load(io.BytesIO(data), weights_only=True)

    def has_weights(self, key: str) -> bool:
        return storage.exists(storage.join(self.path(key), "weights.pt"))

    def store_weights(self, key: str, weights: dict[str, torch.Tensor]) -> None:
        """Add the weights to a committed entry whose oracle was cached without them (the relearning attack needs
        the model, not only its outputs); written whole and moved into place, so a reader finds them or none."""
        storage.write_bytes(
            storage.join(self.path(key), "weights.pt"), _tensors({k: v.cpu() for k, v in weights.items()})
        )

    def store(self, outputs: OracleOutputs, meta: dict[str, Any], weights: dict[str, torch.Tensor] | None) -> None:
        """Data files first, ``meta.json`` last (the commit); a concurrent writer of the same key writes the same
        content, so whichever move lands last changes nothing."""
        if not all(bool(torch.isfinite(t).all()) for t in (outputs.logits_train, outputs.logits_test)):
            raise OracleDiverged(
                f"oracle {outputs.key}: its outputs are not finite (NaN or infinite); not cached. The oracle "
                "recipe diverged on this data: lower oracle.lr, or check the data"
            )
        shape = SplitShape(len(outputs.logits_train), len(outputs.logits_test), outputs.logits_train.shape[-1])
        try:
            if self._read(outputs.key, shape) is not None:
                return
        except DamagedEntry:
            storage.delete_file(storage.join(self.path(outputs.key), "meta.json"))  # uncommit, then rewrite
        folder = self.path(outputs.key)
        if weights is not None:
            storage.write_bytes(storage.join(folder, "weights.pt"), _tensors({k: v.cpu() for k, v in weights.items()}))
        blob = {"logits_train": outputs.logits_train, "logits_test": outputs.logits_test}
        storage.write_bytes(storage.join(folder, "outputs.pt"), _tensors({**blob, "trained_ids": outputs.trained_ids}))
        record = {
            "seconds": outputs.seconds,
            "samples_processed": outputs.samples_processed,
            "compile_seconds": outputs.compile_seconds,
            "node_id": outputs.node_id,
            "hostname": outputs.hostname,
            **meta,
        }
        storage.write_bytes(storage.join(folder, "meta.json"), json.dumps(record, indent=1, sort_keys=True).encode())

    def entries(self) -> list[CacheEntry]:
        """Complete entries, least recently used first; temporary objects and leases are not entries."""
        found = (
            _entry(self.path(info.base_name), info)
            for info in storage.list_dir(self.root)
            if info.type == pafs.FileType.Directory and not info.base_name.startswith(".")
        )
        return sorted((e for e in found if e is not None), key=lambda e: e.last_used)

    def size_bytes(self) -> int:
        return sum(e.bytes for e in self.entries())

    def prune_plan(self, max_age_s: float | None, max_bytes: int | None, protected: set[str]) -> PrunePlan:
        """Least recently used first, an entry goes when unused for over ``max_age_s`` or while the cache is
        over ``max_bytes``; a protected or leased entry stays, and its bytes still count. A NaN or negative
        limit would compare false with every age and size and prune nothing in silence, so it is refused."""
        for name, limit in (("age", max_age_s), ("size", max_bytes)):
            if limit is not None and not limit >= 0:
                raise UserError(f"oracle cache prune: maximum {name} {limit!r} must be a number at least 0")
        guarded = set(protected) | self.leased_keys()
        entries = self.entries()
        total = sum(e.bytes for e in entries)
        now = time.time()
        remove, spared = [], []
        for e in entries:
            too_old = max_age_s is not None and now - e.last_used > max_age_s
            too_big = max_bytes is not None and total > max_bytes
            if not (too_old or too_big):
                break  # the rest were used more recently and the cache fits
            if e.key in guarded:
                spared.append(e.key)
            else:
                remove.append(e.key)
                total -= e.bytes
        return PrunePlan(remove, spared)

    def prune(self, max_age_s: float | None, max_bytes: int | None, protected: set[str]) -> list[str]:
        """Remove what :meth:`prune_plan` selects; returns the keys removed."""
        return self.remove(self.prune_plan(max_age_s, max_bytes, protected).remove)

    def remove(self, keys: Iterable[str]) -> list[str]:
        """Uncommit each entry (its ``meta.json`` goes first), then delete the rest: a reader finds a whole
        entry or none, and of two concurrent prunes only one counts the entry as removed."""
        removed = []
        for key in keys:
            if not storage.delete_file(storage.join(self.path(key), "meta.json")):
                continue  # already removed by a concurrent prune
            storage.delete_dir(self.path(key))
            removed.append(key)
        return removed

    @contextmanager
    def lease(self, keys: Iterable[str]) -> Iterator[str]:
        """Protect ``keys`` from any prune while the block runs; a crash leaves a lease that dies with its pid."""
        host, pid = socket.gethostname(), os.getpid()
        path = storage.join(self.root, LEASE_DIR, f"{host}-{pid}-{uuid.uuid4().hex[:8]}.json")
        record = {"host": host, "pid": pid, "created": time.time(), "keys": sorted(set(keys))}
        storage.write_bytes(path, json.dumps(record).encode())
        try:
            yield path
        finally:
            storage.delete_file(path)

    def leased_keys(self) -> set[str]:
        """Every key in a live lease; stale leases (see :func:`_lease_live`) protect nothing."""
        keys: set[str] = set()
        for info in storage.list_dir(storage.join(self.root, LEASE_DIR)):
            if info.base_name.startswith(".") or not info.base_name.endswith(".json"):
                continue
            record = _read_lease(storage.join(self.root, LEASE_DIR, info.base_name))
            if record is not None and _lease_live(record):
                keys.update(record["keys"])
        return keys


def _well_formed(record: Any) -> bool:
    """What :meth:`OracleCache.lease` writes: host, pid, creation time and a list of key strings."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("host"), str)
        and isinstance(record.get("pid"), int)
        and isinstance(record.get("created"), (int, float))
        and isinstance(record.get("keys"), list)
        and all(isinstance(k, str) for k in record["keys"])
    )


def _tensors(value: dict[str, torch.Tensor]) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


def _entry(folder: str, info: pafs.FileInfo) -> CacheEntry | None:
    """None for anything that is not a complete entry, or that a concurrent prune removed while we looked."""
    files = {f.base_name: f for f in storage.list_dir(folder) if f.type == pafs.FileType.File}
    if "meta.json" not in files:
        return None
    size = sum(f.size for name, f in files.items() if not name.startswith("."))
    # A disk folder's mtime is its last use (see OracleCache.load); an object store has only write times.
    used = info.mtime or max(f.mtime for f in files.values())
    return CacheEntry(info.base_name, size, used.timestamp())


def _read_lease(path: str) -> dict[str, Any] | None:
    """The lease at ``path``; None when it was released meanwhile, or when it is malformed (a warning names it:
    it protects nothing, and a prune goes on)."""
    try:
        record = json.loads(storage.read_bytes(path))
    except FileNotFoundError:
        return None
    except ValueError:
        record = None
    if not _well_formed(record):
        warnings.warn(f"ignoring malformed oracle cache lease {path}", stacklevel=3)
        return None
    if not 0 < record["pid"] <= _pid_max():  # pid 0 would signal our own group and look alive forever
        warnings.warn(f"ignoring oracle cache lease {path}: impossible pid {record['pid']}", stacklevel=3)
        return None
    return record


def _pid_max() -> int:
    """The largest pid this kernel hands out (Linux's pid_max; 2^22, its upper limit, elsewhere)."""
    try:
        return int(Path("/proc/sys/kernel/pid_max").read_text())
    except (OSError, ValueError):
        return 1 << 22


def _lease_live(record: dict[str, Any]) -> bool:
    """On this host a lease lives as long as its process; another host's is trusted for LEASE_MAX_AGE_S."""
    if record["host"] == socket.gethostname():
        return _pid_alive(record["pid"])
    return time.time() - record["created"] < LEASE_MAX_AGE_S


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


def get_oracle(
    dataset: Dataset,
    owned_ids: torch.Tensor,
    recipe: OracleRecipe,
    seed: int,
    cache: OracleCache,
    keep_weights: bool = True,
) -> OracleOutputs:
    """The cached oracle for this owned set, training (and storing) it only when absent.

    Outputs are always stored; weights only with ``keep_weights`` (runs pass ``oracle.keep_weights``, False by
    default, since a ResNet-18's weights are ~45 MB an oracle), and only for oracles trained from now on.
    """
    key = oracle_key(dataset.fingerprint, owned_ids, recipe, seed)
    hit = cache.load(key, SplitShape.of(dataset))
    if hit is not None:
        return hit
    model, outputs = train_oracle(dataset, owned_ids, recipe, seed, key)
    cache.store(outputs, oracle_meta(dataset, owned_ids, recipe, seed), model.state_dict() if keep_weights else None)
    return outputs


def oracle_meta(dataset: Dataset, owned_ids: torch.Tensor, recipe: OracleRecipe, seed: int) -> dict[str, Any]:
    """What a cache entry's ``meta.json`` records about how its oracle was made, besides its outputs."""
    return {
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint,
        "seed": seed,
        "n_owned": len(owned_ids),
        "recipe": recipe.model_dump(),
        "precision_used": effective_precision(recipe.precision, dataset.x_train.device),
    }
