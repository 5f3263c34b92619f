"""A dataset is resident tensors plus stable ids, so methods index rows instead of building loaders."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import torch


@dataclass
class Dataset:
    """Train/test tensors with integer labels; a training sample's id is its row index in ``x_train``.

    Ids are the unit of ownership: requests, buffers and oracles all speak in ids, and the row index is stable
    because every reader returns samples in the order of the files it reads.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    fingerprint: str
    class_names: list[str] | None = None
    # Image sets stay uint8 on the device (4x less memory); these per-channel stats turn a fetched batch
    # into normalised floats. None means x is already float.
    pixel_mean: tuple[float, ...] | None = None
    pixel_std: tuple[float, ...] | None = None
    # Per device, the (mean, std) tensors: built once, because building them per batch on CUDA is a blocking copy.
    _stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Model-ready float inputs for rows taken from ``x_train`` or ``x_test``."""
        if self.pixel_mean is None:
            return x
        mean, std = self._pixel_stats(x.device)
        return (x.float() / 255.0 - mean) / std

    def _pixel_stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._stats:
            mean = torch.tensor(self.pixel_mean, device=device).view(1, -1, 1, 1)
            std = torch.tensor(self.pixel_std, device=device).view(1, -1, 1, 1)
            self._stats[device] = (mean, std)
        return self._stats[device]

    def __getstate__(self) -> dict:
        """Pickled without the cached stats, which may sit on a device the receiving process does not have."""
        return {**self.__dict__, "_stats": {}}

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> Dataset:
        return Dataset(
            name=self.name,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            num_classes=self.num_classes,
            fingerprint=self.fingerprint,
            class_names=self.class_names,
            pixel_mean=self.pixel_mean,
            pixel_std=self.pixel_std,
        )


def fingerprint(name: str, *tensors: torch.Tensor) -> str:
    """Content hash: an oracle cached for one version of the data must never be reused for another."""
    h = hashlib.sha256(name.encode())
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def make_dataset(
    name: str,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    class_names: list[str] | None = None,
    pixel_mean: tuple[float, ...] | None = None,
    pixel_std: tuple[float, ...] | None = None,
) -> Dataset:
    y_train = y_train.long()
    y_test = y_test.long()
    num_classes = int(max(int(y_train.max()), int(y_test.max())) + 1)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=num_classes,
        fingerprint=fingerprint(name, x_train, y_train, x_test, y_test),
        class_names=class_names,
        pixel_mean=pixel_mean,
        pixel_std=pixel_std,
    )
