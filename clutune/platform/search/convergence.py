"""Convergence diagnostics of a sweep: did the search stop improving, or had it hardly begun?

One rule, applied the same way by the stopper during a sweep (``sweep.stop_converged``) and by the verdict the
sweep records at its end:

- only complete trials count (every request done, not diverged): a trial the scheduler stopped early (state
  ``PRUNED``) reports a mean over fewer requests, which does not compare with the others;
- complete trials are taken in the order they completed;
- the curve is the best value so far (one objective) or the dominated hypervolume of the Pareto front so far
  (several), against a reference point fixed for the whole curve (``sweep.reference_point``, or 10% beyond the
  worst complete trial on each objective), recorded in the parent run;
- below ``sweep.min_trials`` complete trials the verdict is "too few complete trials (k of n)", never converged;
- from there, the search has converged when the last quarter of complete trials improved the curve by no more than
  ``sweep.converged_tolerance`` of its value before them.

``convergence.csv`` keeps every finished trial, pruned ones included (its ``state`` and ``requests_done``), so a
verdict can be recomputed from the sweep folder alone.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray.tune import Stopper

from clutune.core.storage import write_local_atomic
from clutune.platform.internals import exact_hypervolume

CSV = "convergence.csv"
PLOT = "convergence.png"


def compute_hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Optuna's exact hypervolume (WFG) of minimised ``points`` against ``reference``; points beyond the
    reference on any objective add nothing. Optuna keeps the function private, so it is reached through
    :mod:`clutune.platform.internals`, which checks the release it was read in."""
    inside = points[(points <= reference).all(axis=1)] if len(points) else points
    if len(inside) == 0:
        return 0.0
    return exact_hypervolume(inside, reference)


def default_reference(values: np.ndarray) -> np.ndarray:
    """10% beyond the worst complete value of each objective (10% of its size, so a zero stays usable)."""
    worst = values.max(axis=0)
    return worst + 0.1 * np.maximum(np.abs(worst), 1e-12)


def trial_number(path: str, trial_id: str | None) -> int | None:
    """The trial's number in its sweep (Tune's experiment tag, the order trials were suggested), read from the
    trial folder's name ``<trainable>_<trial_id>_<number>_<params>``."""
    name = Path(path).name
    if trial_id and f"_{trial_id}_" in name:
        head = name.split(f"_{trial_id}_", 1)[1].split("_", 1)[0]
        return int(head) if head.isdigit() else None
    found = re.search(r"_(?:[0-9a-f]{8}|[0-9a-f]{5}_\d{5})_(\d+)", name)
    return int(found.group(1)) if found else None


@dataclass
class Convergence:
    """The curve (one row per finished trial, in order), its kind, reference point and closing verdict."""

    curve: pd.DataFrame
    kind: str  # "best" (one objective) or "hypervolume" (several)
    columns: list[str]
    reference: list[float] | None
    tolerance: float
    converged: bool
    improvement: float  # relative improvement over the last quarter of trials (nan: no complete trial)
    line: str

    def parent_record(self) -> dict[str, dict[str, Any]]:
        """What the parent run gets: the reference point and tolerance as params, the verdict as metrics."""
        params = {"convergence.tolerance": str(self.tolerance)}
        if self.reference is not None:
            params["convergence.reference_point"] = str([float(v) for v in self.reference])
        metrics = {"converged": float(self.converged)}
        if math.isfinite(self.improvement):
            metrics["last_quarter_improvement"] = self.improvement
        return {"params": params, "metrics": metrics}


def _states(trials: pd.DataFrame, n_requests: int) -> np.ndarray:
    """Each trial's state for the curve: complete, pruned (stopped before the last request), diverged, error."""
    status = trials["status"].astype(str) if "status" in trials else pd.Series("OK", index=trials.index)
    done = trials["requests_done"] if "requests_done" in trials else pd.Series(n_requests, index=trials.index)
    state = status.str.lower().where(status != "OK", np.where(done >= n_requests, "complete", "pruned"))
    return state.to_numpy(dtype=object)


def _completion_order(trials: pd.DataFrame) -> pd.DataFrame:
    """Trials in the order they completed (``finished_at``), ties and unknown times by trial number."""
    keys = [k for k in ("finished_at", "number") if k in trials]
    return trials.sort_values(keys, kind="stable", na_position="last") if keys else trials


def curve(
    trials: pd.DataFrame, columns: list[str], n_requests: int, reference: Sequence[float] | None = None
) -> tuple[pd.DataFrame, list[float] | None]:
    """One row per finished trial in the order trials completed: ``trial`` (1..n), ``trial_id``, ``state``,
    ``requests_done``, ``complete``, the objective columns, and ``best`` (one objective) or ``hypervolume``
    (several), each over the complete trials so far; and the reference point used."""
    order = _completion_order(trials)
    frame = order[["trial_id", *columns]].reset_index(drop=True).copy()
    state = _states(order, n_requests)
    values = frame[columns].to_numpy(dtype=float)
    complete = (state == "complete") & np.isfinite(values).all(axis=1)
    frame.insert(0, "trial", np.arange(1, len(frame) + 1))
    frame.insert(2, "state", np.where((state == "complete") & ~complete, "diverged", state))
    done = order["requests_done"].to_numpy() if "requests_done" in order else np.full(len(frame), n_requests)
    frame.insert(3, "requests_done", done)
    frame.insert(4, "complete", complete)
    if len(columns) == 1:
        seen = np.where(complete, values[:, 0], np.inf)
        best = np.minimum.accumulate(seen) if len(seen) else seen
        frame["best"] = np.where(np.isfinite(best), best, np.nan)
        return frame, None
    if reference is not None:
        ref = np.asarray(reference, dtype=float)
    elif complete.any():
        ref = default_reference(values[complete])
    else:
        frame["hypervolume"] = np.nan
        return frame, None
    frame["hypervolume"] = [compute_hypervolume(values[: k + 1][complete[: k + 1]], ref) for k in range(len(frame))]
    return frame, [float(v) for v in ref]


def verdict(
    values: Sequence[float], kind: str, tolerance: float, min_trials: int = 1, finished: int | None = None
) -> tuple[bool, float, str]:
    """(converged, relative improvement, one line) for the curve over the complete trials in the order they
    completed: did the last quarter of them improve the best value (``kind`` "best", minimised) or the
    hypervolume (maximised) by more than ``tolerance`` of the value before it? Fewer than ``min_trials``
    complete trials give no verdict; ``finished`` (all trials that ended, pruned ones too) goes in the line."""
    series = np.asarray(values, dtype=float)
    n = len(series)
    total = n if finished is None else finished
    what = "the best value" if kind == "best" else "the hypervolume"
    if n == 0:
        return False, math.nan, f"not converged: no trial completed every request (0 of {total}); run more trials"
    if n < min_trials:
        return (
            False,
            math.nan,
            f"not converged: too few complete trials ({n} of {total}); a verdict needs {min_trials} (sweep.min_trials)",
        )
    quarter = max(1, math.ceil(n / 4))
    before = series[n - quarter - 1] if n - quarter - 1 >= 0 else math.nan
    end = float(series[-1])
    if not np.isfinite(before):
        gain = math.inf  # nothing complete before the last quarter: everything found came late
    elif kind == "best":
        gain = (before - end) / abs(before) if before != 0 else (math.inf if end < before else 0.0)
    else:
        gain = (end - before) / abs(before) if before != 0 else (math.inf if end > before else 0.0)
    share = "all" if math.isinf(gain) else f"{100 * gain:.3g}%"
    head = f"the last quarter of complete trials ({quarter} of {n}; {total} finished) improved {what} by {share}"
    if gain > tolerance:
        return (
            False,
            gain,
            (f"not converged: {head} (> {100 * tolerance:g}%): more trials would likely help, e.g. {2 * total} in all"),
        )
    return True, gain, f"converged: {head} (<= {100 * tolerance:g}%)"


def judge(frame: pd.DataFrame, kind: str, tolerance: float, min_trials: int) -> tuple[bool, float, str]:
    """The verdict on a curve frame (``curve``'s, or ``convergence.csv`` read back): its complete rows only."""
    complete = frame[frame["complete"].astype(bool)]
    return verdict(complete[kind].to_numpy(dtype=float), kind, tolerance, min_trials, len(frame))


def analyse(
    trials: pd.DataFrame,
    columns: list[str],
    n_requests: int,
    tolerance: float,
    reference: Sequence[float] | None = None,
    min_trials: int = 1,
) -> Convergence:
    """The sweep's convergence curve and verdict from its trial table."""
    frame, ref = curve(trials, columns, n_requests, reference)
    kind = "best" if len(columns) == 1 else "hypervolume"
    converged, gain, line = judge(frame, kind, tolerance, min_trials)
    return Convergence(frame, kind, columns, ref, tolerance, converged, gain, line)


class ConvergedStopper(Stopper):
    """Ends a sweep early once it has converged (``sweep.stop_converged``): after each trial that completes
    every request, the module's one rule on the complete trials so far, in the order they completed (so never
    before ``min_trials`` of them). ``--trials`` stays the cap. A Tune experiment stopper: never stops a single
    trial."""

    def __init__(
        self, columns: list[str], n_requests: int, tolerance: float, min_trials: int, reference: Any = None
    ) -> None:
        self.columns, self.n_requests, self.tolerance = columns, n_requests, tolerance
        self.min_trials, self.reference = min_trials, reference
        self.complete: dict[str, list[float]] = {}
        self.converged = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        values = [float(result.get(c, math.nan)) for c in self.columns]
        if result.get("requests_done") != self.n_requests or not np.isfinite(values).all():
            return False
        if trial_id not in self.complete:
            self.complete[trial_id] = values
            trials = pd.DataFrame(list(self.complete.values()), columns=self.columns)
            trials = trials.assign(
                trial_id=list(self.complete), status="OK", requests_done=self.n_requests, finished_at=range(len(trials))
            )
            self.converged = analyse(
                trials, self.columns, self.n_requests, self.tolerance, self.reference, self.min_trials
            ).converged
        return False

    def stop_all(self) -> bool:
        return self.converged


def stopper(sweep: Any, n_requests: int) -> ConvergedStopper | None:
    """The stopper a sweep's config asks for (``sweep.stop_converged``), or None."""
    if not sweep.stop_converged:
        return None
    columns = [f"objective_{m}" for m in sweep.objectives]
    return ConvergedStopper(columns, n_requests, sweep.converged_tolerance, sweep.min_trials, sweep.reference_point)


def figure(conv: Convergence) -> Any:
    """The curve as a figure; one objective also shows every complete trial's value."""
    from matplotlib.figure import Figure  # a bare Figure: nothing for pyplot to keep open

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    frame = conv.curve
    if conv.kind == "best":
        done = frame[frame["complete"]]
        ax.scatter(done["trial"], done[conv.columns[0]], s=12, color="0.6", label="complete trial")
        ax.step(frame["trial"], frame["best"], where="post", lw=2, label="best so far")
        ax.set_ylabel(conv.columns[0])
    else:
        ax.step(frame["trial"], frame["hypervolume"], where="post", lw=2, label="hypervolume of the front so far")
        ax.set_ylabel(f"hypervolume (reference {', '.join(f'{v:.3g}' for v in conv.reference or [])})")
    ax.set_xlabel("trial number")
    ax.set_title(conv.line if len(conv.line) < 90 else conv.line.split(":")[0], fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write(conv: Convergence, folder: Path) -> list[Path]:
    """``convergence.csv`` and ``convergence.png`` in the sweep folder; the paths written."""
    folder = Path(folder)
    fig = figure(conv)
    write_local_atomic(folder / CSV, lambda tmp: conv.curve.to_csv(tmp, index=False))
    write_local_atomic(folder / PLOT, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return [folder / CSV, folder / PLOT]


def report_section(folder: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """What the report shows of a sweep folder's convergence (its verdict line and, when drawn, the plot as a
    base64 PNG), or None without a ``convergence.csv``."""
    path = Path(folder) / CSV
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    kind = "best" if "best" in frame else "hypervolume"
    sweep = config.get("sweep") or {}
    tolerance = float(sweep.get("converged_tolerance", 0.01))
    _, _, line = judge(frame, kind, tolerance, int(sweep.get("min_trials", 1)))
    plot = Path(folder) / PLOT
    image = {"name": PLOT, "data": base64.b64encode(plot.read_bytes()).decode()} if plot.exists() else None
    return {"line": line, "image": image}


__all__ = [
    "ConvergedStopper",
    "Convergence",
    "analyse",
    "compute_hypervolume",
    "curve",
    "judge",
    "report_section",
    "trial_number",
    "verdict",
    "write",
]
