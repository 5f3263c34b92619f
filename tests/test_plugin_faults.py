"""A plugin is foreign code clutune imports: a ``sys.exit(0)`` or a raised KeyboardInterrupt at its import is a
failed import (one line naming the package), not the end of clutune; a package claiming a built-in's name is
refused whichever name is looked up, naming both packages. Each package is real and small: a module and its
``.dist-info`` (METADATA, entry_points.txt) on a folder put on the path, as an installer leaves them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clutune.data import DATASETS
from clutune.errors import UserError
from clutune.models import MODELS

ROOT = Path(__file__).resolve().parents[1]


def _install(site: Path, dist: str, module: str, source: str, entry_points: dict[str, str]) -> Path:
    """A distribution ``dist`` with one module and its entry points, laid out as pip installs it."""
    site.mkdir(exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{dist.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n")
    lines = [f"[{group}]\n{name}\n" for group, name in entry_points.items()]
    (info / "entry_points.txt").write_text("".join(lines))
    return site


def _clutune(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}
    cmd = [sys.executable, "-m", "clutune.cli", *args]
    return subprocess.run(cmd, cwd=site, capture_output=True, text=True, env=env, timeout=300)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("clutune: error: ")
    return line


@pytest.mark.parametrize(
    ("raises", "shown"),
    [("import sys; sys.exit(0)", "SystemExit: 0"), ("raise KeyboardInterrupt", "KeyboardInterrupt")],
    ids=["sys.exit(0)", "KeyboardInterrupt"],
)
def test_a_plugin_that_exits_at_import_is_a_failed_import_not_an_exit_of_clutune(tmp_path, raises, shown):
    entry = {"clutune.methods": "quits = exits_at_import:M"}
    site = _install(tmp_path / "site", "clutune-exits", "exits_at_import", raises + "\n", entry)
    line = _one_error_line(_clutune(site, "check-method", "quits"))
    assert line == (
        "clutune: error: method 'quits' from package clutune-exits (entry point 'exits_at_import:M') "
        f"failed to import: {shown}"
    )


def test_a_plugin_claiming_a_built_in_method_is_refused_even_when_the_built_in_is_asked_for(tmp_path):
    source = "from clutune.clu.methods.er import ER\n"
    entry = {"clutune.methods": "er = claims_er:ER"}
    site = _install(tmp_path / "site", "clutune-claims-er", "claims_er", source, entry)
    line = _one_error_line(_clutune(site, "check-method", "er"))  # once silently clutune's er
    assert "method name 'er' is claimed twice: by clutune (built in) and by package clutune-claims-er" in line


@pytest.mark.parametrize(
    ("registry", "group", "name"), [(MODELS, "clutune.models", "mlp"), (DATASETS, "clutune.datasets", "digits")]
)
def test_a_plugin_claiming_a_built_in_model_or_dataset_is_refused(tmp_path, monkeypatch, registry, group, name):
    entry = {group: f"{name} = claims:build"}
    site = _install(tmp_path / "site", "clutune-claims", "claims", "def build(*a): pass\n", entry)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(registry, "_plugins", None)  # this process read the entry points before the package existed
    monkeypatch.setattr(registry, "_loaded", {})
    with pytest.raises(UserError, match=rf"name '{name}' is claimed twice: by clutune \(built in\) and by package "):
        registry.get(name)
