"""Per-sample correct-class margins of a run and of the oracle members, kept for statistics across runs (KLoM).

A statistic over several runs (the distribution of a sample's margin over a method's seeds against its
distribution over the oracle members) is computed in the parent process after the grid, and a trial never
reads another trial's state, so every run with an oracle ensemble (``oracle.ensemble`` ≥ 2) writes its margins
at each request scored against an oracle, next to its results, compactly:

```
<out>/margins/members/request-<k>.npz       the members 0..M-1 of request k
<out>/margins/runs/<run_id>/request-<k>.npz  the run's model after request k (run_id: the results' run_id)
<out>/margins/floor/request-<k>.npz         KLoM's floor models of request k (compare and study, written by the
                                            parent after the grid; same layout as the members' file)
```

``<out>`` is the folder that holds ``results.parquet`` (``clutune run --out``, or the folder of a compare, a
study's scenario or a sweep). Each file is a NumPy ``.npz`` holding, for each split of
:data:`clutune.core.metrics.SPLITS` (``remain``, ``learn``, ``unlearn``: the forgotten samples so far, and
``test``):

- ``<split>_ids``: int64 (n,), the sample ids (test ids index the test set);
- ``<split>``: float16, (n,) for a run and (M, n) for the members (row m: member m, the oracle seed + m).

The margin of a sample is its correct-class logit minus the logsumexp of the other logits (the margin of
Georgiev et al. and EasyDUB), computed in float64 and then stored as float16 (about three significant digits,
finite up to 65504). Every run of a grid writes the same members' file for a request (the same content), so
one copy stands. :func:`read_margins` reads one file back::

    members = read_margins(member_margins_path(out, k))   # {"unlearn": (ids, (M, n) float32), ...}
    run = read_margins(run_margins_path(out, run_id, k))  # {"unlearn": (ids, (n,) float32), ...}
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from clutune.core import storage
from clutune.core.metrics import SPLITS

MARGINS_DIR = "margins"


def member_margins_path(out: str | Path, k: int) -> str:
    return storage.join(str(out), MARGINS_DIR, "members", f"request-{k}.npz")


def floor_margins_path(out: str | Path, k: int) -> str:
    return storage.join(str(out), MARGINS_DIR, "floor", f"request-{k}.npz")


def run_margins_path(out: str | Path, run_id: str, k: int) -> str:
    return storage.join(str(out), MARGINS_DIR, "runs", run_id, f"request-{k}.npz")


def correct_class_margin(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Correct-class logit minus the logsumexp of the others, per row of ``logits`` (..., n, C); float64.

    Log-probabilities give the same margins as logits (the shift cancels)."""
    z = np.asarray(logits, dtype=np.float64)
    rows = np.arange(z.shape[-2])
    correct = z[..., rows, labels]
    others = z.copy()
    others[..., rows, labels] = -np.inf
    top = others.max(axis=-1)
    rest = top + np.log(np.exp(others - top[..., None]).sum(axis=-1))
    return correct - rest


def write_margins(location: str, ids: dict[str, np.ndarray], margins: dict[str, np.ndarray]) -> None:
    """One split per key of ``ids`` (:data:`SPLITS`); written whole, then moved into place."""
    arrays = {}
    for name in SPLITS:
        arrays[f"{name}_ids"] = np.asarray(ids[name], dtype=np.int64)
        arrays[name] = np.asarray(margins[name]).astype(np.float16)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    storage.write_bytes(location, buffer.getvalue())


def read_margins(location: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split, (sample ids, margins as float32): (n,) for a run, (M, n) for the members."""
    with np.load(io.BytesIO(storage.read_bytes(str(location))), allow_pickle=False) as blob:
        return {name: (blob[f"{name}_ids"], blob[name].astype(np.float32)) for name in SPLITS}
