"""Every function of the Python API refuses every wrong type or value of its arguments with a one-line UserError
naming the keyword, before anything is written: no output folder, no ``./mlflow.db``, no cache. Each case is
one function with valid arguments but one; the cases that once got through are marked in the list."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from recipes import tiny_config

import clutune
from clutune.errors import UserError

CONFIG = tiny_config("api-args")


def _quiet(line: str) -> None:
    del line


def _valid(name: str, root: Path) -> dict[str, Any]:
    """Arguments each function would run with: a case replaces one of them."""
    config, out = root / "config.yaml", root / "out"
    runs = {"config": config, "tracking": False, "log": _quiet, "overrides": {"oracle.cache_dir": str(root / "c")}}
    return {
        "run": {**runs, "method": "finetune", "out": out},
        "compare": {**runs, "methods": ["finetune"], "out": out},
        "study": {**runs, "methods": ["finetune"], "out": out},
        "sweep": {**runs, "method": "finetune", "trials": 1},
        "aggregate": {"folders": [root / "a"], "out": out},
        "oracles": {"config": config, "log": _quiet, "overrides": {"oracle.cache_dir": str(root / "c")}},
        "report": {"source": root / "a", "out": root / "r.html"},
        "export": {"experiment": "x", "out": root / "x.parquet", "tracking_uri": f"sqlite:///{root / 'no.db'}"},
        "sync": {"source": root / "a", "tracking_uri": f"sqlite:///{root / 'no.db'}"},
        "check_method": {"method": "finetune"},
        "ui": {"log": _quiet, "browser": False},
        "dashboard": {"sweep_dir": root / "a", "log": _quiet},
    }[name]


# (function, the one argument that is wrong, its value, what the line says). "was:" marks a call that once ran,
# or raised TypeError or ValueError.
CASES = [
    *[("run", "out", v, "out=") for v in (None, "", "  ", 3)],  # was: out=None ran into ./None
    *[("run", "seed", v, "seed") for v in (-1, 2**32, "3", True, 1.5)],  # was: seed=-1 accepted
    ("run", "method", None, "method=None: expected a string"),
    ("run", "method", "", "method='': expected a non-empty string"),
    ("run", "config", None, "config=None"),
    ("run", "config", 42, "config=42"),
    ("run", "config", "", "config='': expected a non-empty path"),
    ("run", "overrides", "oracle.epochs=2", "overrides='oracle.epochs=2': expected a mapping or a list"),
    ("run", "overrides", [1], "overrides item 1"),
    ("run", "overrides", ["oracle.epochs"], "overrides item 'oracle.epochs'"),
    ("run", "overrides", {1: 2}, "overrides key 1"),
    ("run", "overrides", 5, "overrides=5"),
    ("run", "save_predictions", "yes", "save_predictions='yes': expected True or False"),
    ("run", "overwrite", 1, "overwrite=1: expected True or False"),
    ("run", "tracking", "no", "tracking='no'"),
    ("run", "tracking_uri", 3, "tracking_uri=3"),
    ("run", "tracking_uri", "", "tracking_uri=''"),
    ("run", "log", "print", "log='print': expected a function"),
    *[("compare", "seeds", v, "seeds") for v in ([-1], "3", 3, [], [True], [2**32], ["0"])],
    *[("compare", "methods", v, "methods") for v in ("er", [], [3], None, [""])],
    *[("compare", "out", v, "out=") for v in (None, "", 7)],
    ("compare", "concurrency", 0, "concurrency=0"),
    ("compare", "concurrency", "2", "concurrency='2'"),
    ("compare", "num_cpus", 0, "num_cpus=0"),
    ("compare", "address", 3, "address=3"),
    ("compare", "resume", "y", "resume='y'"),
    ("compare", "overwrite", None, "overwrite=None"),
    ("study", "seeds", [-1], "seeds"),
    ("study", "out", None, "out=None"),
    ("study", "methods", "er", "methods='er'"),
    *[("sweep", "trials", v, "trials") for v in ("3", 0, -1, True, 1.5, None)],  # was: trials="3" a TypeError
    ("sweep", "seed", -1, "seed"),
    ("sweep", "space", 3, "space=3"),
    ("sweep", "space", "", "space=''"),
    ("sweep", "concurrency", "2", "concurrency='2'"),
    ("sweep", "concurrency", 0, "concurrency=0"),
    ("sweep", "scheduler", "bogus", "scheduler='bogus': expected one of asha, pbt"),
    ("sweep", "scheduler", 3, "scheduler=3"),
    ("sweep", "resume", "no", "resume='no'"),
    ("sweep", "num_cpus", "2", "num_cpus='2'"),
    ("sweep", "config", [1], "config=[1]"),
    *[("aggregate", "folders", v, "folders") for v in ("a", [], [None], [""], 3)],
    ("aggregate", "out", "", "out=''"),
    ("oracles", "num_cpus", "2", "num_cpus='2'"),
    ("oracles", "address", 5, "address=5"),
    ("oracles", "cache_dir", "", "cache_dir=''"),
    ("oracles", "overrides", "a=1", "overrides='a=1'"),
    ("oracles", "config", 4.5, "config=4.5"),
    ("oracles", "log", None, "log=None"),
    *[("report", "out", v, "out=") for v in (None, "")],
    ("report", "source", None, "source=None"),
    ("report", "tracking_uri", 3, "tracking_uri=3"),
    ("export", "experiment", None, "experiment=None"),
    ("export", "experiment", "", "experiment=''"),
    ("export", "out", None, "out=None"),
    ("export", "tracking_uri", "", "tracking_uri=''"),
    ("sync", "source", None, "source=None"),
    ("sync", "source", "", "source=''"),
    ("sync", "tracking_uri", 5, "tracking_uri=5"),
    *[("check_method", "seed", v, "seed") for v in (-1, "0", 2**40, None)],
    ("check_method", "method", 3, "method=3"),
    ("check_method", "method", "", "method=''"),
    ("ui", "port", "5000", "port='5000'"),
    ("ui", "host", 3, "host=3"),
    ("ui", "tracking_uri", 5, "tracking_uri=5"),
    ("ui", "log", 0, "log=0"),
    ("dashboard", "sweep_dir", None, "sweep_dir=None"),
    ("dashboard", "sweep_dir", "", "sweep_dir=''"),
    ("dashboard", "port", None, "port=None"),
    ("dashboard", "log", "x", "log='x'"),
]


@pytest.mark.parametrize(("function", "argument", "value", "message"), CASES, ids=lambda v: repr(v)[:24])
def test_every_api_function_refuses_a_wrong_argument_in_one_line_before_writing(
    tmp_path, monkeypatch, function, argument, value, message
):
    root = tmp_path / "root"
    root.mkdir()
    (root / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    kwargs = {**_valid(function, root), argument: value}
    with pytest.raises(UserError) as refused:
        getattr(clutune, function)(**kwargs)
    assert message in str(refused.value) and len(str(refused.value).splitlines()) == 1, str(refused.value)
    assert list(cwd.iterdir()) == [] and sorted(p.name for p in root.iterdir()) == ["config.yaml"]


def test_paths_and_set_strings_are_taken_where_a_string_and_a_mapping_are(tmp_path, monkeypatch):
    """The other side of the checks: a Path for the config and the folder, ``--set`` strings for the overrides."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    monkeypatch.chdir(tmp_path)
    result = clutune.run(
        tmp_path / "config.yaml",
        method="finetune",
        out=tmp_path / "out",
        seed=2**32 - 1,
        overrides=[f"oracle.cache_dir={tmp_path / 'c'}", "probe_size=0"],
        tracking=False,
        log=_quiet,
    )
    assert len(result.rows) == 2 and (tmp_path / "out" / "results.parquet").exists()
