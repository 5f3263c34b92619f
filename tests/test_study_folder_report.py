"""The report of a real study folder holds its findings: every figure the folder holds (curves.png, the plots of
each run and of the methods), each found in the page by the file it came from, and the drift tables of
summary.md, cell for cell. The page's tables scroll within their column rather than run off a laptop screen."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from clutune.cli import main
from clutune.platform.reports.report import write_report

REQUESTS = [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"classes": [1]}}, {"learn": {"task": 2}}]


def _study(tmp_path: Path, tiny_scenario, fast_sets: list[str]) -> Path:
    oracle = {"epochs": 2, "cache_dir": str(tmp_path / "oracles"), "policy": "every_k", "every": 2}
    config = tiny_scenario(tmp_path, "tiny-study", oracle=oracle, requests=REQUESTS, hidden=16)
    out = tmp_path / "study"
    argv = ["study", "--config", str(config), "--methods", "finetune,er", "--seeds", "0", "--out", str(out)]
    assert main([*argv, "--no-tracking", *fast_sets]) == 0
    return out


@pytest.mark.slow  # a whole study on Ray: `make test` runs it (docs/testing.md)
def test_a_study_report_holds_every_figure_of_its_folder_and_the_drift_tables(
    local_ray, tmp_path, tiny_scenario, fast_sets
):
    folder = _study(tmp_path, tiny_scenario, fast_sets)
    page = write_report(str(folder), tmp_path / "report.html").read_text()

    figures = sorted(p for p in folder.rglob("*.png") if "tune" not in p.relative_to(folder).parts)
    names = {p.relative_to(folder).as_posix() for p in figures}
    assert "curves.png" in names and any(n.startswith("plots/methods_") for n in names), names
    shown = dict(re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page))
    assert set(shown) == names  # every figure of the folder, and nothing else
    for path in figures:
        assert base64.b64decode(shown[path.relative_to(folder).as_posix()]) == path.read_bytes()

    summary = (folder / "summary.md").read_text().split("## Final values and drift per method")[1]
    for method in ("er", "finetune"):
        block = summary.split(f"### {method}")[1].split("###")[0]
        md_rows = [line.strip("| ").split(" | ") for line in block.splitlines() if line.startswith("| ")][1:]
        table = re.search(rf'<table class="drift" data-method="{method}">(.*?)</table>', page, re.S)[1]
        html_rows = [re.findall(r"<td>([^<]*)</td>", row) for row in table.split("<tr>")[2:]]
        assert md_rows and [[c.replace("&#39;", "'") for c in r] for r in html_rows] == md_rows
    assert "(n=" not in page.split("<h2>Config</h2>")[0]  # one seed: plain values, no (n=1)

    style = re.search(r"<style>(.*?)</style>", page, re.S)[1]
    assert re.search(r"\.table-wrap\{[^}]*overflow-x:auto", style)
    wrapped = re.findall(r'<div class="table-wrap"><table (id="comparison"|class="drift")', page)
    assert wrapped.count('id="comparison"') == 1 and wrapped.count('class="drift"') == 2
