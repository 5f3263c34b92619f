"""``clutune report`` on a folder a compare with the attacks left: U-LiRA's ROC curves and the ε histogram on
the page, the received folder left as it was, and no section where the files are absent. The folder is written
directly (rows, likelihood ratios, per-sample ε), so no model is trained."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
from PIL import Image

from clutune.core.shadows import GROUPS, write_attack_scores
from clutune.guards.received_folder import ReceivedFolder
from clutune.platform.reports.attack_plots import EPSILON_PLOT, ROC_PLOT, attack_scores
from clutune.platform.reports.epsilon_report import CEILING
from clutune.platform.reports.plots import PLOT_PX
from clutune.platform.reports.report import write_report
from clutune.platform.run.compare import TABLE_METRICS

METHODS = ("finetune", "retrain")
SEEDS = (0, 1)
FORGET, TEST = 40, 60


def _rows() -> pd.DataFrame:
    records = [
        {"run_id": f"{method}-{seed}", "method": method, "seed": seed, "request": r, "kind": kind}
        | {m: 0.1 * (i + 1) + 0.01 * seed for i, m in enumerate(TABLE_METRICS)}
        for method in METHODS
        for seed in SEEDS
        for r, kind in enumerate(("learn", "unlearn"))
    ]
    return pd.DataFrame.from_records(records)


def _folder(tmp_path, attacks: bool = True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = _rows()
    rows.to_parquet(tmp_path / "results.parquet")
    if not attacks:
        return tmp_path
    rng = np.random.default_rng(0)
    for run_id, method in rows.drop_duplicates("run_id")[["run_id", "method"]].itertuples(index=False):
        shift = 2.0 if method == "finetune" else 0.0  # finetune never forgot: its forget set reads as members
        scores = {"forget": rng.normal(shift, 1, FORGET), "forget_test": rng.normal(0, 1, TEST)}
        scores |= {"retain": rng.normal(1, 1, 80), "retain_test": rng.normal(0, 1, TEST)}
        write_attack_scores(tmp_path, run_id, 1, scores)
    # a run of an earlier grid in the same folder: not in results.parquet, so never on the figure
    write_attack_scores(tmp_path, "gone", 1, {g: np.zeros(3) for g in GROUPS})
    examples = [
        pd.DataFrame({"request": 1, "sample": np.arange(FORGET), "method": m, "epsilon": eps})
        for m, eps in (
            ("finetune", np.r_[rng.uniform(1, 3, FORGET - 5), np.full(5, 50.0)]),
            ("retrain", rng.uniform(0, 1.5, FORGET)),
            (CEILING, rng.uniform(0, 1.5, FORGET)),
        )
    ]
    pd.concat(examples).to_csv(tmp_path / "epsilon_examples.csv", index=False)
    pd.DataFrame({"method": METHODS, "bucket_limit": [1.0, 1.0]}).to_csv(tmp_path / "epsilon_summary.csv", index=False)
    return tmp_path


def _inlined(page: str, name: str) -> bytes:
    match = re.search(rf'<img alt="{re.escape(name)}" src="data:image/png;base64,([^"]+)">', page)
    assert match, f"{name} is not on the page"
    return base64.b64decode(match.group(1))


def test_report_draws_the_roc_curves_and_the_epsilon_histogram_on_the_page(tmp_path):
    folder = _folder(tmp_path / "received")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    page = write_report(str(folder), tmp_path / "report.html").read_text()
    attacks = page[page.index('<div id="attacks">') :]
    attacks = attacks[: attacks.index("</div>")]
    for name in (ROC_PLOT, EPSILON_PLOT):
        assert Image.open(io.BytesIO(_inlined(attacks, name))).size == PLOT_PX
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before  # a received folder is only read
    # the attack figures have a section of their own, and the grid's figures are still drawn beside them
    plots = page[page.index("<h2>Plots</h2>") : page.index("<h2>Attacks</h2>")]
    assert ROC_PLOT not in plots and 'alt="methods_kl_oracle.png"' in plots
    again = write_report(str(folder), tmp_path / "again.html").read_text()
    assert 'alt="methods_kl_oracle.png"' in again and f'alt="{ROC_PLOT}"' in again


def test_roc_scores_pool_the_runs_of_each_method_in_the_rows_only(tmp_path):
    folder = _folder(tmp_path)
    scores = attack_scores(ReceivedFolder(folder), _rows())
    assert sorted(scores) == list(METHODS)
    forget, test = scores["finetune"]
    assert len(forget) == FORGET * len(SEEDS) and len(test) == TEST * len(SEEDS)
    assert forget.mean() > scores["retrain"][0].mean() + 1


def test_no_attack_files_no_section_and_nothing_written(tmp_path):
    folder = _folder(tmp_path, attacks=False)
    page = write_report(str(folder), tmp_path / "report.html").read_text()
    assert "<h2>Attacks</h2>" not in page and ROC_PLOT not in page and EPSILON_PLOT not in page
    assert not (folder / "plots").exists()
