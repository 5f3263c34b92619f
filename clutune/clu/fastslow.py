"""The fast-slow update: UG-CLU's implicit, always-current remaining-Hessian preconditioner.

One masked fast step along the task direction, then K slow steps on the remaining loss from the fast
weights, then an outer interpolation from the starting point. To second order the slow steps turn the fast
displacement d into (I - beta_R H_R)^K d ~ (I + K beta_R H_R)^-1 d: the parts of the step that would disturb
the remaining data (high curvature of L_R) are damped, without ever forming H_R.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def fast_slow_iteration(
    params: Sequence[torch.nn.Parameter],
    opt: torch.optim.Optimizer,
    fast_loss: Callable[[], torch.Tensor],
    slow_losses: Iterable[Callable[[], torch.Tensor]],
    fast_lr: float,
    slow_lr: float,
    mask: Sequence[torch.Tensor] | None = None,
    clip: float = 0.0,
    eta_out: float = 1.0,
) -> torch.Tensor:
    """One iteration; ``opt`` is shared by both kinds of step (one momentum buffer, as in SFR-on's code).

    The mask multiplies the fast step's gradient only; weight decay and momentum act unmasked. Returns the
    fast loss (detached) for progress reporting.
    """
    start = [p.detach().clone() for p in params] if eta_out != 1.0 else None
    _set_lr(opt, fast_lr)
    opt.zero_grad(set_to_none=True)
    loss = fast_loss()
    loss.backward()
    if mask is not None:
        for p, m in zip(params, mask, strict=True):
            if p.grad is not None:
                p.grad.mul_(m)
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    _set_lr(opt, slow_lr)
    for slow in slow_losses:
        opt.zero_grad(set_to_none=True)
        slow().backward()
        opt.step()
    if start is not None:
        with torch.no_grad():
            for p, s in zip(params, start, strict=True):
                p.copy_(s + eta_out * (p - s))
    return loss.detach()
