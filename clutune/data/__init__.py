"""Dataset readers by name. A reader receives the config's ``dataset`` section (:class:`DatasetConfig`) and
returns a :class:`Dataset` in a fixed sample order.

Built-in readers are the table below; an installed package adds its own under the entry point group
``clutune.datasets`` (``name = "module:reader"``), found the same way in every process (clutune.plugins.registry).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from clutune.core.config import DatasetConfig
from clutune.data.dataset import Dataset, fingerprint, make_dataset
from clutune.errors import UserError
from clutune.plugins.registry import Registry

__all__ = [
    "DATASETS",
    "Dataset",
    "DatasetConfig",
    "Reader",
    "fingerprint",
    "load_dataset",
    "make_dataset",
    "read_dataset",
]

Reader = Callable[[DatasetConfig], Dataset]


def _root(section: DatasetConfig) -> Path | None:
    return Path(section.root).expanduser() if section.root else None


def _digits(section: DatasetConfig) -> Dataset:
    from clutune.data.digits import load_digits

    return load_digits()


def _mnist1d(section: DatasetConfig) -> Dataset:
    from clutune.data.mnist1d import load_mnist1d

    return load_mnist1d() if section.samples is None else load_mnist1d(section.samples)


def _cifar10(section: DatasetConfig) -> Dataset:
    from clutune.data.cifar10 import load_cifar10

    return load_cifar10(_root(section))


def _tinyimagenet(section: DatasetConfig) -> Dataset:
    from clutune.data.tinyimagenet import load_tinyimagenet

    return load_tinyimagenet(_root(section))


def _npz(section: DatasetConfig) -> Dataset:
    from clutune.data.npz import load_npz

    return load_npz(Path(section.path).expanduser() if section.path else None, section.follow_links)


def _imagefolder(section: DatasetConfig) -> Dataset:
    from clutune.data.imagefolder import load_imagefolder

    return load_imagefolder(_root(section), section.image_size, section.follow_links)


BUILTIN_READERS: dict[str, Reader] = {
    "digits": _digits,
    "mnist1d": _mnist1d,
    "cifar10": _cifar10,
    "tinyimagenet": _tinyimagenet,
    "npz": _npz,
    "imagefolder": _imagefolder,
}
# A user's own data: npz reads dataset.path, imagefolder reads dataset.root (and dataset.image_size).
OWN_DATA = ("npz", "imagefolder")


def _check_reader(obj: Any, name: str) -> str | None:
    return None if callable(obj) else f"is a {type(obj).__name__}, not a reader (a callable taking the dataset section)"


DATASETS: Registry[Reader] = Registry("clutune.datasets", "dataset", BUILTIN_READERS, _check_reader)


def read_dataset(section: DatasetConfig) -> Dataset:
    """The dataset a config's ``dataset`` section describes; a reader that returns anything else is refused."""
    dataset = DATASETS.get(section.name)(section)
    if not isinstance(dataset, Dataset):
        origin = DATASETS.origin(section.name)
        raise UserError(
            f"dataset {section.name!r} from {origin}: the reader returned a {type(dataset).__name__}, "
            "not a clutune.data.Dataset (build one with clutune.data.make_dataset)"
        )
    return dataset


def load_dataset(name: str, root: str | Path | None = None, samples: int | None = None, **keys: Any) -> Dataset:
    """Shorthand for :func:`read_dataset` with a section built from keywords (``path=``, ``options=``)."""
    paths = {k: str(v) if isinstance(v, Path) else v for k, v in keys.items()}  # a Path is as good as its string
    raw = {"name": name, "root": None if root is None else str(root), "samples": samples, **paths}
    return read_dataset(DatasetConfig.build(raw, prefix="dataset"))
