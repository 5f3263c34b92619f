"""MNIST-1D generated locally from its fixed default arguments; the package's download path is never taken."""

from __future__ import annotations

import torch

from clutune.data.dataset import Dataset, make_dataset


def load_mnist1d(samples: int | None = None) -> Dataset:
    """The package's default 5,000 samples, or ``samples`` in total (train + test, its usual 80/20 split).

    Generation is deterministic (seed 42) and costs about half a millisecond per sample on one core, so 60,000
    samples take roughly 30 s. The content fingerprint changes with ``samples``, so cached oracles never mix.
    """
    from mnist1d.data import get_dataset_args
    from mnist1d.data import make_dataset as _generate

    args = get_dataset_args()  # seed 42, 5000 samples: deterministic
    if samples is not None:
        args.num_samples = int(samples)  # the package draws num_samples // 10 per class
    data = _generate(args)
    x_tr = torch.as_tensor(data["x"], dtype=torch.float32)
    x_te = torch.as_tensor(data["x_test"], dtype=torch.float32)
    y_tr = torch.as_tensor(data["y"], dtype=torch.int64)
    y_te = torch.as_tensor(data["y_test"], dtype=torch.int64)
    return make_dataset("mnist1d", x_tr, y_tr, x_te, y_te, class_names=[str(i) for i in range(10)])
