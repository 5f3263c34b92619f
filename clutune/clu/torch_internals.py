"""The private parts of PyTorch the algorithm library depends on, behind one door with a version check.

``clutune.clu`` imports nothing but torch and the standard library, so it cannot reach the platform's door to
private library parts (:mod:`clutune.platform.internals`, which raises clutune's own errors and checks Ray and
Optuna). Its one use of a private PyTorch part sits here instead, built the same way: the version it was read
in, and a one-line failure naming this module on any other release, before the private name is touched.

- ``torch._dynamo.callback.callback_handler``: dynamo's start/end-of-compilation callbacks, the only way to
  learn how long ``torch.compile`` spent compiling (torch has no public counter for it).

``tests/test_internals.py`` checks that no other module imports or reaches into a private name of torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

TESTED_TORCH = "2.14"


def check_torch_version(version: str | None = None) -> None:
    """Refuse a PyTorch release whose internals were not read: the pinned one (``torch==2.14.*``) is."""
    found = version or torch.__version__
    parts = TESTED_TORCH.split(".")
    if found.split("+")[0].split(".")[: len(parts)] != parts:
        raise RuntimeError(
            f"torch {found} is installed, but clutune relies on internals of torch {TESTED_TORCH} "
            f"(clutune/clu/torch_internals.py); install torch=={TESTED_TORCH}.* or review that module"
        )


def on_compile(start: Callable[[Any], None], end: Callable[[Any], None]) -> None:
    """Have dynamo call ``start`` when the first of any nested compilations begins and ``end`` when the last
    one ends."""
    check_torch_version()
    from torch._dynamo.callback import callback_handler

    callback_handler.register_start_callback(start)
    callback_handler.register_end_callback(end)


__all__ = ["TESTED_TORCH", "check_torch_version", "on_compile"]
