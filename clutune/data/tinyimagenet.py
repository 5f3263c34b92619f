"""Tiny ImageNet (200 classes, 64x64) from the standard zip layout, with the official val split as test.

Decoding ~110k JPEGs takes minutes, so decoded arrays are cached outside the data folder (which may be
read-only), keyed by the file list so an edited or re-extracted copy is never served stale pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from clutune.data.cache import cache_dir, read_arrays, stat_key, write_arrays
from clutune.data.dataset import Dataset, make_dataset
from clutune.errors import UserError

FOLDER = "tiny-imagenet-200"
URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
SIZE = 64
PIXEL_MEAN = (0.4802, 0.4481, 0.3975)
PIXEL_STD = (0.2302, 0.2265, 0.2262)
# Bump when decoding changes (resize rule, colour conversion) so old caches stop matching.
_CACHE_VERSION = "1"
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_HOWTO = f"set dataset.root in the config to a folder holding {FOLDER} (get it from {URL}, extracted)"


def load_tinyimagenet(root: Path | None) -> Dataset:
    """Train rows go class by class in wnids.txt order, files sorted; test rows are val images by name."""
    folder = _locate(root)
    wnids = _read_wnids(folder / "wnids.txt")
    train = _train_files(folder, wnids)
    test = _val_files(folder, wnids)
    if not train or not test:
        counts = f"{len(train)} train and {len(test)} val JPEGs"
        raise UserError(f"Tiny ImageNet in {folder} has {counts}; {_HOWTO}")
    key_files = [folder / "wnids.txt", folder / "val" / "val_annotations.txt", *(p for p, _ in train + test)]
    cache = cache_dir() / f"tinyimagenet-{stat_key(folder, key_files, _CACHE_VERSION)}.npz"
    arrays = read_arrays(cache, _ARRAYS)
    if arrays is None:
        arrays = {
            "x_train": _decode([p for p, _ in train]),
            "y_train": np.array([y for _, y in train], dtype=np.int64),
            "x_test": _decode([p for p, _ in test]),
            "y_test": np.array([y for _, y in test], dtype=np.int64),
        }
        write_arrays(cache, arrays, "Tiny ImageNet")
    return make_dataset(
        "tinyimagenet",
        *(torch.from_numpy(arrays[k]) for k in _ARRAYS),
        class_names=_class_names(folder / "words.txt", wnids),
        pixel_mean=PIXEL_MEAN,
        pixel_std=PIXEL_STD,
    )


def _locate(root: Path | None) -> Path:
    """Accept the extracted folder or its parent, because users point at either."""
    if root is None:
        raise UserError(f"Tiny ImageNet needs a data folder but dataset.root is unset; {_HOWTO}")
    for candidate in (root / FOLDER, root):
        if (candidate / "wnids.txt").is_file():
            return candidate
    raise UserError(f"Tiny ImageNet not found: no wnids.txt in {root} or {root / FOLDER}; {_HOWTO}")


def _read_wnids(path: Path) -> list[str]:
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise UserError(f"Tiny ImageNet file {path} must list distinct wnids, one per line; {_HOWTO}")
    return wnids


def _train_files(folder: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    files: list[tuple[Path, int]] = []
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        if not images.is_dir():
            raise UserError(f"Tiny ImageNet train folder missing: {images}; {_HOWTO}")
        files += [(p, label) for p in sorted(images.glob("*.JPEG"))]
    return files


def _val_files(folder: Path, wnids: list[str]) -> list[tuple[Path, int]]:
    annotations = folder / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise UserError(f"Tiny ImageNet annotations missing: {annotations}; {_HOWTO}")
    index = {wnid: i for i, wnid in enumerate(wnids)}
    labels: dict[str, int] = {}
    for n, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in index:
            raise UserError(f"Tiny ImageNet {annotations} line {n} does not name a known wnid: {line!r}")
        labels[fields[0]] = index[fields[1]]
    files: list[tuple[Path, int]] = []
    for p in sorted((folder / "val" / "images").glob("*.JPEG")):
        if p.name not in labels:
            raise UserError(f"Tiny ImageNet val image {p} has no line in {annotations}")
        files.append((p, labels[p.name]))
    return files


def _class_names(words: Path, wnids: list[str]) -> list[str]:
    """Human-readable names where words.txt has them; the wnid itself otherwise."""
    names: dict[str, str] = {}
    if words.is_file():
        for line in words.read_text(encoding="utf-8").splitlines():
            wnid, _, text = line.partition("\t")
            names[wnid.strip()] = text.strip()
    return [names.get(w) or w for w in wnids]


def _decode(paths: list[Path]) -> np.ndarray:
    out = np.empty((len(paths), 3, SIZE, SIZE), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                rgb = im.convert("RGB")  # a few Tiny ImageNet images are grayscale
        except OSError as e:
            raise UserError(f"Tiny ImageNet image {p} cannot be decoded: {e}") from e
        if rgb.size != (SIZE, SIZE):
            rgb = rgb.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        out[i] = np.asarray(rgb).transpose(2, 0, 1)
    return out
