"""Stability and plasticity diagnostics for long learning-unlearning streams.

Dohare et al., "Loss of plasticity in deep continual learning" (Nature 2024), explain why a network stops
learning after many tasks with three measurements taken on a fixed probe set: the share of dead ReLU units,
the average weight magnitude and the effective rank of the representation. We take them after every
request, so a slow drift over hundreds of requests shows up as a slope (``drift_slope``), not an anecdote.

The probe set is drawn once (``probe_ids``) so every request, method and seed measures the same samples;
at each request only the training probe ids still owned are used (``owned_probe_ids``), because an
unlearned sample must not be read again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

BATCH_SIZE = 512


def probe_ids(n_train: int, n_test: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted training ids and sorted test ids of a probe set of ``size`` samples, fixed by ``seed``.

    Half from each side where possible; a side too small gives its shortfall to the other, and ``size`` is
    capped at ``n_train + n_test``. A private generator keeps the draw independent of the global RNG, so the
    same seed gives the same probe set whatever ran before.
    """
    size = min(size, n_train + n_test)
    k_test = min(n_test, size - min(n_train, size // 2))
    k_train = size - k_test
    g = torch.Generator().manual_seed(seed)
    train = torch.randperm(n_train, generator=g)[:k_train].sort().values
    test = torch.randperm(n_test, generator=g)[:k_test].sort().values
    return train, test


def owned_probe_ids(train_probe: torch.Tensor, owned: torch.Tensor) -> torch.Tensor:
    """The training probe ids still owned at this request: the probe set is owned train plus test."""
    return train_probe[torch.isin(train_probe, owned)]


class _DeadUnits:
    """Forward hook on every ReLU call: which units were non-zero on at least one probe sample.

    Calls are numbered within each forward, so a module called several times per forward (resnet's shared
    ReLU) gives one layer of units per call. Dim 1 is the unit axis (features of a linear layer, channels of
    a feature map); a channel is alive if it is non-zero at any position of any sample.
    """

    def __init__(self) -> None:
        self.alive: list[torch.Tensor] = []
        self.call = 0

    def start_batch(self) -> None:
        self.call = 0

    def hook(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonzero = output.detach().ne(0)
        if nonzero.dim() > 2:
            nonzero = nonzero.flatten(2).any(2)
        alive = nonzero.any(0)
        if self.call == len(self.alive):
            self.alive.append(alive)
        else:
            self.alive[self.call] |= alive
        self.call += 1

    def share(self) -> float:
        """Pooled over all units of all layers; NaN for a network without nn.ReLU modules."""
        units = sum(a.numel() for a in self.alive)
        if units == 0:
            return math.nan
        return sum(int((~a).sum()) for a in self.alive) / units


class _Penultimate:
    """Forward pre-hook on the last nn.Linear: the representation the classifier head reads."""

    def __init__(self) -> None:
        self.chunks: list[torch.Tensor] = []
        self.batches = 0

    def start_batch(self) -> None:
        self.batches += 1

    def hook(self, module: nn.Module, args: tuple) -> None:
        if len(self.chunks) == self.batches:
            raise ValueError("the last nn.Linear ran more than once in one forward; its input is ambiguous")
        self.chunks.append(args[0].detach().flatten(1).cpu())

    def features(self) -> torch.Tensor:
        if len(self.chunks) != self.batches:
            raise ValueError("the last nn.Linear did not run in every forward; it is not the classifier head")
        return torch.cat(self.chunks)


def _last_linear(model: nn.Module) -> nn.Linear:
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("the model has no nn.Linear layer to read a representation from")
    return linears[-1]


@contextmanager
def _probing(model: nn.Module) -> Iterator[list]:
    """Eval mode, no grad and eager execution for the probe; the hooks added to the yielded list are removed
    and every module's training flag restored, even on error.

    Eager because the recorders are module hooks: a module compiled in place (``compute.compile``) runs the
    graph dynamo traced before the hooks existed, so they never fire (the head's pre-hook sees no forward, the
    ReLU hooks see none and ``dead_units`` comes out NaN), or a graph recompiled under them. ``force_eager``
    runs the module's own Python forward, so the probe reads the same weights the same way either way.
    """
    flags = {m: m.training for m in model.modules()}
    handles: list = []
    model.eval()
    try:
        with torch.no_grad(), torch.compiler.set_stance("force_eager"):
            yield handles
    finally:
        for h in handles:
            h.remove()
        for m, flag in flags.items():
            m.training = flag


def _probe(
    model: nn.Module, x: torch.Tensor, batch_size: int, dead: bool, features: bool
) -> tuple[_DeadUnits, _Penultimate]:
    """One batched pass over the probe set with whichever recorders are asked for."""
    dead_rec, feat_rec = _DeadUnits(), _Penultimate()
    starts: list[Callable[[], None]] = []
    with _probing(model) as handles:
        if dead:
            for m in model.modules():
                if isinstance(m, nn.ReLU):
                    handles.append(m.register_forward_hook(dead_rec.hook))
            starts.append(dead_rec.start_batch)
        if features:
            handles.append(_last_linear(model).register_forward_pre_hook(feat_rec.hook))
            starts.append(feat_rec.start_batch)
        device = next(model.parameters()).device
        for i in range(0, len(x), batch_size):
            for start in starts:
                start()
            model(x[i : i + batch_size].to(device))
    return dead_rec, feat_rec


def dead_units(model: nn.Module, x: torch.Tensor, batch_size: int = BATCH_SIZE) -> float:
    """Share of ReLU units (nn.ReLU outputs; F.relu calls are invisible) that are zero on every probe sample."""
    return _probe(model, x, batch_size, dead=True, features=False)[0].share()


def penultimate(model: nn.Module, x: torch.Tensor, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """The (n, d) input of the model's last nn.Linear (in module order: the classifier head), on the CPU."""
    return _probe(model, x, batch_size, dead=False, features=True)[1].features()


def weight_magnitude(model: nn.Module) -> float:
    """Mean absolute value over every element of every parameter with dim >= 2 (linear and conv weights).

    Biases and normalisation scales are left out, as in Dohare et al.: they are not connection weights, and a
    norm scale initialised at 1 would mask the growth of the weights the measure is meant to show.
    """
    weights = [p.detach() for p in model.parameters() if p.dim() >= 2]
    count = sum(w.numel() for w in weights)
    if count == 0:
        return math.nan
    return sum(float(w.abs().double().sum()) for w in weights) / count


def effective_rank(features: torch.Tensor) -> float:
    """Roy & Vetterli (2007): exp of the entropy of the normalised singular values; 0.0 for a zero matrix.

    Computed in float64, with no cut-off on small singular values (as in Dohare et al.'s code): a float32
    matrix's rounding leaves singular values about 1e-7 of the largest, which add about 1e-5 to its rank.
    """
    s = torch.linalg.svdvals(features.detach().to(torch.float64).cpu())
    total = s.sum()
    if total == 0:
        return 0.0
    p = s / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def plasticity_diagnostics(model: nn.Module, x_probe: torch.Tensor, batch_size: int = BATCH_SIZE) -> dict[str, float]:
    """All three diagnostics from one forward pass over the probe set (both hooks at once)."""
    dead_rec, feat_rec = _probe(model, x_probe, batch_size, dead=True, features=True)
    return {
        "dead_units": dead_rec.share(),
        "weight_magnitude": weight_magnitude(model),
        "effective_rank": effective_rank(feat_rec.features()),
    }


def drift_slope(values: Sequence[float]) -> float:
    """Least-squares slope per request over the last half of the stream (indices from ``len // 2``).

    The first half holds the warm-up, where every measure moves fast; the second half shows whether the
    method has settled or keeps drifting. Non-finite points (requests not measured) are skipped; NaN if
    fewer than two remain.
    """
    points = [(i, float(v)) for i, v in enumerate(values) if i >= len(values) // 2 and math.isfinite(v)]
    if len(points) < 2:
        return math.nan
    x_mean = math.fsum(i for i, _ in points) / len(points)
    y_mean = math.fsum(v for _, v in points) / len(points)
    num = math.fsum((i - x_mean) * (v - y_mean) for i, v in points)
    den = math.fsum((i - x_mean) ** 2 for i, _ in points)
    return num / den
