"""A wheel built from the repository, installed (not editable) into a fresh virtualenv, runs a preset and a sweep
from a folder outside the repository: presets, tuned defaults and search spaces travel inside the package, and
every default location (oracle cache, sweep folder, MLflow store) is found without the repository.

The new virtualenv gets the heavy dependencies (torch, Ray, MLflow, ...) from this test's own environment through
a folder of links named by a ``.pth`` file, leaving out everything of clutune's, so the only clutune it can
import is the wheel's.

A researcher's environment is the other case: a virtualenv that already holds its own torch (installed into it
from a wheel on disk) gets the wheel with a real dependency resolution, and keeps that torch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from clutune.docs_links import DOCS_URL

REPO = Path(__file__).resolve().parents[1]
SHORT = [
    "oracle.epochs=2",
    "scenario.requests=[{learn: {task: 0}}, {learn: {task: 1}}, {unlearn: {classes: [1]}}]",
    "device=cpu",
]
SKIP_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "runs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "mlflow.db", "mlruns"
)

PIP = [sys.executable, "-m", "pip"]
# Where a torch 2.14.1 wheel lies on disk (this machine's local package index); a test installs it on its own.
TORCH_WHEELS = Path(os.environ.get("CLUTUNE_TORCH_WHEELS", "/opt/pypi-more/files"))
TORCH = "2.14.1"

pytestmark = pytest.mark.slow  # a wheel build, an install and two real commands: about two minutes


class Installed:
    def __init__(self, root: Path, wheel: Path) -> None:
        self.root = root
        self.wheel = wheel
        self.python = root / "venv" / "bin" / "python"
        self.clutune = root / "venv" / "bin" / "clutune"
        self.work = root / "work"  # outside the repository, holding no config file
        self.home = root / "home"  # the defaults under ~ land here, not in the real home folder
        self.env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CLUTUNE_DATA_CACHE")}
        self.env.pop("MLFLOW_TRACKING_URI", None)
        self.env["HOME"] = str(self.home)

    def run(self, *argv: str, timeout: float = 480) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(a) for a in argv], cwd=self.work, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dist")
    source = root / "source"
    shutil.copytree(REPO, source, ignore=SKIP_SOURCE)  # pip builds in the tree: keep the repository clean
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", root / "dist", source],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = (root / "dist").glob("clutune-*.whl")
    return built


def new_venv(root: Path, leave_out: tuple[str, ...] = ()) -> Path:
    """A fresh virtualenv that sees this environment's packages through a folder of links (named by a ``.pth``
    file), except clutune's own and the distributions named in ``leave_out``; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root / "venv"], check=True, timeout=120)
    deps = root / "deps"
    deps.mkdir()
    versioned = tuple(f"{name}-" for name in leave_out)  # their .dist-info folders
    for site in {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}:
        for entry in Path(site).iterdir():
            if entry.name.startswith(("clutune", "__editable__")) or entry.suffix == ".pth":
                continue
            if entry.name in leave_out or (entry.name.startswith(versioned) and entry.suffix == ".dist-info"):
                continue
            if not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    python = root / "venv" / "bin" / "python"
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    venv_site = Path(subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip())
    (venv_site / "clutune-test-deps.pth").write_text(f"{deps}\n")
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    python = new_venv(root)
    subprocess.run(
        [*PIP, "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
        check=True,
        capture_output=True,
        timeout=300,
    )
    inst = Installed(root, wheel)
    inst.work.mkdir()
    inst.home.mkdir()
    return inst


def test_the_wheel_carries_presets_tuned_defaults_and_search_spaces(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for folder, pattern in (("presets", "*.yaml"), ("presets/best", "*.yaml"), ("search_spaces", "*.yaml")):
        shipped = {f"clutune/{folder}/{p.name}" for p in (REPO / "clutune" / folder).glob(pattern)}
        assert shipped and shipped <= names, shipped - names


def test_the_installed_clutune_is_the_wheel_not_the_repository(installed: Installed) -> None:
    code = (
        "import clutune; from clutune.core.config import CONFIG_DIR, BEST_DIR;"
        "from clutune.platform.search.search_space import default_space_path;"
        "print(clutune.__file__, CONFIG_DIR, BEST_DIR, default_space_path('ugclu'), sep='\\n')"
    )
    lines = installed.run(installed.python, "-c", code).stdout.split()
    venv = (installed.root / "venv").resolve()
    assert len(lines) == 4 and all(Path(line).resolve().is_relative_to(venv) for line in lines), lines


def test_a_preset_runs_from_a_folder_outside_the_repository(installed: Installed) -> None:
    fast = ["methods.finetune.epochs_per_learn=1", "methods.finetune.iters_per_unlearn=5"]
    argv = [installed.clutune, "run", "--config", "digits-agnostic-class", "--method", "finetune", "--out", "out"]
    installed.run(*argv, *(a for s in SHORT + fast for a in ("--set", s)))
    rows = pq.read_table(installed.work / "out" / "results.parquet").to_pylist()
    assert [r["kind"] for r in rows] == ["learn", "learn", "unlearn"]
    assert (installed.work / "mlflow.db").is_file()  # MLflow's default store: where the command runs
    oracles = installed.home / ".cache" / "clutune" / "oracles"  # the oracle cache's default: the home folder
    assert len([p for p in oracles.iterdir() if p.name != "leases"]) == 3


def test_a_sweep_finds_its_search_space_and_tuned_defaults_outside_the_repository(installed: Installed) -> None:
    argv = [installed.clutune, "sweep", "--config", "digits-agnostic-class", "--method", "ugclu", "--trials", "1"]
    argv += ["--concurrency", "1", "--num-cpus", "1", "--no-tracking"]
    fast = ["epochs_per_learn=1", "iters_per_unlearn=5"]
    out = installed.run(*argv, *(a for s in SHORT + fast for a in ("--set", s))).stdout
    assert "sweep finished" in out and "1 trials" in out
    assert "buffer_size = 200" in out  # the tuned default for ugclu on digits, from the installed package
    assert (installed.work / "runs" / "sweeps" / "digits-agnostic-class-ugclu").is_dir()  # the default folder


OWN_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the venv's own view, not this checkout


def _torch_seen_by(python: Path) -> tuple[str, str]:
    """The version and the file of the torch that ``python`` imports, read without importing it."""
    code = "import importlib.metadata as m, importlib.util as u; print(m.version('torch'), u.find_spec('torch').origin)"
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True, env=OWN_ENV).stdout.split()
    return out[0], out[1]


def test_installing_the_wheel_keeps_the_torch_already_there(tmp_path: Path, wheel: Path) -> None:
    """A researcher's environment with a working torch: pip resolves clutune's dependency ranges against it and
    leaves it in place (the dependencies are ranges, not pins). Everything else the wheel needs is already
    visible through the links, so pip has nothing to fetch."""
    found = sorted(TORCH_WHEELS.glob(f"torch-{TORCH}-*.whl"))
    if not found:
        pytest.skip(f"no torch {TORCH} wheel in {TORCH_WHEELS} (set CLUTUNE_TORCH_WHEELS)")
    python = new_venv(tmp_path, leave_out=("torch",))
    pip = [*PIP, "--python", python, "install", "--no-index", "-q"]
    subprocess.run([*pip, "--no-deps", found[0]], check=True, capture_output=True, timeout=600, env=OWN_ENV)
    before = _torch_seen_by(python)
    assert before[0] == TORCH and Path(before[1]).is_relative_to(tmp_path / "venv"), before

    done = subprocess.run([*pip, wheel], capture_output=True, text=True, timeout=600, env=OWN_ENV)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _torch_seen_by(python) == before  # same version, same files: pip did not replace it
    code = "import clutune, importlib.metadata as m; print(clutune.__file__, m.metadata('clutune')['Project-URL'])"
    # run from tmp_path: from the checkout, ``python -c`` would import the clutune folder in front of it
    out = subprocess.run([python, "-c", code], cwd=tmp_path, check=True, capture_output=True, text=True, env=OWN_ENV)
    out = out.stdout.split(" ", 1)
    assert Path(out[0]).is_relative_to(tmp_path / "venv")
    assert out[1].strip() == f"Documentation, {DOCS_URL}"
