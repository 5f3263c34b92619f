"""The algorithm library stays PyTorch-only: importing every module of it, and every built-in method, pulls in
no platform package.

Methods load lazily from ``BUILTIN_METHODS``, so importing ``clutune.clu.methods`` alone checks none of their
files: each one is imported here by its ``module:Class`` line.
"""

from __future__ import annotations

import subprocess
import sys

from clutune.clu.methods import BUILTIN_METHODS

PLATFORM = ("ray", "mlflow", "optuna", "sklearn", "pyarrow", "pandas", "yaml")


def test_clu_and_every_builtin_method_import_only_torch():
    code = f"""
import importlib, pkgutil, sys
import clutune.clu
from clutune.clu.methods import BUILTIN_METHODS
for module in pkgutil.walk_packages(clutune.clu.__path__, "clutune.clu."):
    importlib.import_module(module.name)
classes = [getattr(importlib.import_module(m), c) for m, c in (v.split(":") for v in BUILTIN_METHODS.values())]
print(len(classes), ",".join(sorted(m for m in {PLATFORM!r} if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == str(len(BUILTIN_METHODS)) and len(BUILTIN_METHODS) >= 13
    assert out[1:] == [], f"clutune.clu imported {out[1]}"
