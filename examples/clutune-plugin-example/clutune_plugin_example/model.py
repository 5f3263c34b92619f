"""example_mlp: an MLP with layer normalisation, its width and depth read from the model section's options."""

from __future__ import annotations

import math
from typing import Any

from torch import nn


def build_example_mlp(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """clutune's builder contract: the ``model`` config section as a dict, one sample's shape, the class count.

    ``model: {name: example_mlp, options: {width: 64, depth: 2}}``
    """
    options = spec.get("options", {})
    width, depth = int(options.get("width", 64)), int(options.get("depth", 2))
    layers: list[nn.Module] = [nn.Flatten()]
    features = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(features, width), nn.LayerNorm(width), nn.ReLU()]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)
