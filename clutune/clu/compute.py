"""How a model computes (precision, memory layout, compilation), never what it computes.

Every setting here is a speed knob for CUDA; on the CPU each one is off or without effect, so a CPU run with
any setting gives the results of the default run (``compile`` aside: inductor may reorder float sums, so its
results match eager within rounding, not bit for bit).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import nn

from clutune.clu.torch_internals import in_every_intra_op_thread, on_compile

PRECISIONS = ("fp32", "bf16")


@functools.cache
def warn_bf16_on_cpu() -> None:
    """Once per process: a CPU run asked for bf16 gets fp32, and the user should know why nothing got faster."""
    warnings.warn(
        "compute.precision=bf16 is CUDA-only: this run is on the CPU, so it trains and evaluates in fp32 "
        "(results are those of precision fp32)",
        RuntimeWarning,
        stacklevel=3,
    )


def effective_precision(precision: str, device: torch.device) -> str:
    """The precision a run on ``device`` really uses: bf16 autocast only on CUDA, where it pays."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type != "cuda":
        warn_bf16_on_cpu()
        return "fp32"
    return precision


def flushing() -> bool:
    """Whether the calling thread computes subnormal floats as zero (torch has no getter for the mode)."""
    return float(torch.tensor([1e-39], dtype=torch.float32).mul(2.0)[0]) == 0.0


def _set_flush(on: bool) -> bool:
    """Set the mode in the calling thread and in every thread of its intra-op pool; False: the CPU has none."""
    pool = in_every_intra_op_thread(lambda: torch.set_flush_denormal(on))
    return torch.set_flush_denormal(on) if pool is None else all(pool)


@contextmanager
def flush_denormals(on: bool) -> Iterator[None]:
    """Within the block, subnormal floats (``|x| < 1.2e-38`` in fp32) are read and written as zero by the CPU,
    in the calling thread, in the threads of torch's intra-op pool that run its parallel work, and in threads it
    starts meanwhile; the thread's previous mode is restored after, in the pool too, so the caller's own code (a
    notebook, a property-based test drawing subnormal floats) keeps IEEE floats.

    The mode is a per-thread CPU register, and torch's OpenMP pool is started at the first parallel operation,
    usually before this block: setting the mode in the calling thread alone leaves the pool threads, which
    compute their share of every large matmul and elementwise operation, with subnormal arithmetic.

    Weights that only weight decay still moves, those into ReLU units that never fire, shrink geometrically and
    end up subnormal on a long stream; x86 computes with subnormal operands tens of times slower. A
    1,000-request UG-CLU study slowed sevenfold from about its 340th request on, with half of a hidden layer's
    weights subnormal. Flushing changes only values within 1.2e-38 of zero. CUDA kernels flush by themselves.
    """
    before = flushing()
    changed = _set_flush(on)
    if on and not before and not changed:
        warn_no_flush()
    try:
        yield
    finally:
        if changed:
            _set_flush(before)


@functools.cache
def warn_no_flush() -> None:
    warnings.warn(
        "compute.flush_denormal: this CPU cannot flush subnormal floats to zero; a long stream may slow down as "
        "weights decay into the subnormal range",
        RuntimeWarning,
        stacklevel=3,
    )


def autocast(precision: str, device: torch.device) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA (matmuls and convolutions in bf16, reductions and batch norm in fp32); nothing else."""
    if effective_precision(precision, device) == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def prepare_model(model: nn.Module, device: torch.device, channels_last: bool, compile: bool) -> nn.Module:
    """Channels-last weights (CUDA only: cuDNN's fast convolution layout) and in-place compilation.

    ``nn.Module.compile`` keeps the module and its ``state_dict`` keys as they are, so checkpoints, deep copies
    and cached oracle weights do not depend on whether a run compiled.
    """
    if channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if compile:
        compile_clock()
        model.compile()
    return model


def input_layout(
    to_inputs: Callable[[torch.Tensor], torch.Tensor], device: torch.device, channels_last: bool
) -> Callable[[torch.Tensor], torch.Tensor]:
    """``to_inputs`` whose image batches come out channels-last, matching channels-last weights (CUDA only)."""
    if not (channels_last and device.type == "cuda"):
        return to_inputs

    def convert(x: torch.Tensor) -> torch.Tensor:
        out = to_inputs(x)
        return out.contiguous(memory_format=torch.channels_last) if out.dim() == 4 else out

    return convert


class _CompileClock:
    """Seconds spent compiling since the process started, from dynamo's start/end callbacks.

    Dynamo runs the start callback when the first of any nested compilations begins and the end callback when
    the last one ends, so nested compiles are counted once.
    """

    def __init__(self) -> None:
        self.total = 0.0
        self._started: float | None = None
        on_compile(self._start, self._end)

    def _start(self, _args: Any) -> None:
        self._started = time.perf_counter()

    def _end(self, _args: Any) -> None:
        if self._started is not None:
            self.total += time.perf_counter() - self._started
            self._started = None


@functools.cache
def compile_clock() -> _CompileClock:
    """The process's one compile clock, installed the first time a model is compiled (or a run asks)."""
    return _CompileClock()


def compile_seconds() -> float:
    """Total compile seconds so far; differences around a piece of work give that work's compile time."""
    return compile_clock().total
