"""Browsing results: every command in MLflow (real sqlite), plots people read, the offline report, the export,
``clutune dashboard`` on loopback, and what a person sees in a real browser (Chromium driven by selenium). One
small store (a 2-trial sweep and a 2-method compare) serves them all."""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient
from PIL import Image

from clutune.cli import main
from clutune.platform.reports.plots import METHOD_PLOTS, PLOT_PX, RUN_PLOTS

N_REQUESTS = 4


def write_scenario(tiny_scenario, tmp: Path) -> Path:
    """The tiny scenario with its oracles and sweeps in ``tmp``, optimising two objectives."""
    sweep = {"storage_path": str(tmp / "sweeps"), "asha": False, "objectives": ["kl_oracle_all", "avg_gap"]}
    oracle = {"epochs": 3, "cache_dir": str(tmp / "oracles")}
    return tiny_scenario(tmp, "tiny-browse", oracle=oracle, sweep=sweep, file="tiny")


def assert_png(path: Path) -> None:
    """A valid PNG of the stated size with more than one colour (not a blank canvas)."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.size == PLOT_PX, (path, image.size)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [0, 0]) > 1, path


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id], max_results=1000)


@pytest.fixture(scope="module")
def store(local_ray, tmp_path_factory, tiny_scenario, fast_sets):
    """A finished 2-trial sweep and a 2-method compare, recorded in one sqlite store."""
    tmp = tmp_path_factory.mktemp("store")
    config = write_scenario(tiny_scenario, tmp)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    sweep = ["sweep", "--config", str(config), "--method", "ugclu", "--trials", "2", "--tracking-uri", uri]
    assert main(sweep + fast_sets) == 0
    compare = ["compare", "--config", str(config), "--methods", "ugclu,finetune", "--seeds", "0"]
    assert main(compare + ["--out", str(tmp / "compare"), "--tracking-uri", uri] + fast_sets) == 0
    return {"tmp": tmp, "uri": uri, "sweep": tmp / "sweeps" / "tiny-browse-ugclu", "compare": tmp / "compare"}


def test_run_records_one_mlflow_run_with_plots(tmp_path, monkeypatch, tiny_scenario, fast_sets):
    monkeypatch.chdir(tmp_path)
    config = write_scenario(tiny_scenario, tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "run"
    assert (
        main(
            ["run", "--config", str(config), "--method", "ugclu", "--out", str(out), "--tracking-uri", uri] + fast_sets
        )
        == 0
    )
    rows = pd.read_parquet(out / "results.parquet")
    (run,) = runs_of(uri, "tiny-browse")
    assert run.data.tags["clutune.role"] == "run" and run.info.status == "FINISHED"
    assert run.data.tags["clutune.trial_id"] == rows["run_id"].iloc[0]
    assert run.data.params["method"] == "ugclu" and run.data.params["oracle.epochs"] == "3"
    client = MlflowClient(uri)
    history = client.get_metric_history(run.info.run_id, "kl_oracle_all")
    assert [m.step for m in history] == list(range(N_REQUESTS))
    assert [m.value for m in history] == pytest.approx(rows["kl_oracle_all"].tolist())
    for t in range(5):  # the accuracy matrix's cells are in the results schema, and in MLflow
        assert f"acc_task_{t}" in rows and f"oracle_acc_task_{t}" in run.data.metrics
    folder = out / "plots" / rows["run_id"].iloc[0]
    for name in RUN_PLOTS:
        assert_png(folder / name)
    logged = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert logged == set(RUN_PLOTS)


def test_no_tracking_writes_results_and_plots_but_no_mlflow(tmp_path, monkeypatch, tiny_scenario, fast_sets):
    monkeypatch.chdir(tmp_path)
    config = write_scenario(tiny_scenario, tmp_path)
    out = tmp_path / "run"
    assert (
        main(["run", "--config", str(config), "--method", "ugclu", "--out", str(out), "--no-tracking"] + fast_sets) == 0
    )
    assert (out / "results.parquet").exists() and any((out / "plots").glob("*/accuracy_matrix.png"))
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_compare_and_sweep_record_parent_children_and_plots(store):
    uri, client = store["uri"], MlflowClient(store["uri"])
    runs = runs_of(uri, "tiny-browse")
    by_role: dict[str, list] = {}
    for r in runs:
        by_role.setdefault(r.data.tags.get("clutune.role"), []).append(r)
    assert len(by_role["sweep"]) == 1 and len(by_role["trial"]) == 2
    assert len(by_role["compare"]) == 1 and len(by_role["run"]) == 2
    compare_parent = by_role["compare"][0].info.run_id
    for child in by_role["run"]:
        assert child.data.tags["mlflow.parentRunId"] == compare_parent
        assert {"method", "seed"} <= set(child.data.params)
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "kl_oracle_all")]
        assert steps == list(range(N_REQUESTS))
        assert {Path(a.path).name for a in client.list_artifacts(child.info.run_id, "plots")} == set(RUN_PLOTS)
    parent_plots = {Path(a.path).name for a in client.list_artifacts(compare_parent, "plots")}
    assert set(METHOD_PLOTS) <= parent_plots
    for name in METHOD_PLOTS:
        assert_png(store["compare"] / "plots" / name)
    for png in (store["compare"] / "plots").glob("*/*.png"):
        assert_png(png)

    sweep_parent = by_role["sweep"][0].info.run_id
    html = {Path(a.path).name for a in client.list_artifacts(sweep_parent, "plots")}
    assert {"optuna_history.html", "optuna_parallel_coordinate.html", "optuna_pareto_front.html"} <= html
    page = (store["sweep"] / "plots" / "optuna_history.html").read_text()
    assert "<script" in page and 'src="http' not in page  # plotly.js inlined: opens offline
    root = {Path(a.path).name for a in client.list_artifacts(sweep_parent)}
    assert {"best_trials.md", "config.json", "search_space.json"} <= root
    for child in by_role["trial"]:
        assert any(a.path.endswith("accuracy_matrix.png") for a in _walk(client, child.info.run_id, "plots"))


def _walk(client: MlflowClient, run_id: str, path: str) -> list:
    out = []
    for a in client.list_artifacts(run_id, path):
        out += _walk(client, run_id, a.path) if a.is_dir else [a]
    return out


@pytest.mark.slow  # its store fixture is a compare and a sweep on Ray: `make test` runs it (docs/testing.md)
def test_export_reads_back_one_row_per_run_and_request(store, tmp_path):
    out = tmp_path / "export.parquet"
    assert main(["export", "--experiment", "tiny-browse", "--tracking-uri", store["uri"], "--out", str(out)]) == 0
    frame = pd.read_parquet(out)
    table = pq.read_table(out)
    assert table.num_rows == len(frame) == 4 * N_REQUESTS  # 2 sweep trials + 2 compare runs, 4 requests each
    assert not frame.duplicated(["run_id", "request"]).any()
    for column in ("run_id", "parent_run_id", "trial_id", "method", "seed", "request", "kind", "kl_oracle_all"):
        assert column in frame, column
    assert {"kl_oracle_remain", "acc_test", "gap_test", "mia_member_rate", "oracle_mia_efficacy"} <= set(frame)
    assert set(frame["kind"]) == {"learn", "unlearn"} and frame["request"].dtype == "int64"
    assert any(c.startswith("params.") for c in frame)
    compare = pd.read_parquet(store["compare"] / "results.parquet")
    ours = frame[frame["role"] == "run"].sort_values(["method", "request"])
    theirs = compare.sort_values(["method", "request"])
    assert ours["kl_oracle_all"].to_numpy() == pytest.approx(theirs["kl_oracle_all"].to_numpy())


@pytest.mark.slow  # its store fixture is a compare and a sweep on Ray: `make test` runs it (docs/testing.md)
def test_report_is_one_offline_page_with_the_table_plots_and_config(store, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(store["compare"]), "--out", str(out)]) == 0
    page = out.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no network request when opened
    assert page.count("data:image/png;base64,") == len(METHOD_PLOTS) + 2 * len(RUN_PLOTS)
    rows = pd.read_parquet(store["compare"] / "results.parquet")
    for method, frame in rows.groupby("method"):
        mean = frame["kl_oracle_all"].mean()
        cell = re.search(rf'<tr data-group="{method}">.*?data-metric="kl_oracle_all" data-mean="([^"]+)"', page)
        assert float(cell[1]) == pytest.approx(mean)
    assert '"epochs": 3' in page  # the config that produced it
    sweep_page = tmp_path / "sweep.html"
    assert main(["report", str(store["sweep"]), "--out", str(sweep_page)]) == 0
    assert "Optuna study" in sweep_page.read_text()


@pytest.mark.slow  # its store fixture is a compare and a sweep on Ray: `make test` runs it (docs/testing.md)
def test_dashboard_answers_on_loopback_only(store, free_port):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "clutune.cli", "dashboard", str(store["sweep"]), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        body = b""
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    body = r.read()
                    break
            except OSError:
                time.sleep(0.2)
        assert b"tiny-browse-ugclu" in body
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout
        assert listening.strip() and all("127.0.0.1:" in line for line in listening.splitlines()), listening
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_dashboard_refuses_a_folder_that_is_not_a_sweep(tmp_path, capsys):
    assert main(["dashboard", str(tmp_path)]) == 2
    assert "not a sweep" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- in a real browser
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")  # Debian's, never a download
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,900",
]
SPA_WAIT_S = 60  # MLflow's UI is a heavy single-page app; the test machine is shared and loaded
DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Headless Chromium on a fresh profile. Without Chromium or its driver the test fails, saying what to install:
    a browser check that quietly skips would pass having checked nothing."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed: the end-to-end browser test needs Debian's Chromium "
            "(apt-get install -y chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)  # without it selenium-manager tries to download a browser
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver: Any, condition: Any, what: str) -> Any:
    """An explicit wait that outlives React re-rendering (stale elements) and says what never appeared."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, SPA_WAIT_S, poll_frequency=0.5, ignored_exceptions=ignored).until(
        condition, f"after {SPA_WAIT_S} s: {what}"
    )


def _close_assistant(driver: Any) -> None:
    """MLflow 3.17 opens its chat panel beside the page; a screenshot shows the page as a person reads it."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, '[data-component-id="mlflow.assistant.chat_panel.close"]'):
        if button.is_displayed():
            driver.execute_script("arguments[0].click()", button)


def _ui_address(proc: subprocess.Popen, log: Path) -> str:
    """The address ``clutune ui`` prints once the server answers (the log is a file: MLflow's access log keeps
    writing to stdout, and an unread pipe would stall the server)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = re.search(r"MLflow UI ready: (\S+)", log.read_text(errors="replace"))
        if found:
            return found[1]
        assert proc.poll() is None, f"clutune ui exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
        time.sleep(0.3)
    raise AssertionError(f"clutune ui printed no address in 180 s: {log.read_text(errors='replace')[-2000:]}")


def _stop_group(proc: subprocess.Popen) -> None:
    """``clutune ui`` and the ``mlflow server`` it started (and its worker) share one session: stop them all."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # a server child that outlived the CLI
    except ProcessLookupError:
        pass


@pytest.mark.slow  # a real browser (headless Chromium)
def test_browser_shows_runs_charts_artifacts_and_the_report(store, browser, tmp_path, free_port):
    from selenium.webdriver.common.by import By

    shots = tmp_path / "screenshots"
    shots.mkdir()
    print(f"screenshots in {shots}")
    client = MlflowClient(store["uri"])
    experiment_id = client.get_experiment_by_name("tiny-browse").experiment_id
    runs = runs_of(store["uri"], "tiny-browse")
    parents = [r for r in runs if r.data.tags.get("clutune.role") in ("sweep", "compare")]
    assert len(parents) == 2
    children = {
        p.info.run_id: [r for r in runs if r.data.tags.get("mlflow.parentRunId") == p.info.run_id] for p in parents
    }
    trial = next(r for r in runs if r.data.tags.get("clutune.role") == "trial")

    port = free_port()
    log = tmp_path / "ui.log"
    with log.open("w") as out:
        cmd = [sys.executable, "-m", "clutune.cli", "ui", "--no-browser", "--port", str(port)]
        ui = subprocess.Popen(
            cmd + ["--tracking-uri", store["uri"]], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        address = _ui_address(ui, log)
        assert address == f"http://127.0.0.1:{port}/#/experiments/{experiment_id}/runs", address
        base = address.split("#")[0]

        # the runs table: both parents, then (expanded) each parent's child runs
        browser.get(address)
        link = "a[href$='/runs/{}']"
        for parent in parents:
            _wait(
                browser,
                lambda d, p=parent: d.find_element(By.CSS_SELECTOR, link.format(p.info.run_id)),
                parent.info.run_name,
            )
        _close_assistant(browser)
        for parent in parents:
            if all(
                browser.find_elements(By.CSS_SELECTOR, link.format(c.info.run_id)) for c in children[parent.info.run_id]
            ):
                continue  # already expanded
            name_cell = browser.find_element(By.CSS_SELECTOR, link.format(parent.info.run_id))
            expand = name_cell.find_element(By.XPATH, "./ancestor::div[@role='gridcell']//button")
            browser.execute_script("arguments[0].click()", expand)
        for parent in parents:
            assert len(children[parent.info.run_id]) == 2
            for child in children[parent.info.run_id]:
                _wait(
                    browser,
                    lambda d, c=child: d.find_element(By.CSS_SELECTOR, link.format(c.info.run_id)).is_displayed(),
                    f"child run {child.info.run_name} of {parent.info.run_name} in the runs table",
                )
        _wait(browser, lambda d: f"{len(runs)} matching runs" in d.find_element(By.TAG_NAME, "body").text, "run count")
        browser.save_screenshot(str(shots / "runs-table.png"))

        # a child run's model metrics: the chart of kl_oracle_all, drawn (a plotly line through its requests)
        browser.get(f"{base}#/experiments/{experiment_id}/runs/{trial.info.run_id}/model-metrics")
        search = _wait(
            browser,
            lambda d: d.find_element(By.CSS_SELECTOR, "input[placeholder='Search metric charts']"),
            "chart search",
        )
        search.send_keys("kl_oracle_all")
        card = "//div[@data-testid='experiment-view-compare-runs-card'][.//h4[@title='kl_oracle_all']]"
        line = _wait(
            browser,
            lambda d: d.find_element(By.XPATH, card).find_element(
                By.CSS_SELECTOR, ".js-plotly-plot svg.main-svg path.js-line"
            ),
            "the kl_oracle_all chart's line",
        )
        points = len(re.findall(r"[ML]", line.get_attribute("d") or ""))
        assert points >= 2, line.get_attribute("d")  # a line, not an empty frame (plotly may merge collinear points)
        _close_assistant(browser)
        browser.save_screenshot(str(shots / "kl-oracle-chart.png"))

        # the same run's accuracy matrix, as the artifact view shows it: the image loaded, at the size it was drawn
        browser.get(f"{base}#/experiments/{experiment_id}/runs/{trial.info.run_id}/artifacts/plots/accuracy_matrix.png")
        image = _wait(
            browser,
            lambda d: d.find_element(By.CSS_SELECTOR, "img[alt='plots/accuracy_matrix.png']"),
            "accuracy matrix",
        )
        size = _wait(
            browser,
            lambda d: d.execute_script(
                "var i = arguments[0]; return i.complete && [i.naturalWidth, i.naturalHeight]", image
            ),
            "the accuracy matrix image loaded",
        )
        assert tuple(size) == PLOT_PX, size
        _close_assistant(browser)
        time.sleep(0.5)  # the panel's closing transition
        browser.save_screenshot(str(shots / "accuracy-matrix.png"))
    finally:
        _stop_group(ui)

    # the offline report from a file:// URL: every cell's number is the results' (mean over requests, over seeds)
    report = tmp_path / "report.html"
    assert main(["report", str(store["compare"]), "--out", str(report)]) == 0
    browser.get(report.as_uri())
    _wait(browser, lambda d: d.find_element(By.ID, "comparison"), "the report's table")
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#comparison td[data-metric]')].map(td => "
        "[td.parentElement.dataset.group, td.dataset.metric, td.dataset.mean, td.innerText])"
    )
    rows = pd.read_parquet(store["compare"] / "results.parquet")
    expected = rows.groupby(["method", "run_id"]).mean(numeric_only=True).groupby("method").mean()
    assert {group for group, *_ in cells} == set(rows["method"]) and len(cells) > 2 * 5
    for group, metric, mean, text in cells:
        want = float(expected.loc[group, metric])
        if math.isnan(want):
            assert mean == "nan" and text == "nan", (group, metric, mean, text)
        else:
            assert float(mean) == pytest.approx(want, rel=1e-12, abs=1e-12), (group, metric)
            assert text == f"{want:.4g}", (group, metric, text)  # one seed: no interval, never "± 0", no "(n=1)"
    browser.save_screenshot(str(shots / "report.png"))

    if os.environ.get("CLUTUNE_SCREENSHOTS") == "docs":  # README's images: real UI screenshots, as a person sees them
        for name in ("runs-table.png", "accuracy-matrix.png"):
            shutil.copyfile(shots / name, DOCS / name)
