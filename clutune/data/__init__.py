"""Dataset readers by name. Every reader returns a :class:`Dataset` in a fixed sample order."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from clutune.data.dataset import Dataset, fingerprint, make_dataset
from clutune.errors import UserError

__all__ = ["Dataset", "fingerprint", "make_dataset", "load_dataset", "DATASETS"]


def _digits(root: Path | None) -> Dataset:
    from clutune.data.digits import load_digits

    return load_digits()


def _mnist1d(root: Path | None) -> Dataset:
    from clutune.data.mnist1d import load_mnist1d

    return load_mnist1d()


def _cifar10(root: Path | None) -> Dataset:
    from clutune.data.cifar10 import load_cifar10

    return load_cifar10(root)


def _tinyimagenet(root: Path | None) -> Dataset:
    from clutune.data.tinyimagenet import load_tinyimagenet

    return load_tinyimagenet(root)


DATASETS: dict[str, Callable[[Path | None], Dataset]] = {
    "digits": _digits,
    "mnist1d": _mnist1d,
    "cifar10": _cifar10,
    "tinyimagenet": _tinyimagenet,
}


def load_dataset(name: str, root: str | Path | None = None, samples: int | None = None) -> Dataset:
    """The dataset ``name``; ``samples`` (mnist1d only) sets how many samples to generate in total."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    if samples is not None:
        if name != "mnist1d":
            raise UserError(f"config key 'dataset.samples': only mnist1d can generate samples, not {name}")
        from clutune.data.mnist1d import load_mnist1d

        return load_mnist1d(samples)
    return DATASETS[name](Path(root).expanduser() if root else None)
