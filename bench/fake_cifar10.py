"""Write a CIFAR-10-shaped folder (the real cifar-10-batches-py pickle format) of random pixels.

For machines without the real data (a lent GPU machine has no internet): timings need the real shapes, not
the real pictures. Usage: python bench/fake_cifar10.py DIR [--train 50000] [--test 10000]
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("root")
    parser.add_argument("--train", type=int, default=50000)
    parser.add_argument("--test", type=int, default=10000)
    args = parser.parse_args()
    folder = Path(args.root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    per = args.train // 5
    for i, name in enumerate([*(f"data_batch_{b}" for b in range(1, 6)), "test_batch"]):
        n = per if i < 5 else args.test
        batch = {
            "batch_label": name,
            "labels": rng.integers(0, 10, n).tolist(),
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{j}.png" for j in range(n)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
    meta = {"label_names": [f"class{c}" for c in range(10)], "num_cases_per_batch": per, "num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    print(f"wrote {folder}")


if __name__ == "__main__":
    main()
