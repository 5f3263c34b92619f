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
# A user's own data: npz reads dataset.path, imagefolder reads dataset.root (and dataset.image_size).
OWN_DATA = ("npz", "imagefolder")


def load_dataset(
    name: str,
    root: str | Path | None = None,
    samples: int | None = None,
    path: str | Path | None = None,
    image_size: int | None = None,
) -> Dataset:
    """The dataset ``name``; ``samples`` (mnist1d only) sets how many samples to generate in total, ``path`` is
    the npz reader's file and ``image_size`` the side every image of an image folder is resized to."""
    if name not in DATASETS and name not in OWN_DATA:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(sorted([*DATASETS, *OWN_DATA]))}")
    if samples is not None:
        if name != "mnist1d":
            raise UserError(f"config key 'dataset.samples': only mnist1d can generate samples, not {name}")
        from clutune.data.mnist1d import load_mnist1d

        return load_mnist1d(samples)
    if name == "npz":
        from clutune.data.npz import load_npz

        return load_npz(_local(path))
    if name == "imagefolder":
        from clutune.data.imagefolder import load_imagefolder

        return load_imagefolder(_local(root), image_size)
    return DATASETS[name](_local(root))


def _local(location: str | Path | None) -> Path | None:
    return Path(location).expanduser() if location else None
