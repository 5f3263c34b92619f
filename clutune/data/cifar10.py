"""CIFAR-10 from the python-pickle release, read directly so no checksum or download step can interfere."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clutune.data.dataset import Dataset, make_dataset
from clutune.data.safe_pickle import ForbiddenGlobal, TooLarge, load_plain
from clutune.errors import UserError
from clutune.guards.memory_check import refusal

FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
PIXEL_MEAN = (0.4914, 0.4822, 0.4465)
PIXEL_STD = (0.2470, 0.2435, 0.2616)
_HOWTO = f"set dataset.root in the config to a folder holding {FOLDER} (get it from {URL}, extracted)"


def load_cifar10(root: Path | None) -> Dataset:
    """Train rows are batch 1..5 in file order, so a sample's id is the same on every machine."""
    folder = _locate(root)
    xs, ys = zip(*(_read_batch(folder / name) for name in TRAIN_FILES), strict=True)
    x_test, y_test = _read_batch(folder / TEST_FILE)
    raw_names = _field(_unpickle(folder / META_FILE), "label_names", folder / META_FILE)
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw_names]
    return make_dataset(
        "cifar10",
        torch.from_numpy(np.concatenate(xs)),
        torch.from_numpy(np.concatenate(ys)),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
        class_names=names,
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
    )


def _locate(root: Path | None) -> Path:
    """Accept the extracted folder or its parent, because users point at either."""
    if root is None:
        raise UserError(f"CIFAR-10 needs a data folder but dataset.root is unset; {_HOWTO}")
    for candidate in (root / FOLDER, root):
        if (candidate / TRAIN_FILES[0]).is_file() or (candidate.name == FOLDER and candidate.is_dir()):
            return candidate
    raise UserError(f"CIFAR-10 not found: looked in {root} and {root / FOLDER}; {_HOWTO}")


def _unpickle(path: Path) -> dict[Any, Any]:
    if not path.is_file():
        raise UserError(f"CIFAR-10 file missing: {path}; {_HOWTO}")
    try:
        with path.open("rb") as f:
            obj = load_plain(f, encoding="latin1")  # admits only what the batches hold: a crafted file runs nothing
    except TooLarge as e:
        raise refusal(e.nbytes, "dataset.root", f"{e} in CIFAR-10 file {path}") from None
    except ForbiddenGlobal as e:
        raise UserError(f"CIFAR-10 file {path} refused: {e}; a CIFAR-10 batch holds only arrays and lists") from None
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, TypeError) as e:
        kind = type(e).__name__
        raise UserError(f"CIFAR-10 file {path} is not a python-pickle batch ({kind}); {_HOWTO}") from None
    if not isinstance(obj, dict):
        raise UserError(f"CIFAR-10 file {path} holds a {type(obj).__name__}, not a dict; {_HOWTO}")
    return obj


def _field(batch: dict[Any, Any], key: str, path: Path) -> Any:
    """Some re-pickled copies key their dicts with bytes, so look up both spellings."""
    for k in (key, key.encode()):
        if k in batch:
            return batch[k]
    raise UserError(f"CIFAR-10 file {path} has no {key!r} entry; {_HOWTO}")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data = np.asarray(_field(batch, "data", path))
    labels = _labels(_field(batch, "labels", path), path)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise UserError(
            f"CIFAR-10 file {path} has data {data.dtype} {data.shape} and {len(labels)} labels, "
            f"expected uint8 (N, 3072) with N labels; {_HOWTO}"
        )
    # Copies: arrays straight out of a pickle may be read-only, which torch.from_numpy warns about.
    return data.reshape(-1, 3, 32, 32).copy(), labels.copy()


def _labels(raw: Any, path: Path) -> np.ndarray:
    """Integers 0..9 only: numpy would turn a label "3" into 3 and a label "cat" into a traceback."""
    found = np.asarray(raw) if isinstance(raw, (list, tuple, np.ndarray)) else None
    if found is None or found.ndim != 1 or not (found.size == 0 or np.issubdtype(found.dtype, np.integer)):
        bad = next((v for v in (raw if isinstance(raw, (list, tuple)) else [raw]) if not isinstance(v, int)), raw)
        raise UserError(f"CIFAR-10 file {path}: labels must be integers 0..9, found {bad!r}; {_HOWTO}")
    if found.size and not (0 <= found.min() and found.max() <= 9):
        raise UserError(f"CIFAR-10 file {path}: labels must be integers 0..9, found {found.max()}; {_HOWTO}")
    return found.astype(np.int64)
