"""A user's own arrays turned into a :class:`Dataset`, checked whole first: every later step (scenario, oracles,
methods) trusts that labels are 0..K-1 with every class present and that train and test inputs share a shape.

Shared by the readers that take data clutune did not make (npz, image folders); each problem is one line that
names the array or file at fault.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from clutune.data.dataset import Dataset, make_dataset
from clutune.errors import UserError

FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_labels(where: str, y_train: np.ndarray, y_test: np.ndarray) -> int:
    """The number of classes K; refuses labels that are not integers 0..K-1 with each class in the train split.

    A class with no training sample could never be learned or unlearned, and a test label no training sample
    has could never be predicted, so both are gaps rather than data.
    """
    for key, y in (("y_train", y_train), ("y_test", y_test)):
        if y.dtype.kind in "US":
            raise UserError(
                f"{where}: {key} holds strings (dtype {y.dtype}); map them to integers 0..K-1 first, e.g. "
                f"names, {key} = np.unique({key}, return_inverse=True), and save the names as class_names"
            )
        if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{where}: {key} must hold integer labels 0..K-1, got dtype {y.dtype}")
        if y.ndim != 1:
            raise UserError(f"{where}: {key} must be one label per sample, shape (N,), got {y.shape}")
        if y.size and int(y.min()) < 0:
            raise UserError(f"{where}: {key} holds the negative label {int(y.min())}; labels must be 0..K-1")
    present = np.unique(y_train)
    k = int(present[-1]) + 1
    if len(present) != k:  # present is sorted and distinct: the first label that differs from its index is a gap
        gap = int(np.flatnonzero(present != np.arange(len(present)))[0])
        raise UserError(f"{where}: y_train has no sample of class {gap}; labels must be 0..K-1 with no gaps (K={k})")
    if k < 2:
        raise UserError(f"{where}: y_train holds one class; a classifier needs at least 2")
    unseen = np.setdiff1d(np.unique(y_test), present)
    if unseen.size:
        raise UserError(f"{where}: y_test holds label {int(unseen[0])}, which no training sample has (K={k})")
    untested = np.setdiff1d(present, y_test)
    if untested.size:
        warnings.warn(MissingTestClass(where, [int(c) for c in untested]), stacklevel=2)
    return k


class MissingTestClass(UserWarning):
    """A class the test split has no sample of: allowed (it is still learned and unlearned), but its test accuracy
    is then undefined, so the reader says so once rather than let a metric quietly average over fewer classes."""

    def __init__(self, where: str, classes: list[int]) -> None:
        listed = ", ".join(map(str, classes[:5])) + (", ..." if len(classes) > 5 else "")
        super().__init__(
            f"{where}: the test split has no sample of class {listed}; test metrics cover the other classes only"
        )


def check_inputs(where: str, x_train: np.ndarray, x_test: np.ndarray) -> None:
    """Vectors (N, D) or images (N, C, H, W) of numbers, the same shape in both splits, finite where float."""
    for key, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim not in (2, 4):
            raise UserError(f"{where}: {key} must be vectors (N, D) or images (N, H, W) or (N, C, H, W), got {x.shape}")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.issubdtype(x.dtype, np.complexfloating):
            raise UserError(f"{where}: {key} must hold real numbers, got dtype {x.dtype}")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise UserError(f"{where}: {key} holds NaN or infinite values")
        if x.size and np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize > 4:  # read as float32: inf
            largest = float(np.abs(x).max())
            if largest > FLOAT32_MAX:
                raise UserError(f"{where}: {key} holds {largest:g}, beyond float32's range (+-{FLOAT32_MAX:.3g})")
        if 0 in x.shape[1:]:
            raise UserError(f"{where}: {key} has an empty input dimension, shape {x.shape}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserError(
            f"{where}: train and test inputs differ in shape: x_train {x_train.shape[1:]}, x_test {x_test.shape[1:]}"
        )


def check_lengths(where: str, arrays: dict[str, np.ndarray]) -> None:
    """One label per input, and at least one sample in each split."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
            raise UserError(f"{where}: x_{split} has {_count(x)} samples but y_{split} has {_count(y)}")
        if len(x) == 0:
            raise UserError(f"{where}: the {split} split is empty")


def channel_stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images (N, C, H, W) scaled to [0, 1], from a histogram (exact, and no
    float copy of the images); a constant channel gets std 1 so normalising never divides by zero."""
    means, stds = [], []
    levels = np.arange(256, dtype=np.float64) / 255.0
    for c in range(x.shape[1]):
        counts = np.bincount(x[:, c].ravel(), minlength=256).astype(np.float64)
        total = counts.sum()
        mean = float(counts @ levels / total)
        var = float(counts @ (levels - mean) ** 2 / total)
        means.append(mean)
        stds.append(var**0.5 if var > 0 else 1.0)
    return tuple(means), tuple(stds)


def dataset_from_arrays(
    name: str, where: str, arrays: dict[str, np.ndarray], class_names: list[str] | None = None
) -> Dataset:
    """Check ``x_train, y_train, x_test, y_test`` and build the dataset, fingerprinted by content.

    (N, H, W) images get a channel axis. uint8 images stay uint8 in memory and are scaled and normalised per
    channel (train statistics) when a batch is fetched, as the built-in image sets are; every other input is used
    as float32, as given.
    """
    arrays = dict(arrays)
    check_lengths(where, arrays)
    for key in ("x_train", "x_test"):
        if arrays[key].ndim == 3:
            arrays[key] = arrays[key][:, None]
    check_inputs(where, arrays["x_train"], arrays["x_test"])
    k = check_labels(where, arrays["y_train"], arrays["y_test"])
    if class_names is not None and len(class_names) != k:
        raise UserError(f"{where}: {len(class_names)} class names for {k} classes")
    x_train, x_test = arrays["x_train"], arrays["x_test"]
    if x_train.ndim == 4 and np.uint8 in (x_train.dtype, x_test.dtype) and x_train.dtype != x_test.dtype:
        raise UserError(f"{where}: x_train is {x_train.dtype} but x_test is {x_test.dtype}; give both one dtype")
    stats: tuple[tuple[float, ...], tuple[float, ...]] | tuple[None, None] = (None, None)
    if x_train.dtype == np.uint8 and x_train.ndim == 4:
        stats = channel_stats(x_train)
    else:
        x_train, x_test = x_train.astype(np.float32, copy=False), x_test.astype(np.float32, copy=False)
    return make_dataset(
        name,
        torch.from_numpy(np.ascontiguousarray(x_train)),
        torch.from_numpy(arrays["y_train"].astype(np.int64, copy=False)),
        torch.from_numpy(np.ascontiguousarray(x_test)),
        torch.from_numpy(arrays["y_test"].astype(np.int64, copy=False)),
        class_names=class_names if class_names is not None else [str(i) for i in range(k)],
        pixel_mean=stats[0],
        pixel_std=stats[1],
    )


def _count(a: np.ndarray) -> str:
    return str(len(a)) if a.ndim else "no"
