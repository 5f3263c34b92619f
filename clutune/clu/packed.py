"""K models of one architecture trained in one vectorised step: the oracles, retrains and shadow models that
evaluation needs in quantity are all the same small recipe, and one step over K stacked models costs far less
than K steps of one.

Each member keeps what makes it itself: its initial weights, its generator (so its data order and its
augmentation draws), its owned ids behind its own :class:`TrainAccess`, and its own learning-rate schedule.
The step is plain SGD with momentum and weight decay, written over the stacked parameters in the order
``torch.optim.SGD`` computes it, so a member's parameters after training are those of the same model trained
alone, up to float rounding. A member with fewer owned ids has fewer steps per epoch; on the steps it has none,
nothing of it moves (weights, momentum, schedule).

Two ways compute a step's per-member gradients, and :func:`choose_gradients` picks one by a rule measured in
``bench/packing.py`` (one CPU thread, models per second against K):

- :func:`batched_gradients`: each layer batched by hand, a linear layer as one ``baddbmm`` over the member axis,
  a convolution as one grouped convolution;
- :func:`vmap_gradients`: ``torch.func.vmap`` of ``grad`` over ``functional_call`` of the model's own forward.

Only models whose every layer is understood can be packed: a container whose forward applies its children in
the order they are registered (``nn.Sequential``, or a class that declares ``packs_as_chain = True``) over the
stateless or linear layers of :data:`PACKABLE_LAYERS`. Anything else (batch norm, dropout, a plugin's own
module) trains one at a time; :func:`unpackable_reason` says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from clutune.clu.access import TrainAccess
from clutune.clu.torch_internals import multi_tensor_sgd
from clutune.clu.training import steps_per_epoch

ELEMENTWISE = (nn.ReLU, nn.GELU, nn.Tanh, nn.Sigmoid, nn.SiLU, nn.ELU, nn.LeakyReLU, nn.Identity)
POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
PACKABLE_LAYERS = (nn.Linear, nn.Conv2d, nn.Flatten, *ELEMENTWISE, *POOLS)


@dataclass(frozen=True)
class SGDSchedule:
    """The oracle recipe's optimiser: SGD with momentum and weight decay, a constant or cosine rate per step."""

    epochs: int
    batch_size: int
    lr: float
    momentum: float
    weight_decay: float
    schedule: str  # "cosine" (to zero over each member's own step count) or "constant"


@dataclass
class Member:
    """One model of a pack: freshly initialised ``model``, its door to the data, its owned ids and generator."""

    model: nn.Module
    data: TrainAccess
    ids: torch.Tensor
    generator: torch.Generator
    augment: bool = False  # its fetches draw augmentation from its generator


def _is_chain(module: nn.Module) -> bool:
    return isinstance(module, nn.Sequential) or bool(getattr(type(module), "packs_as_chain", False))


BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def unpackable_reason(model: nn.Module) -> str | None:
    """Why ``model`` cannot train packed, or None when it can: every container is a chain and every layer is one
    of :data:`PACKABLE_LAYERS` (a convolution only with zeros padding, since it becomes a grouped one)."""
    modules = [(name or "the model", module) for name, module in model.named_modules()]
    for where, module in modules:
        if isinstance(module, BATCH_NORMS) and module.training:
            return f"{where} is batch norm in training mode (its statistics mix a batch across samples)"
    for where, module in modules:
        if _is_chain(module):
            continue
        if type(module) not in PACKABLE_LAYERS:
            return f"{where} is a {type(module).__name__}, which the packed trainer does not know"
        if isinstance(module, nn.Conv2d) and module.padding_mode != "zeros":
            return f"{where} pads with {module.padding_mode!r}, not zeros"
    return None


def layers(model: nn.Module) -> list[nn.Module]:
    """The leaf layers of a packable model in the order its forward applies them."""
    return [m for m in model.modules() if not _is_chain(m)]


def stack_parameters(models: list[nn.Module]) -> dict[str, torch.Tensor]:
    """Each parameter of the K models stacked along a new first axis, as fresh leaf tensors."""
    names = [name for name, _ in models[0].named_parameters()]
    per_model = [dict(m.named_parameters()) for m in models]
    return {n: torch.stack([p[n].detach() for p in per_model]).clone() for n in names}


def unstack_parameters(models: list[nn.Module], stacked: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for i, model in enumerate(models):
            for name, p in model.named_parameters():
                p.copy_(stacked[name][i])


def _bmm_logits(plan: list[tuple[str, nn.Module]], params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(K, B, *input) -> (K, B, classes) with the layers of ``plan`` (name, layer) batched along the member axis."""
    k, b = x.shape[:2]
    for name, layer in plan:
        if isinstance(layer, nn.Linear):
            w = params[f"{name}.weight"].transpose(1, 2)
            bias = params.get(f"{name}.bias")
            x = torch.bmm(x, w) if bias is None else torch.baddbmm(bias.unsqueeze(1), x, w)
        elif isinstance(layer, nn.Conv2d):
            w = params[f"{name}.weight"]  # (K, out, in / groups, kh, kw)
            bias = params.get(f"{name}.bias")
            grouped = x.transpose(0, 1).reshape(b, k * x.shape[2], *x.shape[3:])
            out = F.conv2d(
                grouped,
                w.reshape(-1, *w.shape[2:]),
                None if bias is None else bias.reshape(-1),
                layer.stride,
                layer.padding,
                layer.dilation,
                layer.groups * k,
            )
            x = out.reshape(b, k, -1, *out.shape[2:]).transpose(0, 1)
        elif isinstance(layer, nn.Flatten):
            x = x.flatten(layer.start_dim + 1 if layer.start_dim >= 0 else layer.start_dim, layer.end_dim)
        elif isinstance(layer, POOLS):
            x = layer(x.reshape(k * b, *x.shape[2:]))
            x = x.reshape(k, b, *x.shape[1:])
        else:
            x = layer(x)
    return x


Gradients = Callable[[dict[str, torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]


def batched_gradients(model: nn.Module) -> Gradients:
    """Per-member gradients of the summed weighted losses through the hand-batched layers: member i's gradient
    is that of its own mean loss, since no other member's term depends on its weights."""
    names = {id(m): n for n, m in model.named_modules()}
    plan = [(names[id(layer)], layer) for layer in layers(model)]

    def gradients(params, x, y, w):
        leaves = {n: p.detach().requires_grad_() for n, p in params.items()}
        logits = _bmm_logits(plan, leaves, x)
        loss = (F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none") * w.flatten()).sum()
        return dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values())), strict=True))

    return gradients


def vmap_gradients(model: nn.Module) -> Gradients:
    """Per-member gradients by ``torch.func``: ``model``'s own forward on each member's slice of the stacked
    parameters, vectorised over the member axis (the module only lends its structure)."""

    def member_loss(params, x, y, w):
        return (F.cross_entropy(functional_call(model, params, (x,)), y, reduction="none") * w).sum()

    return vmap(grad(member_loss))


# Where vmap won in bench/packing.py: the mnist1d MLP (256-unit layers) at K = 16 and 64, in every repeat at 16;
# the digits MLP (128 units) and the small CNN (a 10-unit head) were faster batched by hand at every K.
VMAP_MIN_UNITS = 256
VMAP_MIN_PACK = 16


def choose_gradients(model: nn.Module, k: int) -> Callable[[nn.Module], Gradients]:
    """:func:`vmap_gradients` for packs of at least ``VMAP_MIN_PACK`` models whose widest linear layer has at
    least ``VMAP_MIN_UNITS`` outputs, :func:`batched_gradients` otherwise."""
    widest = max((m.out_features for m in model.modules() if isinstance(m, nn.Linear)), default=0)
    return vmap_gradients if k >= VMAP_MIN_PACK and widest >= VMAP_MIN_UNITS else batched_gradients


# Steps whose batches a member fetches in one call: the door's per-call cost shared by this many batches.
FETCH_STEPS = 8


@dataclass
class _Chunk:
    """A few steps of every member's batches, side by side; zeros where a member has fewer samples or none."""

    x: torch.Tensor  # (K, steps * B, *input)
    y: torch.Tensor  # (K, steps * B)
    w: torch.Tensor  # (K, steps * B): 1 / (its batch's size) on a member's samples, 0 on padding


def _fetch_chunk(members: list[Member], orders: list[torch.Tensor], first: int, steps: int, b: int) -> _Chunk:
    """Steps ``first .. first + steps - 1`` of this epoch. A member whose fetch draws augmentation from its
    generator fetches batch by batch, so its draws come in the order the solo loop makes them."""
    parts = []
    for m, order in zip(members, orders, strict=True):
        ids = order[first * b : (first + steps) * b]
        if not len(ids):
            parts.append(None)
        elif m.augment:
            fetched = [m.data.fetch(batch, m.generator) for batch in ids.split(b)]
            parts.append((torch.cat([f[0] for f in fetched]), torch.cat([f[1] for f in fetched])))
        else:
            parts.append(m.data.fetch(ids, m.generator))
    sample = next(p for p in parts if p is not None)
    width = steps * b
    if all(p is not None and len(p[1]) == width for p in parts):
        x = torch.stack([p[0] for p in parts])
        y = torch.stack([p[1] for p in parts])
    else:
        x = sample[0].new_zeros((len(members), width, *sample[0].shape[1:]))
        y = sample[1].new_zeros((len(members), width))
        for i, p in enumerate(parts):
            if p is not None:
                x[i, : len(p[1])], y[i, : len(p[1])] = p
    step_starts = torch.arange(first, first + steps).view(1, -1) * b
    owned = torch.tensor([len(order) for order in orders]).view(-1, 1)
    sizes = (owned - step_starts).clamp(0, b)  # (K, steps): each member's batch size at each step
    w = (torch.arange(b).view(1, 1, -1) < sizes.unsqueeze(-1)) / sizes.clamp(min=1).unsqueeze(-1)
    w = w.reshape(len(members), width).float()
    return _Chunk(x, y, w.to(y.device))


def _rates(members: list[Member], opt: SGDSchedule, longest: int) -> torch.Tensor:
    """(epochs * longest, K): each member's learning rate at every packed step, 0 where it has no batch.

    Member i takes ``steps_i`` steps an epoch, so at epoch e, step t < steps_i it is at its own step
    e·steps_i + t; cosine annealing runs to zero over its own total (``CosineAnnealingLR`` in closed form)."""
    steps = torch.tensor([steps_per_epoch(len(m.ids), opt.batch_size) for m in members], dtype=torch.float64)
    epoch = torch.arange(opt.epochs, dtype=torch.float64).repeat_interleave(longest).view(-1, 1)
    t = torch.arange(longest, dtype=torch.float64).repeat(opt.epochs).view(-1, 1)
    own = epoch * steps + t
    if opt.schedule == "cosine":
        rate = opt.lr * (1 + torch.cos(math.pi * own / (opt.epochs * steps).clamp(min=1))) / 2
    else:
        rate = torch.full_like(own, opt.lr)
    return torch.where(t < steps, rate, 0.0).float()


def train_packed(
    members: list[Member], opt: SGDSchedule, gradients: Callable[[nn.Module], Gradients] | None = None
) -> None:
    """Train every member's model in place. ``gradients(model)`` gives the function from the stacked parameters
    and a step's (x, y, w) to each parameter's stacked gradient; None: :func:`choose_gradients`'s choice.

    Every member must be the same packable architecture (see :func:`unpackable_reason`) on the same device,
    with at least one owned id.
    """
    models = [m.model for m in members]
    step_gradients = (gradients or choose_gradients(models[0], len(members)))(models[0])
    params = stack_parameters(models)
    momentum = {n: torch.zeros_like(p) for n, p in params.items()}
    device = next(iter(params.values())).device
    longest = max(steps_per_epoch(len(m.ids), opt.batch_size) for m in members)
    table = _rates(members, opt, longest)
    everyone = (table > 0).all(1).tolist()  # per step, whether every member has a batch: known on the host
    rates = table.to(device)
    b = opt.batch_size
    for model in models:
        model.train()
    for epoch in range(opt.epochs):
        orders = [m.ids[torch.randperm(len(m.ids), generator=m.generator)] for m in members]
        for first in range(0, longest, FETCH_STEPS):
            chunk = _fetch_chunk(members, orders, first, min(FETCH_STEPS, longest - first), b)
            for s in range(chunk.y.shape[1] // b):
                row = epoch * longest + first + s
                cols = slice(s * b, (s + 1) * b)
                grads = step_gradients(params, chunk.x[:, cols], chunk.y[:, cols], chunk.w[:, cols])
                _sgd_update(params, grads, momentum, rates[row], everyone[row], opt)
    unstack_parameters(models, params)


@torch.no_grad()
def _sgd_update(
    params: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    momentum: dict[str, torch.Tensor],
    lr: torch.Tensor,
    everyone: bool,
    opt: SGDSchedule,
) -> None:
    """``torch.optim.SGD``'s step (dampening 0, no Nesterov) per member: d = g + wd·p; buf = m·buf + d (the
    first step's zero buffer gives buf = d, as SGD's clone does); p -= lr·buf. A member without a batch this
    step (its rate is 0) keeps its buffer and its weights. Multi-tensor (``_foreach``) ops, as the optimiser's
    own default implementation uses: one dispatch per operation for all parameters."""
    plist = list(params.values())
    rates = [lr.view((len(lr),) + (1,) * (p.dim() - 1)) for p in plist]
    bufs = list(momentum.values()) if opt.momentum else []
    multi_tensor_sgd(plist, [grads[n] for n in params], bufs, rates, opt.weight_decay, opt.momentum, everyone)
