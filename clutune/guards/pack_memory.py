"""What one packed training step of K models holds in memory, held against the machine before any model is built:
``oracle.pack: 100000`` is one line, not an allocation failure inside an oracle task."""

from __future__ import annotations

from typing import Any

import torch

from clutune.guards.memory_check import check_fits
from clutune.models import build_model

FLOAT_BYTES = 4
# Per parameter: the member's own model, its slice of the stacked weights, their gradient and the momentum buffer.
PARAMETER_COPIES = 4
# Per activation: the forward's saved output, its gradient, and one relayout (a grouped convolution's transpose).
ACTIVATION_COPIES = 3


def packed_step_bytes(
    spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, batch_size: int, k: int
) -> int:
    """Bytes of one step of ``k`` packed models: parameters and every layer's output for a batch, counted on the
    meta device (no memory, no compute), times their copies, times ``k``."""
    outputs = 0

    def count(_module: torch.nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        nonlocal outputs
        outputs += out.numel()

    with torch.device("meta"):
        model = build_model(spec, input_shape, num_classes)
        leaves = [m for m in model.modules() if not list(m.children())]
        handles = [m.register_forward_hook(count) for m in leaves]
        batch = torch.empty((batch_size, *input_shape))
        model(batch)
    for h in handles:
        h.remove()
    params = sum(p.numel() for p in model.parameters())
    per_member = PARAMETER_COPIES * params + ACTIVATION_COPIES * outputs + batch.numel()
    return k * per_member * FLOAT_BYTES


def check_pack_fits(
    spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int, batch_size: int, k: int
) -> None:
    """Refuse a pack of ``k`` models whose step would not fit in this machine's memory (config key oracle.pack)."""
    name = spec.get("name", "mlp")
    estimate = packed_step_bytes(spec, input_shape, num_classes, batch_size, k)
    check_fits(estimate, "oracle.pack", f"a packed training step of {k} {name} models")
