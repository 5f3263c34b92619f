"""The report page is rendered with autoescaping: a method or an MLflow experiment whose name holds markup shows
that markup as text, and runs none of it."""

from __future__ import annotations

import re

import pandas as pd
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from clutune.platform.record.tracking import KIND_METRIC
from clutune.platform.reports.report import write_report
from clutune.platform.run.compare import TABLE_METRICS

EVIL = "<script>alert(1)</script>"


def _rows(method: str) -> pd.DataFrame:
    records = [
        {"run_id": f"run-{seed}", "method": method, "seed": seed, "request": r, "kind": "learn"}
        | {m: 0.1 * (i + 1) + 0.01 * seed + 0.001 * r for i, m in enumerate(TABLE_METRICS)}
        for seed in (0, 1)
        for r in range(3)
    ]
    return pd.DataFrame.from_records(records)


def _no_markup_from_names(page: str) -> None:
    assert "alert(1)" in page  # the name is on the page ...
    assert not re.search(r"<script>alert", page)  # ... never as a tag


def test_a_method_name_with_markup_is_escaped_everywhere(tmp_path):
    rows = pd.concat([_rows(EVIL), _rows("er")], ignore_index=True)
    rows.to_parquet(tmp_path / "results.parquet")
    page = write_report(str(tmp_path), tmp_path / "report.html").read_text()
    _no_markup_from_names(page)
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert f'<tr data-group="{escaped}"><td>{escaped}</td><td data-metric="kl_oracle_all" data-mean=' in page
    assert '<tr data-group="er"><td>er</td>' in page and "<b>Bold</b>: the best approximate method" in page
    assert page.count("<script>") == 0  # no Optuna study here: the page has no script at all


def test_an_experiment_name_with_markup_is_escaped(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    name = "<script>alert(1)"  # no slash: a name with one reads as a folder
    experiment = client.create_experiment(name)
    for seed in (0, 1):
        run = client.create_run(experiment).info.run_id
        params = [Param("method", "ugclu"), Param("seed", str(seed))]
        steps = _rows("ugclu").query(f"seed == {seed}")
        metrics = [Metric(m, row[m], 0, row["request"]) for _, row in steps.iterrows() for m in TABLE_METRICS]
        metrics += [Metric(KIND_METRIC, 0.0, 0, r) for r in steps["request"]]  # every request a learn
        client.log_batch(run, metrics=metrics, params=params)
        client.set_terminated(run)
    page = write_report(name, tmp_path / "report.html", tracking_uri=uri).read_text()
    _no_markup_from_names(page)
    assert "<title>clutune report: MLflow experiment &#39;&lt;script&gt;alert(1)&#39;</title>" in page
