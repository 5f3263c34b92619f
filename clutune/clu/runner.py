"""Drive a method through a request stream: act, enforce the privacy invariant, evaluate, hand back a row.

The runner owns the loop, the clocks and the sample count (``TrainAccess.samples``). Evaluation is injected
(``evaluate``) so this module stays pure PyTorch; :mod:`clutune.core.experiment` supplies the evaluator that
compares against each request's oracle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

import torch
from torch import nn

from clutune.clu.methods.base import Method


class RequestLike(Protocol):
    index: int
    kind: str
    ids: torch.Tensor


class PrivacyViolation(RuntimeError):
    """An unlearned id survived somewhere it must not: a bug in a method, never a user error."""


class Diverged(RuntimeError):
    """The model's outputs became non-finite: the method's step sizes are too large for this problem."""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def iter_run(
    method: Method,
    requests: Sequence[RequestLike],
    evaluate: Callable[[RequestLike, nn.Module], dict[str, Any]],
    start: int = 0,
    train_context: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> Iterator[dict[str, Any]]:
    """Yield one row per request of ``requests[start:]`` as it finishes.

    A generator, so a caller can advance several runs in lockstep (one trial over several seeds) and checkpoint
    between requests: everything a checkpoint needs is in the method when a row is yielded. ``train_context``
    wraps each request's training (autocast, for one).

    Each row has the training's wall ``seconds`` and its ``cpu_seconds``: :func:`time.process_time`, the CPU time
    of the whole process, because torch computes a share of each large operation in its intra-op threads, which
    the calling thread's own clock (:func:`time.thread_time`) would miss. CPU time leaves out the waits for a core
    that wall time counts when the machine is loaded, so it measures the work itself (plus what the process's
    other threads, a Ray worker's few, did meanwhile). With several intra-op threads it also counts the time the
    OpenMP pool's threads spin while waiting for work, so compare it between runs with the same thread count.
    """
    unlearned = torch.zeros_like(method.data.blocked)
    for request in requests[:start]:
        if request.kind == "unlearn":
            unlearned[request.ids] = True
            method.data.block(request.ids)
    for request in requests[start:]:
        if request.kind == "unlearn" and method.buffer is not None:
            method.buffer.purge(request.ids)  # before any training step of this request
        method.data.samples = 0
        _sync(method.data.device)
        t0, cpu0 = time.perf_counter(), time.process_time()
        with train_context():
            if request.kind == "learn":
                method.learn(request)
            else:
                method.unlearn(request)
        _sync(method.data.device)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
        if request.kind == "unlearn":
            unlearned[request.ids] = True
            method.data.block(request.ids)
        if method.buffer is not None and unlearned[method.buffer.ids].any():
            bad = int(method.buffer.ids[unlearned[method.buffer.ids]][0])
            raise PrivacyViolation(f"{method.name}: unlearned id {bad} is in the buffer after request {request.index}")
        method.model.eval()
        row = dict(evaluate(request, method.model))
        row.update(seconds=seconds, cpu_seconds=cpu_seconds, samples_processed=method.data.samples)
        yield row


def run(
    method: Method,
    requests: Sequence[RequestLike],
    evaluate: Callable[[RequestLike, nn.Module], dict[str, Any]],
    on_row: Callable[[dict[str, Any], Method], None] | None = None,
    start: int = 0,
) -> list[dict[str, Any]]:
    """Run ``requests[start:]``; ``on_row`` sees each row and the method (for checkpoints) as it finishes."""
    rows = []
    for row in iter_run(method, requests, evaluate, start):
        rows.append(row)
        if on_row is not None:
            on_row(row, method)
    return rows
