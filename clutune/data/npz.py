"""Your own arrays with no code: a NumPy ``.npz`` holding ``x_train``, ``y_train``, ``x_test`` and ``y_test``.

Read with ``allow_pickle=False``, so a file can hold numbers and strings but never code. An optional
``class_names`` array (K strings) names the classes. Train ids are row indices in ``x_train``, as for every
reader; the checks are those of :func:`clutune.data.arrays.dataset_from_arrays`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from clutune.data.arrays import dataset_from_arrays
from clutune.data.dataset import Dataset
from clutune.errors import UserError

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_HOWTO = "np.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...)"


def load_npz(path: Path | None) -> Dataset:
    """The dataset in the ``.npz`` at ``path``, refused in one line if any array is missing or malformed."""
    if path is None:
        raise UserError(f"dataset npz needs dataset.path, the .npz file written by {_HOWTO}")
    where = f"dataset.path {path}"
    arrays, names = _read(path, where)
    return dataset_from_arrays("npz", where, arrays, names)


def _read(path: Path, where: str) -> tuple[dict[str, np.ndarray], list[str] | None]:
    if not path.is_file():
        raise UserError(f"{where}: no such file")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:  # ValueError: neither .npz nor .npy
        raise UserError(f"{where}: not an .npz archive of plain arrays ({_first_line(e)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise UserError(f"{where}: holds a single array, not an .npz archive written by {_HOWTO}")
    with archive:
        missing = [k for k in ARRAYS if k not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "none"
            raise UserError(f"{where}: no array {missing[0]!r} (found: {found}); write it with {_HOWTO}")
        wanted = [*ARRAYS, *(["class_names"] if "class_names" in archive.files else [])]
        arrays = {}
        for key in wanted:
            try:
                arrays[key] = archive[key]
            except ValueError:  # an object array: reading it would unpickle
                raise UserError(f"{where}: array {key!r} holds Python objects, which are never unpickled") from None
            except (OSError, EOFError, zipfile.BadZipFile) as e:
                raise UserError(f"{where}: array {key!r} cannot be read ({_first_line(e)})") from None
    names = arrays.pop("class_names", None)
    if names is None:
        return arrays, None
    if names.ndim != 1 or names.dtype.kind != "U":
        raise UserError(f"{where}: class_names must be a 1-D array of strings, got {names.dtype} {names.shape}")
    return arrays, [str(n) for n in names]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
