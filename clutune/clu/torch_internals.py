"""The private parts of PyTorch the algorithm library depends on, behind one door with a version check.

``clutune.clu`` imports nothing but torch and the standard library, so it cannot reach the platform's door to
private library parts (:mod:`clutune.platform.internals`, which raises clutune's own errors and checks Ray and
Optuna). Its one use of a private PyTorch part sits here instead, built the same way: the version it was read
in, and a one-line failure naming this module on any other release, before the private name is touched.

- ``torch._dynamo.callback.callback_handler``: dynamo's start/end-of-compilation callbacks, the only way to
  learn how long ``torch.compile`` spent compiling (torch has no public counter for it).
- ``torch._foreach_*``: the multi-tensor ops ``torch.optim.SGD`` itself runs on by default, one dispatch per
  operation for all of a pack's parameters (:mod:`clutune.clu.packed`).
- ``torch/lib/libgomp.so.1``: the GNU OpenMP runtime the Linux wheels ship, whose thread pool runs torch's
  intra-op work (and MKL's). torch has no way to run code in those threads, and a thread's float mode (subnormal
  flushing) is its own, so :func:`in_every_intra_op_thread` enters a parallel region of that runtime itself.

``tests/test_internals.py`` checks that no other module imports or reaches into a private name of torch.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from pathlib import Path
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


def multi_tensor_sgd(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    bufs: list[torch.Tensor],
    rates: list[torch.Tensor],
    weight_decay: float,
    momentum: float,
    everyone: bool,
) -> None:
    """``torch.optim.SGD``'s step (dampening 0, no Nesterov) over many tensors at once: d = g + wd·p;
    buf = m·buf + d; p -= rate·buf, with a rate per tensor (broadcast per packed member). With ``everyone``
    false, the members whose rate is 0 (no batch this step) keep their momentum buffers."""
    check_torch_version()
    d = torch._foreach_add(grads, params, alpha=weight_decay) if weight_decay else grads
    if momentum:
        if everyone:
            torch._foreach_mul_(bufs, momentum)
            torch._foreach_add_(bufs, d)
        else:
            for buf, step, rate in zip(bufs, d, rates, strict=True):
                buf.copy_(torch.where(rate > 0, buf * momentum + step, buf))
        d = bufs
    torch._foreach_sub_(params, torch._foreach_mul(d, rates))


@functools.cache
def _openmp() -> Any | None:
    """torch's own libgomp (already loaded with torch, so this is the same runtime and pool), or None where the
    wheel ships another runtime or none (macOS, Windows)."""
    path = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    if not path.exists():
        return None
    lib = ctypes.CDLL(str(path))
    lib.GOMP_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    lib.GOMP_parallel.restype = None
    return lib


_REGION = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


def in_every_intra_op_thread(fn: Callable[[], Any]) -> list[Any] | None:
    """Call ``fn`` once in each thread of the calling thread's intra-op pool (itself included) and return what
    each returned, or None where torch's OpenMP runtime is not libgomp (then nothing ran).

    A parallel region of ``torch.get_num_threads()`` threads from the calling thread takes the same pooled
    threads as torch's own regions from that thread (libgomp keeps one pool per thread that starts regions).
    ``fn`` runs under the GIL in each (ctypes releases it for the call and each thread takes it back).
    """
    check_torch_version()
    lib = _openmp()
    if lib is None:
        return None
    results: list[Any] = []
    region = _REGION(lambda _data: results.append(fn()))
    lib.GOMP_parallel(ctypes.cast(region, ctypes.c_void_p), None, torch.get_num_threads(), 0)
    return results


__all__ = [
    "TESTED_TORCH",
    "check_torch_version",
    "in_every_intra_op_thread",
    "multi_tensor_sgd",
    "on_compile",
]
