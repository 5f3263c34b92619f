"""sklearn's 8x8 digits: ships inside the scikit-learn wheel, so it is the offline default."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits as _sk_load_digits
from sklearn.model_selection import train_test_split

from clutune.data.dataset import Dataset, make_dataset


def load_digits() -> Dataset:
    raw = _sk_load_digits()
    x = raw.data.astype("float32") / 16.0
    y = raw.target.astype("int64")
    # A stratified 75/25 split with a fixed random_state, the same split calibration.md measured on.
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    return make_dataset(
        "digits",
        torch.from_numpy(x_tr),
        torch.from_numpy(y_tr),
        torch.from_numpy(x_te),
        torch.from_numpy(y_te),
        class_names=[str(i) for i in range(10)],
    )
