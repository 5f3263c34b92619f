"""Your own arrays with no code: a NumPy ``.npz`` holding ``x_train``, ``y_train``, ``x_test`` and ``y_test``.

Read with ``allow_pickle=False``, so a file can hold numbers and strings but never code. An optional
``class_names`` array (K strings) names the classes. Train ids are row indices in ``x_train``, as for every
reader; the checks are those of :func:`clutune.data.arrays.dataset_from_arrays`.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from clutune.data.arrays import dataset_from_arrays
from clutune.data.dataset import Dataset
from clutune.data.inside_root import check_file_inside
from clutune.errors import UserError
from clutune.guards.memory_check import check_fits

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_HOWTO = "np.savez(FILE, x_train=..., y_train=..., x_test=..., y_test=...)"


def load_npz(path: Path | None, follow_links: bool = False) -> Dataset:
    """The dataset in the ``.npz`` at ``path``, refused in one line if any array is missing or malformed, or
    (unless ``follow_links``) if ``path`` is a link to a file outside its folder."""
    if path is None:
        raise UserError(f"dataset npz needs dataset.path, the .npz file written by {_HOWTO}")
    where = f"dataset.path {path}"
    if not follow_links:
        check_file_inside(path, where)
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
        check_fits(_estimate_bytes(archive, wanted, where), "dataset.path", f"the arrays of {path}")
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


def _estimate_bytes(archive: np.lib.npyio.NpzFile, keys: list[str], where: str) -> int:
    """What reading ``keys`` will allocate, from each array's .npy header alone (its shape and dtype), plus the
    float32 copy of the inputs: a header claiming 10^12 rows is refused before a byte of it is read."""
    total = 0
    members = set(archive.zip.namelist())
    for key in keys:
        member = f"{key}.npy" if f"{key}.npy" in members else key
        try:
            with archive.zip.open(member) as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
        except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise UserError(f"{where}: array {key!r} has no readable .npy header ({_first_line(e)})") from None
        count = math.prod(shape)
        total += count * dtype.itemsize + (count * 4 if key.startswith("x_") else 0)
    return total


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
