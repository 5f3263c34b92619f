"""The "Write a method" tutorial works as written: its Python blocks, joined in page order, are the module; its
TOML block is the package's pyproject.toml; the package is installed with pip and `clutune check-method` (the
command the page runs) passes it and prints the table the page shows."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "write-a-method.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(PAGE.read_text()) if lang == language]


def test_the_tutorial_method_installs_and_passes_check_method(tmp_path: Path) -> None:
    package = tmp_path / "replay-ascent"
    package.mkdir()
    (package / "replay_ascent.py").write_text("\n".join(blocks("python")))
    (package / "pyproject.toml").write_text(blocks("toml")[0])
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    done = subprocess.run([*pip, "--target", str(tmp_path / "site"), str(package)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]

    command = "clutune check-method replay_ascent"
    assert command in blocks("bash")[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    argv = [sys.executable, "-m", "clutune.cli", *command.split()[1:]]
    checked = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "method replay_ascent (package replay-ascent)" in checked.stdout
    shown = next(body for body in blocks("") if body.startswith("check "))
    assert shown.strip() in checked.stdout, checked.stdout  # the page shows the real table
