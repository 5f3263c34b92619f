"""A CIFAR-10 batch is sized before it is built and its labels are integers: a pickle asking for a 2^45-byte
array, and a label that is a string, are each refused in one line. Real pickles in a real folder."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
from numpy._core import multiarray

from clutune.data import load_dataset
from clutune.errors import UserError


class _Bomb:
    """Pickles as numpy's own array reconstruction, with a shape numpy would never write there."""

    def __reduce__(self):
        return (multiarray._reconstruct, (np.ndarray, (1 << 45,), np.dtype("u1")))


def _cifar_folder(parent: Path, first_batch: dict) -> Path:
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, size=(4, 3072), dtype=np.uint8), "labels": [0, 1, 2, 3]}
        (folder / name).write_bytes(pickle.dumps(first_batch if name == "data_batch_1" else batch, protocol=2))
    names = {"label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(names, protocol=2))
    return parent


def test_a_pickle_that_would_build_a_2_to_the_45_array_is_refused_before_allocation(tmp_path):
    root = _cifar_folder(tmp_path, {"data": _Bomb(), "labels": [0]})
    with pytest.raises(UserError) as refused:
        load_dataset("cifar10", root)
    message = str(refused.value)
    assert "\n" not in message and "dataset.root" in message and "32.0 TiB" in message
    assert "data_batch_1" in message and "more than this machine's" in message


@pytest.mark.parametrize("labels", [["3", 1, 2, 3], [0, 1, "cat", 3], [0, 1, 2, 12]])
def test_a_label_that_is_not_an_integer_0_to_9_is_refused(tmp_path, labels):
    data = np.zeros((4, 3072), dtype=np.uint8)
    root = _cifar_folder(tmp_path, {"data": data, "labels": labels})
    with pytest.raises(UserError) as refused:
        load_dataset("cifar10", root)
    assert "\n" not in str(refused.value) and "labels must be integers 0..9" in str(refused.value)


def test_a_well_formed_folder_still_loads(tmp_path):
    root = _cifar_folder(tmp_path, {"data": np.zeros((4, 3072), dtype=np.uint8), "labels": [4, 5, 6, 7]})
    ds = load_dataset("cifar10", root)
    assert ds.n_train == 20 and int(ds.y_train[:4].sum()) == 22
