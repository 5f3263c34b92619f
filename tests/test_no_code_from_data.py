"""No code runs from data: the CIFAR-10 reader admits only the plain types its batches are made of, so a crafted
batch in ``dataset.root`` is refused in one line and what it names is never called."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from clutune.cli import main
from clutune.data.cifar10 import load_cifar10
from clutune.data.safe_pickle import ForbiddenGlobal, load_plain
from clutune.errors import UserError


class _Payload:
    """What an attacker pickles: unpickling it calls os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _batch(rng: np.random.Generator, n: int) -> dict:
    return {"batch_label": "b", "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "labels": [1] * n}


def _write(folder: Path, crafted: object | None) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (folder / name).write_bytes(pickle.dumps(_batch(rng, 2), protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}, protocol=2))
    if crafted is not None:
        (folder / "data_batch_3").write_bytes(pickle.dumps(crafted, protocol=2))


def test_a_crafted_batch_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    _write(tmp_path / "cifar-10-batches-py", {"data": _Payload(marker), "labels": []})
    with pytest.raises(UserError, match=r"data_batch_3 refused: it names posix\.system"):
        load_cifar10(tmp_path)
    assert not marker.exists()


def test_the_cli_refuses_a_crafted_batch_in_one_line(tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    _write(tmp_path / "data" / "cifar-10-batches-py", _Payload(marker))
    monkeypatch.chdir(tmp_path)
    argv = ["run", "--config", "cifar10-random", "--method", "finetune", "--out", str(tmp_path / "out")]
    code = main([*argv, "--no-tracking", "--set", f"dataset.root={tmp_path / 'data'}"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and "refused" in line
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_real_formats_still_load(protocol):
    """The release's own pickles name numpy.core.multiarray._reconstruct (numpy 1); numpy 2 writes
    numpy._core, protocol 5 uses _frombuffer and Python 3 bytes at protocol 2 use _codecs.encode."""
    batch = {b"data": np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072), b"labels": [3, 4], b"name": b"x"}
    blob = pickle.dumps(batch, protocol=protocol)
    if protocol == 2:  # as numpy 1 (the release's writer) spells the array's global
        blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"cnumpy.core.multiarray\n_reconstruct" in blob
    loaded = load_plain(io.BytesIO(blob))
    assert np.array_equal(loaded[b"data"], batch[b"data"]) and loaded[b"labels"] == [3, 4]
    assert loaded[b"name"] == b"x"


def test_object_arrays_and_other_globals_are_refused():
    for crafted in (np.array([print], dtype=object), {"f": len}, [Path("/")]):
        with pytest.raises(ForbiddenGlobal):
            load_plain(io.BytesIO(pickle.dumps(crafted, protocol=2)))
