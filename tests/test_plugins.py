"""Plugins by entry points, end to end: the worked example package (examples/clutune-plugin-example) is copied,
installed with pip into a folder of its own, and its method, model and dataset reader are used by
`clutune check-method`, `clutune compare` and a 2-trial `clutune sweep` whose trials run on Ray workers. Broken
packages get one line naming them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.slow  # every test uses the plugin packages pip installs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "clutune-plugin-example"

CONFIG = """\
name: plugin-example
seed: 0
dataset: {name: example_blobs, options: {classes: 4, per_class: 40, features: 8}}
model: {name: example_mlp, options: {width: 32, depth: 1}}
oracle: {epochs: 3, lr: 0.05, batch_size: 32}
probe_size: 0
scenario:
  classes_per_task: 2
  requests:
    - learn: {task: 0}
    - learn: {task: 1}
    - unlearn: {classes: [1]}
"""

BROKEN = {
    "pyproject.toml": """\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "clutune-broken-plugin"
        version = "0.1.0"

        [project.entry-points."clutune.methods"]
        broken_import = "broken_import:BrokenMethod"
        wrong_type = "wrong_type:NOT_A_METHOD"

        [tool.setuptools]
        py-modules = ["broken_import", "wrong_type"]
        """,
    "broken_import.py": "import a_module_that_is_not_installed  # noqa\n",
    "wrong_type.py": "NOT_A_METHOD = 3\n",
}

CLAIMS_ER = {
    "pyproject.toml": """\
        [build-system]
        requires = ["setuptools>=68"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "clutune-claims-er"
        version = "0.1.0"

        [project.entry-points."clutune.methods"]
        er = "claims_er:ER"

        [tool.setuptools]
        py-modules = ["claims_er"]
        """,
    "claims_er.py": "from clutune.clu.methods.er import ER  # noqa\n",
}


def _write_package(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text))
    return folder


def _pip_install(target: Path, *packages: Path) -> None:
    """A real pip install into ``target`` alone: the shared environment is left as it is."""
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    done = subprocess.run([*cmd, "--target", str(target), *map(str, packages)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def sites(tmp_path_factory):
    """site: the example and a broken package; site2: a package claiming the built-in name er."""
    tmp = tmp_path_factory.mktemp("plugins")
    example = tmp / "clutune-plugin-example"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    broken = _write_package(tmp / "broken", BROKEN)
    claims = _write_package(tmp / "claims", CLAIMS_ER)
    _pip_install(tmp / "site", example, broken)
    _pip_install(tmp / "site2", claims)
    return tmp


def _clutune(tmp: Path, *args: str, extra_site: bool = False, timeout: int = 900) -> subprocess.CompletedProcess:
    paths = [tmp / "site", *([tmp / "site2"] if extra_site else []), ROOT]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths))}
    cmd = [sys.executable, "-m", "clutune.cli", *args]
    return subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, env=env, timeout=timeout)


def _one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clutune: error: "), done.stderr
    return lines[0]


def test_example_method_passes_check_method(sites):
    done = _clutune(sites, "check-method", "example_er")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "method example_er (package clutune-plugin-example)" in done.stdout
    assert "all checks passed" in done.stdout


def test_compare_and_sweep_use_the_plugin_on_ray_workers(sites):
    (sites / "cfg.yaml").write_text(CONFIG)
    common = ["--config", "cfg.yaml", "--no-tracking", "--num-cpus", "2"]
    common += ["--set", f"oracle.cache_dir={sites / 'oracles'}", "--set", f"sweep.storage_path={sites / 'sweeps'}"]

    compared = _clutune(sites, "compare", *common, "--methods", "example_er,er", "--seeds", "0", "--out", "c")
    assert compared.returncode == 0, compared.stdout[-3000:] + compared.stderr[-3000:]
    rows = pq.read_table(sites / "c" / "results.parquet").to_pandas()
    assert sorted(rows["method"].unique()) == ["er", "example_er"] and len(rows) == 6
    # The plugin's tuned defaults for example_blobs apply: 5 epochs over task 0's 80 samples at request 0.
    first = rows[(rows["method"] == "example_er") & (rows["request"] == 0)]
    assert int(first["samples_processed"].iloc[0]) == 5 * 80

    swept = _clutune(sites, "sweep", *common, "--method", "example_er", "--trials", "2", "--set", "sweep.asha=false")
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    assert "2 trials" in swept.stdout
    trials = (sites / "sweeps" / "plugin-example-example_er" / "trials.csv").read_text()
    assert "repair_iters" in trials  # the search space the plugin ships was searched


def test_plugin_tuned_defaults_and_search_space_are_read_first(sites):
    code = (
        "from clutune.core.config import best_defaults;"
        "from clutune.platform.search.search_space import default_space_path;"
        "print(best_defaults('example_er', 'example_blobs')['repair_iters']);"
        "print(default_space_path('example_er'));"
        "print(best_defaults('example_er', 'digits'))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [sites / "site", ROOT]))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    repair, space, digits = out.strip().splitlines()
    assert repair == "10"
    assert space == str(sites / "site" / "clutune_plugin_example" / "search_space.yaml")
    assert digits == "{}"  # no tuned file for digits: the dataclass defaults apply


def test_a_broken_entry_point_is_one_line_naming_the_package(sites):
    line = _one_error_line(_clutune(sites, "check-method", "broken_import"))
    assert "package clutune-broken-plugin" in line and "failed to import" in line
    assert "No module named 'a_module_that_is_not_installed'" in line
    line = _one_error_line(_clutune(sites, "check-method", "wrong_type"))
    assert "package clutune-broken-plugin" in line and "not a subclass of clutune.clu.methods.Method" in line


def test_a_name_claimed_twice_is_one_line_naming_both(sites):
    line = _one_error_line(_clutune(sites, "check-method", "example_er", extra_site=True))
    assert "method name 'er' is claimed twice: by clutune (built in) and by package clutune-claims-er" in line
