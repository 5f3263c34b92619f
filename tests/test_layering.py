"""The algorithm library stays PyTorch-only: importing it pulls in no platform package."""

from __future__ import annotations

import subprocess
import sys


def test_clu_imports_only_torch():
    code = (
        "import sys, clutune.clu.methods, clutune.clu.runner, clutune.clu.saliency, clutune.clu.fastslow;"
        "print(','.join(sorted(m for m in ('ray', 'mlflow', 'optuna', 'sklearn', 'pyarrow', 'pandas', 'yaml')"
        " if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "", f"clutune.clu imported {out}"
