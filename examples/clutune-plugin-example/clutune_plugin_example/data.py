"""example_blobs: Gaussian class clusters generated locally from a seed, so the example needs no download.

``dataset: {name: example_blobs, options: {classes: 6, per_class: 60, features: 16, seed: 0}}``
"""

from __future__ import annotations

import torch

from clutune.core.config import DatasetConfig
from clutune.data import Dataset, make_dataset
from clutune.errors import UserError

DEFAULTS = {"classes": 6, "per_class": 60, "features": 16, "seed": 0}


def read_blobs(section: DatasetConfig) -> Dataset:
    """clutune's reader contract: the ``dataset`` config section in, a Dataset (stable sample order) out."""
    unknown = set(section.options) - set(DEFAULTS)
    if unknown:
        raise UserError(f"config key 'dataset.options.{sorted(unknown)[0]}': example_blobs knows {sorted(DEFAULTS)}")
    opts = {**DEFAULTS, **section.options}
    for key, value in opts.items():
        least = 0 if key == "seed" else 2
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"config key 'dataset.options.{key}': expected an integer >= {least}, got {value!r}")
    g = torch.Generator().manual_seed(opts["seed"])
    centres = torch.randn(opts["classes"], opts["features"], generator=g) * 2.5

    def split(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(opts["classes"]).repeat_interleave(per_class)
        return centres[y] + torch.randn(len(y), opts["features"], generator=g), y

    x_train, y_train = split(opts["per_class"])
    x_test, y_test = split(max(2, opts["per_class"] // 4))
    # make_dataset fingerprints the tensors' content: other options give other data and other cached oracles.
    return make_dataset("example_blobs", x_train, y_train, x_test, y_test)
