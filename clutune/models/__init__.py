"""Backbones by name. A model spec is a small dict so an oracle can rebuild the exact architecture.

A builder is called as ``builder(spec, input_shape, num_classes)``: ``spec`` is the config's ``model`` section as
a dict (``name``, ``hidden``, ``width``, and ``options`` when set: a plugin's own keys), ``input_shape`` is one
sample's shape as the model receives it (``(features,)`` or ``(channels, height, width)``), and ``num_classes``
the number of outputs. It returns a freshly initialised ``nn.Module`` (the caller seeds torch first and moves it
to the device). Built-in builders are the table below; an installed package adds its own under the entry point
group ``clutune.models``. Torchvision classifiers are there only when asked for by name:
``model: {name: torchvision, options: {arch: mobilenet_v3_small}}``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from clutune.errors import UserError
from clutune.plugins.registry import Registry

Builder = Callable[[dict[str, Any], tuple[int, ...], int], nn.Module]


class MLP(nn.Module):
    """Flat inputs (digits 64, mnist1d 40) through ReLU hidden layers."""

    packs_as_chain = True  # forward applies the layers in registration order (clutune.clu.packed)

    def __init__(self, in_features: int, num_classes: int, hidden: list[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """Two conv blocks and a linear head: the cheap image model for CPU runs and tests; any image size of at
    least 2x2 (the adaptive pool fixes the head's width)."""

    packs_as_chain = True  # forward applies the layers in registration order (clutune.clu.packed)

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width // 2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width // 2, width, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
            nn.Flatten(),
        )
        self.head = nn.Linear(width * 16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def resnet18_cifar(num_classes: int, in_channels: int = 3) -> nn.Module:
    """ResNet-18 with the CIFAR stem (3x3 conv, stride 1, no max-pool), as SFR-on and SalUn train it."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


class AirbenchConvGroup(nn.Module):
    """conv -> max-pool -> BN -> GELU -> conv -> BN -> GELU, the airbench94 block (Jordan, arXiv 2404.00498)."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels_in, channels_out, 3, padding="same", bias=False),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(channels_out),
            nn.GELU(),
            nn.Conv2d(channels_out, channels_out, 3, padding="same", bias=False),
            nn.BatchNorm2d(channels_out),
            nn.GELU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Airbench(nn.Module):
    """The airbench94 layout: a 2x2 patch stem (24 channels), three conv groups 64/256/256, global max-pool and a
    linear head; about 2 M parameters, built for fast CIFAR-10 oracles.

    What airbench adds beyond the layout and clutune does not: the stem initialised as a frozen whitening of
    the data's patches, batch-norm weights frozen, label smoothing, lookahead averaging, test-time flips. So the
    published speed and accuracy belong to that recipe, not to this network under clutune's oracle trainer.
    """

    def __init__(self, in_channels: int, num_classes: int, widths: tuple[int, int, int] = (64, 256, 256)) -> None:
        super().__init__()
        stem = 4 * in_channels * 2  # airbench: twice the 2x2 patch dimension (24 for RGB)
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 2, bias=True), nn.GELU())
        self.groups = nn.Sequential(
            AirbenchConvGroup(stem, widths[0]),
            AirbenchConvGroup(widths[0], widths[1]),
            AirbenchConvGroup(widths[1], widths[2]),
        )
        self.head = nn.Linear(widths[2], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.groups(self.stem(x))
        return self.head(torch.amax(features, dim=(2, 3)))


def _flat_features(input_shape: tuple[int, ...]) -> int:
    n = 1
    for d in input_shape:
        n *= d
    return n


def build_mlp(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return MLP(_flat_features(input_shape), num_classes, list(spec.get("hidden", [128])))


def build_cnn(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3:
        raise UserError(f"model.name cnn needs image inputs (channels, height, width), got {input_shape}; use mlp")
    return SmallCNN(input_shape[0], num_classes, int(spec.get("width", 32)))


def build_resnet18_cifar(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    return resnet18_cifar(num_classes, input_shape[0])


def build_airbench(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    if len(input_shape) != 3:
        raise UserError(f"model.name airbench needs image inputs (channels, height, width), got {input_shape}")
    return Airbench(input_shape[0], num_classes)


def build_torchvision(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The torchvision classifier ``options.arch``, randomly initialised: weights cannot be downloaded offline."""
    import torchvision.models as tvm

    arch = spec.get("options", {}).get("arch")
    known = tvm.list_models(module=tvm)
    if arch not in known:
        raise UserError(
            f"config key 'model.options.arch': {arch!r} is not a torchvision classifier "
            f"(model.name torchvision needs one, e.g. resnet50 or mobilenet_v3_small)"
        )
    return tvm.get_model(arch, weights=None, num_classes=num_classes)


BUILTIN_MODELS: dict[str, Builder] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "resnet18_cifar": build_resnet18_cifar,
    "airbench": build_airbench,
    "torchvision": build_torchvision,
}


def _check_builder(obj: Any, name: str) -> str | None:
    return None if callable(obj) else f"is a {type(obj).__name__}, not a builder (spec, input_shape, num_classes)"


MODELS: Registry[Builder] = Registry("clutune.models", "model", BUILTIN_MODELS, _check_builder)


def build_model(spec: dict[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Build the model ``spec["name"]`` (default mlp) for the dataset's input shape."""
    name = spec.get("name", "mlp")
    model = MODELS.get(name)(spec, tuple(input_shape), num_classes)
    if not isinstance(model, nn.Module):
        raise UserError(
            f"model {name!r} from {MODELS.origin(name)}: the builder returned a {type(model).__name__}, "
            "not an nn.Module"
        )
    return model
