"""``clutune run`` end to end on digits: the results table, metrics recomputed from the saved predictions (by the
library and independently from the Part A definitions), determinism, and the progress lines."""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from scipy.special import entr
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

from clutune.cli import main
from clutune.core.config import load_config
from clutune.core.experiment import prepare
from clutune.core.metrics import request_metrics
from clutune.core.predictions import read_predictions
from clutune.core.results import read_results

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "clutune" / "presets" / "digits-agnostic-class.yaml"
KINDS = ["learn", "learn", "unlearn", "learn", "unlearn", "learn", "learn", "unlearn"]
SPLITS = ("remain", "learn", "unlearn", "test")
SMALL = [
    "oracle.epochs=3",
    "methods.finetune.epochs_per_learn=2",
    "methods.finetune.iters_per_unlearn=5",
    "device=cpu",
]
METRICS = (
    [f"acc_{s}" for s in SPLITS]
    + [f"oracle_acc_{s}" for s in SPLITS]
    + [f"gap_{s}" for s in SPLITS]
    + [f"kl_oracle_{s}" for s in (*SPLITS, "all")]
    + ["mia_member_rate", "mia_efficacy", "oracle_mia_member_rate", "oracle_mia_efficacy"]
    + ["forgetting", "avg_gap", "acc_test_owned", "acc_test_unlearned"]
    + ["oracle_acc_test_owned", "oracle_acc_test_unlearned"]
)
COLUMNS = (
    ["run_id", "method", "config_hash", "seed", "request", "kind"]
    + METRICS
    + ["seconds", "samples_processed", "oracle_seconds", "oracle_samples_processed"]
    + ["cpu_seconds", "step_seconds", "cpu_step_seconds", "intra_op_threads"]
)


def run_cli(out: Path, cache: Path, *extra: str) -> str:
    argv = ["run", "--config", str(CONFIG), "--method", "finetune", "--out", str(out), "--no-tracking"]
    for item in [f"oracle.cache_dir={cache}", *SMALL]:
        argv += ["--set", item]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main([*argv, *extra])
    assert rc == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("run1")
    stdout = run_cli(base / "out", base / "oracles", "--save-predictions")
    return {"out": base / "out", "stdout": stdout, "rows": read_results(base / "out" / "results.parquet")}


def same(a: Any, b: Any, tol: float = 1e-9) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, float) or isinstance(b, float):
        return not math.isnan(b) and abs(a - b) <= tol
    return a == b


# ------------------------------------------------------------------ (a) the results table


SLACK_S = 0.05  # the process's other threads and the clocks' granularity


def assert_cpu_seconds_sensible(row: dict[str, Any]) -> None:
    """CPU seconds are positive and at most what the machine's cores could burn in the wall time, per part:
    training (``cpu_seconds``), the whole step and so the evaluation (the difference). The bound is the cores, not
    the intra-op threads: process CPU time also counts the process's other threads (numpy's BLAS pool, a
    library's background thread), which is why a trial's worker process runs nothing else."""
    assert row["intra_op_threads"] == torch.get_num_threads()  # this run ran in the test's process
    cores = os.cpu_count()
    assert 0 < row["cpu_seconds"] <= row["seconds"] * cores + SLACK_S
    assert 0 < row["cpu_step_seconds"] <= row["step_seconds"] * cores + SLACK_S
    assert row["cpu_step_seconds"] - row["cpu_seconds"] > 0  # the evaluation's


def test_results_table_schema(first_run):
    rows = first_run["rows"]
    assert len(rows) == 8
    table = pq.read_table(first_run["out"] / "results.parquet")
    missing = [c for c in COLUMNS if c not in table.column_names]
    assert not missing
    assert [r["request"] for r in rows] == list(range(8))
    assert [r["kind"] for r in rows] == KINDS
    assert {r["method"] for r in rows} == {"finetune"}
    assert {r["seed"] for r in rows} == {0}
    assert len({r["run_id"] for r in rows}) == 1
    cfg = load_config(CONFIG, [f"oracle.cache_dir={first_run['out']}", *SMALL])
    assert {r["config_hash"] for r in rows} == {cfg.hash()}
    prep = prepare(cfg)
    for r in rows:
        k = r["request"]
        n_owned = int(prep.scenario.owned(k).sum())
        assert r["oracle_samples_processed"] == 3 * n_owned  # oracle.epochs passes over the owned set
        assert r["seconds"] >= 0 and r["oracle_seconds"] >= 0
        assert_cpu_seconds_sensible(r)
        request = prep.scenario.requests[k]
        if r["kind"] == "learn":
            assert r["samples_processed"] == 2 * len(request.ids)  # epochs_per_learn passes over D_L
            assert math.isnan(r["mia_member_rate"]) == (k < 2)
        else:
            assert 0 < r["samples_processed"] <= 5 * 128  # iters_per_unlearn batches of at most batch_size
            assert not math.isnan(r["mia_member_rate"])
            assert math.isnan(r["acc_learn"])
        for key in ("kl_oracle_all", "acc_test", "avg_gap", "forgetting"):
            assert not math.isnan(r[key]), (k, key)


def test_prediction_files_hold_the_part_a_splits(first_run):
    cfg = load_config(CONFIG, [f"oracle.cache_dir={first_run['out']}", *SMALL])
    prep = prepare(cfg)
    sc, ds = prep.scenario, prep.dataset
    files = sorted(p.name for p in (first_run["out"] / "predictions").iterdir())
    assert files == sorted(f"request-{k}.parquet" for k in range(8))
    for k, request in enumerate(sc.requests):
        splits = read_predictions(first_run["out"] / "predictions" / f"request-{k}.parquet")
        learn = request.ids.numpy() if request.kind == "learn" else np.empty(0, dtype=np.int64)
        assert np.array_equal(np.sort(splits["learn"].ids), learn)
        owned = sc.owned(k).nonzero().flatten().numpy()
        assert np.array_equal(np.sort(np.concatenate([splits["remain"].ids, splits["learn"].ids])), owned)
        assert not np.intersect1d(splits["remain"].ids, splits["learn"].ids).size
        assert np.array_equal(np.sort(splits["unlearn"].ids), sc.unlearned(k).nonzero().flatten().numpy())
        assert np.array_equal(splits["test"].ids, np.arange(ds.n_test))
        for name in ("remain", "learn", "unlearn"):
            s = splits[name]
            assert np.array_equal(s.labels, ds.y_train.numpy()[s.ids])
        assert np.array_equal(splits["test"].labels, ds.y_test.numpy())
        for s in splits.values():
            if len(s):
                np.testing.assert_allclose(s.p_model.sum(1), 1.0, atol=1e-9)
                np.testing.assert_allclose(s.p_oracle.sum(1), 1.0, atol=1e-9)


# ------------------------------------------------------------------ (b) recompute every metric


def test_library_recomputation_matches_results(first_run):
    rows = first_run["rows"]
    for r in rows:
        k = r["request"]
        splits = read_predictions(first_run["out"] / "predictions" / f"request-{k}.parquet")
        again = request_metrics(splits, r["kind"] == "learn")
        assert again  # non-empty
        for key, value in again.items():
            assert same(r[key], value), (k, key, r[key], value)


def load_pred(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """The prediction file read with pyarrow only: split -> ids, labels, task, p_model, p_oracle."""
    t = pq.read_table(path).to_pydict()
    split = np.array(t["split"])
    num_classes = len(t["p_model"][0])
    pm_all = np.array(t["p_model"], dtype=np.float64).reshape(-1, num_classes)
    po_all = np.array(t["p_oracle"], dtype=np.float64).reshape(-1, num_classes)
    out = {}
    for name in SPLITS:
        m = split == name
        out[name] = {
            "ids": np.array(t["sample_id"], dtype=np.int64)[m],
            "labels": np.array(t["label"], dtype=np.int64)[m],
            "task": np.array(t["task"], dtype=np.int64)[m],
            "pm": pm_all[m],
            "po": po_all[m],
        }
    return out


def acc(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(p, axis=1) == y)) if len(y) else float("nan")


def kl_rows(po: np.ndarray, pm: np.ndarray) -> np.ndarray:
    po = np.maximum(po.astype(np.float64), 1e-12)
    pm = np.maximum(pm.astype(np.float64), 1e-12)
    return np.sum(po * np.log(po / pm), axis=1)


def member_rate(pred: dict, p: str) -> float:
    """SFR-on: LR(balanced) on entropy; members = remain + learn, non-members = test; mean label over unlearn."""
    if not len(pred["unlearn"]["ids"]):
        return float("nan")
    feat = {name: entr(pred[name][p]).sum(axis=1) for name in SPLITS}
    x_mem = np.concatenate([feat["remain"], feat["learn"]])
    x = np.concatenate([x_mem, feat["test"]])[:, None]
    y = np.concatenate([np.ones(len(x_mem)), np.zeros(len(feat["test"]))])
    lr = LogisticRegression(class_weight="balanced").fit(x, y)
    return float(np.mean(lr.predict(feat["unlearn"][:, None])))


def efficacy(pred: dict, p: str) -> float:
    """SalUn: SVC on true-class prob; members = first n_test owned by id, non-members = test; 1 - mean over unlearn."""
    if not len(pred["unlearn"]["ids"]):
        return float("nan")

    def true_prob(name: str) -> np.ndarray:
        return pred[name][p][np.arange(len(pred[name]["labels"])), pred[name]["labels"]]

    owned_ids = np.concatenate([pred["remain"]["ids"], pred["learn"]["ids"]])
    owned_feat = np.concatenate([true_prob("remain"), true_prob("learn")])
    n_test = len(pred["test"]["ids"])
    members = owned_feat[np.argsort(owned_ids)][:n_test]
    x = np.concatenate([members, true_prob("test")])[:, None]
    y = np.concatenate([np.ones(len(members)), np.zeros(n_test)])
    svc = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(1.0 - np.mean(svc.predict(true_prob("unlearn")[:, None])))


def independent_metrics(preds: list[dict], k: int, kind: str) -> dict[str, float]:
    pred = preds[k]
    nan = float("nan")
    out: dict[str, float] = {}
    for name in SPLITS:
        s = pred[name]
        out[f"acc_{name}"] = acc(s["pm"], s["labels"])
        out[f"oracle_acc_{name}"] = acc(s["po"], s["labels"])
        out[f"gap_{name}"] = abs(out[f"acc_{name}"] - out[f"oracle_acc_{name}"])  # NaN stays NaN
        out[f"kl_oracle_{name}"] = float(np.mean(kl_rows(s["po"], s["pm"]))) if len(s["ids"]) else nan
    out["kl_oracle_all"] = float(np.mean(np.concatenate([kl_rows(pred[n]["po"], pred[n]["pm"]) for n in SPLITS])))
    out["mia_member_rate"] = member_rate(pred, "pm")
    out["oracle_mia_member_rate"] = member_rate(pred, "po")
    out["mia_efficacy"] = efficacy(pred, "pm")
    out["oracle_mia_efficacy"] = efficacy(pred, "po")

    terms = [out["gap_remain"], out["gap_test"]]
    if kind == "learn":
        terms.append(out["gap_learn"])
    if len(pred["unlearn"]["ids"]):
        terms += [out["gap_unlearn"], abs(out["mia_member_rate"] - out["oracle_mia_member_rate"])]
    terms = [t for t in terms if not math.isnan(t)]
    out["avg_gap"] = float(np.mean(terms)) if terms else nan

    # class-wise test accuracies: classes still owned, and classes wholly unlearned
    test = pred["test"]
    owned_classes = set(np.concatenate([pred["remain"]["labels"], pred["learn"]["labels"]]).tolist())
    gone = set(pred["unlearn"]["labels"].tolist()) - owned_classes

    def acc_on(classes: set[int], p: np.ndarray) -> float:
        m = np.isin(test["labels"], sorted(classes))
        return acc(p[m], test["labels"][m]) if m.any() else nan

    out["acc_test_owned"] = acc_on(owned_classes, test["pm"])
    out["oracle_acc_test_owned"] = acc_on(owned_classes, test["po"])
    out["acc_test_unlearned"] = acc_on(gone, test["pm"])
    out["oracle_acc_test_unlearned"] = acc_on(gone, test["po"])

    # forgetting: each task learned at an earlier request that still owns some of its classes; its accuracy on
    # the test samples of those classes at its best request before now, minus now
    learned_at: dict[int, int] = {}
    for j in range(k + 1):
        for t in np.unique(preds[j]["learn"]["task"]).tolist():
            learned_at.setdefault(t, j)
    task_classes: dict[int, set[int]] = {}
    for label, t in zip(test["labels"].tolist(), test["task"].tolist(), strict=True):
        task_classes.setdefault(t, set()).add(label)
    drops = []
    for t, first in learned_at.items():
        classes = task_classes[t] & owned_classes
        if first == k or not classes:
            continue
        mask = np.isin(test["labels"], sorted(classes))
        history = [acc(preds[j]["test"]["pm"][mask], test["labels"][mask]) for j in range(first, k + 1)]
        drops.append(max(history[:-1]) - history[-1])
    out["forgetting"] = float(np.mean(drops)) if drops else 0.0
    return out


def test_independent_recomputation_matches_results(first_run):
    rows = first_run["rows"]
    preds = [load_pred(first_run["out"] / "predictions" / f"request-{k}.parquet") for k in range(8)]
    checked = set()
    for r in rows:
        k = r["request"]
        mine = independent_metrics(preds, k, r["kind"])
        for key, value in mine.items():
            assert same(r[key], value), (k, key, r[key], value)
            checked.add(key)
    assert checked == set(METRICS)
    # the run is not degenerate: forgetting and the MIAs take real, varied values somewhere in the stream
    assert any(r["forgetting"] != 0.0 for r in rows)
    assert any(not math.isnan(r["acc_test_unlearned"]) for r in rows)


# ------------------------------------------------------------------ (c) determinism


def test_same_seed_twice_gives_identical_metrics(first_run, tmp_path):
    run_cli(tmp_path / "out", tmp_path / "oracles")  # fresh oracle cache: the oracles are retrained too
    again = read_results(tmp_path / "out" / "results.parquet")
    assert len(again) == len(first_run["rows"]) == 8
    assert not (tmp_path / "out" / "predictions").exists()
    varying = {"run_id", "seconds", "step_seconds", "cpu_seconds", "cpu_step_seconds", "rss_mb", "oracle_seconds"}
    for a, b in zip(first_run["rows"], again, strict=True):
        assert a.keys() == b.keys()
        assert a["run_id"] != b["run_id"]
        for key in a.keys() - varying:
            assert same(a[key], b[key], tol=0.0), (a["request"], key, a[key], b[key])


# ------------------------------------------------------------------ (d) progress output


def test_one_progress_line_per_request(first_run):
    lines = first_run["stdout"].splitlines()
    progress = [line for line in lines if re.match(r"^\[\d+/\d+\]", line)]
    assert len(progress) == 8
    for k, (line, kind) in enumerate(zip(progress, KINDS, strict=True)):
        assert line.startswith(f"[{k + 1}/8] finetune {kind}")
        assert "kl_oracle_all=" in line
        assert "seconds=" in line
    assert lines[0].startswith("clutune run: finetune on digits-agnostic-class")
    assert lines[-1].startswith("wrote ") and "(8 rows)" in lines[-1]
    oracle_lines = [line for line in lines if line.startswith("  training the oracle of request ")]
    assert len(oracle_lines) == 8  # a fresh cache: each request announces its oracle before training it
    assert len(lines) == 10 + len(oracle_lines)
