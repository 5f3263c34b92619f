"""Private parts of Ray, Optuna, torch, MLflow, pyarrow and scikit-learn are reached through the internals
modules only, each of which refuses a release whose internals were not read.

The guard parses every module of the package and the benchmarks: an import of a private module or name of
those libraries, an attribute chain with a private name on one of them, or a private attribute that clutune
itself never defines (so it belongs to a library object, as a restored Tuner's ``_local_tuner``) is an
offence anywhere but in the internals modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import clutune
from clutune.clu.torch_internals import TESTED_TORCH, check_torch_version
from clutune.errors import UserError
from clutune.platform.internals import TESTED_OPTUNA, TESTED_RAY, check_optuna_version, check_ray_version

LIBRARIES = {"ray", "optuna", "torch", "mlflow", "pyarrow", "sklearn"}
PACKAGE = Path(clutune.__file__).parent
ROOT = PACKAGE.parent
ALLOWED = {  # module -> the libraries whose private parts it may reach
    "clutune/clu/torch_internals.py": {"torch"},
    "clutune/platform/internals.py": LIBRARIES - {"torch"},
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _sources() -> dict[str, str]:
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    return {p.relative_to(ROOT).as_posix(): p.read_text() for p in sorted(files)}


def defined_private_names(sources: list[str]) -> set[str]:
    """Every private name clutune defines itself: functions, classes, variables, attributes, parameters."""
    names: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
    return {n for n in names if _private(n)}


def offences(source: str, own: set[str]) -> list[tuple[int, str, str | None]]:
    """(line, what, library or None when unknown) for each reach into a library's private parts in ``source``."""
    tree = ast.parse(source)
    bound: dict[str, str] = {}  # local name -> the top-level package it was imported from
    found: list[tuple[int, str, str | None]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                bound[alias.asname or top] = top
                if top in LIBRARIES and any(_private(p) for p in alias.name.split(".")):
                    found.append((node.lineno, f"import {alias.name}", top))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            for alias in node.names:
                bound[alias.asname or alias.name] = top
                parts = [*node.module.split("."), alias.name]
                if top in LIBRARIES and any(_private(p) for p in parts):
                    found.append((node.lineno, f"from {node.module} import {alias.name}", top))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr)):
            continue
        root = node.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if not isinstance(root, ast.Name) or root.id in ("self", "cls"):
            continue
        library = bound.get(root.id)
        if library in LIBRARIES:
            found.append((node.lineno, f"{ast.unparse(node)}", library))
        elif library is None and node.attr not in own:
            found.append((node.lineno, f"{ast.unparse(node)} (a private attribute clutune does not define)", None))
    return found


def test_no_module_but_the_internals_reaches_into_private_library_parts():
    sources = _sources()
    own = defined_private_names(list(sources.values()))
    bad = []
    for path, source in sources.items():
        allowed = ALLOWED.get(path, set())
        for line, what, library in offences(source, own):
            if library not in allowed and not (library is None and allowed):
                bad.append(f"{path}:{line}: {what}")
    assert bad == []
    for path in ALLOWED:
        assert path in sources and offences(sources[path], own), f"{path} no longer holds any private use"


@pytest.mark.parametrize(
    "source",
    [
        "import torch._dynamo",
        "from torch._dynamo.callback import callback_handler",
        "from ray._private import services",
        "from optuna import _hypervolume",
        "import sklearn.utils._param_validation as checks",
        "import torch\ntorch._C._get_tracing_state()",
        "import mlflow as ml\nml.tracking._tracking_service",
        "from pyarrow import fs\nfs._resolve_filesystem_and_path('x')",
        "def f(tuner):\n    return tuner._local_tuner",
    ],
)
def test_the_guard_sees_each_way_in(source):
    assert offences(source, own=set())


@pytest.mark.parametrize(
    "source",
    [
        "import torch\ntorch.__version__",
        "from torch import nn\nnn.Module",
        "import numpy._core as c",
        "class A:\n    def f(self):\n        return self._x",
        "def f(run):\n    return run._own",
    ],
)
def test_the_guard_lets_public_and_own_names_pass(source):
    assert offences(source, own={"_own"}) == []


def test_the_installed_releases_are_the_ones_read():
    check_ray_version()
    check_ray_version(f"{TESTED_RAY}.3")
    check_optuna_version()
    check_optuna_version(f"{TESTED_OPTUNA}.9.1")
    check_torch_version()
    check_torch_version(f"{TESTED_TORCH}.0+cpu")


@pytest.mark.parametrize("version", ["2.61.0", "3.0.0", "2.6.0"])
def test_another_ray_release_fails_in_one_line_naming_the_module(version):
    with pytest.raises(UserError, match=r"clutune/platform/internals\.py") as caught:
        check_ray_version(version)
    assert "\n" not in str(caught.value) and version in str(caught.value)


@pytest.mark.parametrize("version", ["4.6.0", "6.0.0"])
def test_another_optuna_release_fails_in_one_line_naming_the_module(version):
    with pytest.raises(UserError, match=r"clutune/platform/internals\.py") as caught:
        check_optuna_version(version)
    assert "\n" not in str(caught.value) and version in str(caught.value)


@pytest.mark.parametrize("version", ["2.13.0", "2.15.0+cu130", "3.0.0"])
def test_another_torch_release_fails_in_one_line_naming_the_module(version):
    with pytest.raises(RuntimeError, match=r"clutune/clu/torch_internals\.py") as caught:
        check_torch_version(version)
    assert "\n" not in str(caught.value) and version in str(caught.value)
