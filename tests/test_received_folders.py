"""A folder someone sent is untrusted input to ``report``, ``dashboard`` and ``sync``: they read files only from
inside it, validate its record.json whole (one line naming the file and the key), and never open a store its
record names. A real ``clutune run`` writes the folder; each test gets its own copy and spoils it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import clutune
from clutune.cli import main
from clutune.errors import UserError

EVIL_TRACKING = "postgresql://bob:s3cret@evil.example/mlflow"
RECORD = Path("mlflow-record") / "record.json"


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """A tiny run's folder whose record names a study storage outside it (a sqlite file the sender chose)."""
    root = tmp_path_factory.mktemp("received")
    config = {
        "name": "received",
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [16]},
        "oracle": {"epochs": 1, "cache_dir": str(root / "oracles")},
        "scenario": {"requests": [{"learn": {"task": 0}}, {"learn": {"task": 1}}]},
        "sweep": {"study_storage": f"sqlite:///{root / 'elsewhere' / 'optuna.db'}"},
    }
    overrides = {"epochs_per_learn": 1, "buffer_size": 20}
    clutune.run(config, method="er", out=root / "run", overrides=overrides, tracking=False, log=lambda _: None)
    return root / "run"


@pytest.fixture
def folder(written, tmp_path) -> Path:
    """This test's own copy of the folder, as if just received."""
    return Path(shutil.copytree(written, tmp_path / "received"))


def _one_line(capsys) -> str:
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("clutune: error: ")
    return line


def _edit_record(folder: Path, edit) -> None:
    path = folder / RECORD
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))


def test_report_refuses_a_plot_linked_outside_the_folder_and_embeds_nothing(folder, tmp_path, capsys):
    secret = tmp_path / "home" / ".ssh" / "id_rsa"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(b"PRIVATE KEY do-not-embed")
    (folder / "plots").mkdir(exist_ok=True)
    (folder / "plots" / "innocent.png").symlink_to(secret)
    page = tmp_path / "page.html"
    assert main(["report", str(folder), "--out", str(page)]) == 2
    line = _one_line(capsys)
    assert "plots/innocent.png" in line and f"resolves to {secret}, outside" in line
    assert not page.exists()


def test_a_plot_folder_linked_to_the_root_of_the_disk_is_one_check(folder, tmp_path, capsys):
    shutil.rmtree(folder / "plots", ignore_errors=True)
    (folder / "plots").symlink_to("/")
    assert main(["report", str(folder), "--out", str(tmp_path / "page.html")]) == 2
    assert "plots resolves to /, outside" in _one_line(capsys)


def test_results_and_record_linked_outside_are_refused_by_report_and_sync(folder, tmp_path, capsys):
    outside = tmp_path / "outside.parquet"
    (folder / "results.parquet").rename(outside)
    (folder / "results.parquet").symlink_to(outside)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["report", str(folder), "--out", str(tmp_path / "page.html")]) == 2
    assert "results.parquet resolves to" in _one_line(capsys)
    record = folder / RECORD
    record.rename(tmp_path / "record.json")
    record.symlink_to(tmp_path / "record.json")
    assert main(["sync", str(folder), "--tracking-uri", uri]) == 2
    assert "record.json resolves to" in _one_line(capsys)
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store was opened


MALFORMED = {
    "truncated": (lambda text: text[: len(text) // 2], "not valid JSON"),
    "a list": (lambda text: "[1, 2]", "expected a JSON object, got list"),
    "not UTF-8": (lambda text: "\udcff", "not UTF-8 text"),
    "a text named ../": (
        lambda text: json.dumps({**json.loads(text), "texts": {"../../outside.json": "{}"}}),
        "key 'texts': '../../outside.json' must not contain a path separator",
    ),
    "an artifact folder with ..": (
        lambda text: json.dumps({**json.loads(text), "artifacts": [{"path": "x", "artifact_path": "../.."}]}),
        "key 'artifacts[0].artifact_path': '../..': a component must not be '..'",
    ),
    "a child that is a string": (
        lambda text: json.dumps({**json.loads(text), "children": {"t": "oops"}}),
        "key 'children.t': Input should be a valid dictionary",
    ),
    "a role that is no command": (
        lambda text: json.dumps({**json.loads(text), "role": "../../x"}),
        "key 'role': Input should be 'run', 'sweep', 'compare' or 'study'",
    ),
    "a study storage that is a number": (
        lambda text: json.dumps({**json.loads(text), "config": {"sweep": {"study_storage": 3}}}),
        "key 'config.sweep.study_storage'",
    ),
    "no experiment": (
        lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "experiment"}),
        "key 'experiment' is missing",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_record_is_one_line_naming_the_file_and_key_and_syncs_nothing(
    folder, tmp_path, capsys, free_port, case
):
    spoil, expected = MALFORMED[case]
    path = folder / RECORD
    text = spoil(path.read_text())
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    page = str(tmp_path / "page.html")
    for command in (["sync", str(folder), "--tracking-uri", uri], ["report", str(folder), "--out", page]):
        assert main(command) == 2, command
        line = _one_line(capsys)
        assert f"{path}:" in line and expected in line, line
    assert not (tmp_path / "mlflow.db").exists()  # nothing synced, not even the parent run
    with pytest.raises(UserError, match="record.json: "):
        clutune.dashboard(folder, port=free_port())


def test_report_and_dashboard_never_open_the_study_storage_a_record_names(written, folder, tmp_path, capsys, free_port):
    elsewhere = written.parent / "elsewhere"  # where the record's sqlite URL points (outside the folder)
    said: list[str] = []
    page = clutune.report(folder, out=tmp_path / "page.html", log=said.append)
    assert page.exists() and not elsewhere.exists()
    (line,) = said
    assert "record.json names study storage sqlite:///" in line
    assert line.endswith("not connecting: pass --study-storage to use it")
    # a dashboard of a folder with no journal of its own has nothing it may open: one line, no server
    assert main(["dashboard", str(folder), "--port", str(free_port())]) == 2
    assert "not connecting: pass --study-storage to use it" in _one_line(capsys)
    assert not elsewhere.exists()


def test_sync_says_it_does_not_connect_to_the_tracking_store_a_record_names(folder, tmp_path, monkeypatch):
    _edit_record(folder, lambda r: r.update(uri=EVIL_TRACKING.replace("s3cret", "***")))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    said: list[str] = []
    done = clutune.sync(folder, log=said.append)
    assert said == [
        "mlflow-record/record.json names tracking store postgresql://bob:***@evil.example/mlflow; "
        "not connecting: pass --tracking-uri to use it"
    ]
    assert done.runs_created == 1 and "evil.example" not in done.uri  # the default store took it
    said.clear()
    again = clutune.sync(folder, tracking_uri=done.uri, log=said.append)
    assert said == [] and again.runs_created == 0  # a store the user names is the user's choice: nothing to say
