"""The method-author API is documented: every public symbol a method's code can touch (the contract, the request,
the data door, the buffer and the helpers) has its own docstring and a place on the Reference page."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AUTHOR_MODULES = (
    "clutune.clu.methods.base",
    "clutune.clu.access",
    "clutune.clu.buffer",
    "clutune.clu.methods.replay",
    "clutune.clu.training",
    "clutune.clu.batches",
)
AUTHOR_CLASSES = ("clutune.core.scenarios.Request",)  # what a method receives from a module it need not read


def _members(path: str, cls: type) -> Iterator[tuple[str, object]]:
    yield path, cls
    for attr, member in vars(cls).items():
        if not attr.startswith("_") and (inspect.isfunction(member) or isinstance(member, property)):
            yield f"{path}.{attr}", member


def author_symbols() -> Iterator[tuple[str, object]]:
    for name in AUTHOR_MODULES:
        module = importlib.import_module(name)
        for attr, obj in vars(module).items():
            if attr.startswith("_") or getattr(obj, "__module__", None) != name:
                continue
            if inspect.isclass(obj):
                yield from _members(f"{name}.{attr}", obj)
            elif inspect.isfunction(obj):
                yield f"{name}.{attr}", obj
    for path in AUTHOR_CLASSES:
        module, attr = path.rsplit(".", 1)
        yield from _members(path, getattr(importlib.import_module(module), attr))


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> str:
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return (site / "reference.html").read_text()


def test_the_list_covers_the_whole_api() -> None:
    names = {path for path, _ in author_symbols()}
    for expected in (
        "clutune.clu.methods.base.Method.learn",
        "clutune.clu.methods.base.hparam",
        "clutune.core.scenarios.Request",
        "clutune.clu.buffer.ReservoirBuffer.add",
        "clutune.clu.buffer.ReservoirBuffer.sample",
        "clutune.clu.access.TrainAccess.fetch",
        "clutune.clu.methods.replay.supervised_epochs",
        "clutune.clu.methods.replay.replay_batch",
        "clutune.clu.methods.replay.gradient_ascent",
    ):
        assert expected in names


def test_every_method_author_symbol_has_its_own_docstring() -> None:
    bare = [path for path, obj in author_symbols() if not (obj.__doc__ or "").strip()]
    assert not bare, f"method-author symbols without a docstring: {bare}"


def test_every_method_author_symbol_is_on_the_reference_page(reference: str) -> None:
    missing = [path for path, _ in author_symbols() if f'id="{path}"' not in reference]
    assert not missing, f"method-author symbols missing from the Reference page: {missing}"


def test_the_buffer_says_sample_returns_positions_not_ids() -> None:
    from clutune.clu.buffer import ReservoirBuffer

    doc = inspect.getdoc(ReservoirBuffer.sample)
    assert doc.startswith("*Positions*") and "not ids" in doc and "buffer.ids[buffer.sample(n, g)]" in doc
