"""MNIST-1D generated locally from its fixed default arguments; the package's download path is never taken."""

from __future__ import annotations

import os
from importlib.metadata import version
from pathlib import Path

import torch

from clutune.core.storage import write_local_atomic
from clutune.data.dataset import Dataset, make_dataset


def load_mnist1d(samples: int | None = None) -> Dataset:
    """The package's default 5,000 samples, or ``samples`` in total (train + test, its usual 80/20 split).

    Generation is deterministic (seed 42) and costs about half a millisecond per sample on one core, so 60,000
    samples take roughly 30 s. The content fingerprint changes with ``samples``, so cached oracles never mix.
    """
    tensors = _cached(samples)
    return make_dataset("mnist1d", *tensors, class_names=[str(i) for i in range(10)])


def cache_dir() -> Path:
    """``$CLUTUNE_DATA_CACHE``, else ``~/.cache/clutune/data``: every worker of a long study would otherwise
    regenerate tens of thousands of samples (tens of seconds) before its first request."""
    return Path(os.environ.get("CLUTUNE_DATA_CACHE", "~/.cache/clutune/data")).expanduser()


def _cached(samples: int | None) -> tuple[torch.Tensor, ...]:
    """The generated tensors, from the cache when present; written atomically, keyed by the package version."""
    path = cache_dir() / f"mnist1d-{version('mnist1d')}-{samples or 'default'}.pt"
    if path.exists():
        try:
            return tuple(torch.load(path, weights_only=True))
        except (OSError, RuntimeError, EOFError):
            path.unlink(missing_ok=True)  # a torn file from a crash elsewhere: regenerate
    tensors = _generate(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_local_atomic(path, lambda tmp: torch.save(list(tensors), tmp))
    return tensors


def _generate(samples: int | None) -> tuple[torch.Tensor, ...]:
    from mnist1d.data import get_dataset_args
    from mnist1d.data import make_dataset as generate

    args = get_dataset_args()  # seed 42, 5000 samples: deterministic
    if samples is not None:
        args.num_samples = int(samples)  # the package draws num_samples // 10 per class
    data = generate(args)
    return (
        torch.as_tensor(data["x"], dtype=torch.float32),
        torch.as_tensor(data["y"], dtype=torch.int64),
        torch.as_tensor(data["x_test"], dtype=torch.float32),
        torch.as_tensor(data["y_test"], dtype=torch.int64),
    )
