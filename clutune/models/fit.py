"""Whether a model takes a dataset's inputs, known before any work: a user's own data can have any shape, and a
mismatch found inside the first trial would come after output folders, MLflow runs and Ray workers exist."""

from __future__ import annotations

from typing import Any

import torch

from clutune.errors import UserError
from clutune.models import build_model


def check_model_fits(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> None:
    """Build ``spec`` on the meta device (no memory, no compute) and pass it a batch of ``input_shape``; a model
    that cannot take it, or gives other than ``num_classes`` logits, is a one-line :class:`UserError`."""
    name = spec.get("name", "mlp")
    try:
        with torch.device("meta"):
            model = build_model(spec, input_shape, num_classes)
            logits = model(torch.empty((2, *input_shape)))
    except UserError:
        raise
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        text = str(e).strip().splitlines()
        reason = text[0] if text else type(e).__name__
        raise UserError(f"model.name {name!r} cannot take inputs of shape {input_shape}: {reason}") from None
    if tuple(logits.shape) != (2, num_classes):
        raise UserError(
            f"model.name {name!r} gives outputs of shape {tuple(logits.shape[1:])} for {num_classes} classes"
        )
