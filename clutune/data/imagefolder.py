"""Your own images with no code: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``, torchvision's ImageFolder
layout.

Classes are the class folders in sorted name order (label 0 is the first); a split's rows go class by class, the
files of a class sorted by their path inside its folder (sub-folders included), so a sample's id is the same on
every machine. Hidden files and folders (a leading dot) and files that are not images by their suffix are
skipped. Images keep their size, which must be one size for all of them unless ``image_size`` resizes every
image to a square; if every image is grayscale the set has one channel, otherwise three.

Decoded pixels are cached like Tiny ImageNet's (:mod:`clutune.data.cache`), keyed by the bytes of every file, so
a changed folder is never served stale pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from clutune.data.arrays import dataset_from_arrays
from clutune.data.cache import cache_dir, content_key, read_arrays, write_arrays
from clutune.data.dataset import Dataset
from clutune.data.inside_root import check_links_inside
from clutune.errors import UserError
from clutune.guards.memory_check import check_fits

SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")  # torchvision's list
SPLITS = ("train", "test")
# Bump when decoding changes (resize rule, colour conversion) so old caches stop matching.
_CACHE_VERSION = "1"
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_LAYOUT = "an image folder holds train/<class>/<image> and test/<class>/<image>"

Files = list[tuple[Path, int]]


def load_imagefolder(root: Path | None, image_size: int | None = None, follow_links: bool = False) -> Dataset:
    """The dataset in the image folder ``root``; every structural problem is refused before any decoding, and
    (unless ``follow_links``) a link to anything outside ``root`` before anything is listed."""
    if root is None:
        raise UserError(f"dataset imagefolder needs dataset.root; {_LAYOUT}")
    if not root.is_dir():
        raise UserError(f"dataset.root {root}: not a folder; {_LAYOUT}")
    if not follow_links:
        check_links_inside(root, f"dataset.root {root}")
    classes = _classes(root)
    files = {split: _files(root / split, classes, required=split == "train") for split in SPLITS}
    every = [p for split in SPLITS for p, _ in files[split]]
    _check_memory(every, image_size)
    try:
        key = content_key(root, every, f"{_CACHE_VERSION}\0{image_size}")
    except OSError as e:
        raise UserError(f"image {e.filename} cannot be read: {e.strerror or type(e).__name__}") from None
    cache = cache_dir() / f"imagefolder-{key}.npz"
    arrays = read_arrays(cache, _ARRAYS)
    if arrays is None:
        arrays = _decode_all(files, image_size)
        write_arrays(cache, arrays, "image folder")
    return dataset_from_arrays("imagefolder", f"dataset.root {root}", arrays, classes)


def _classes(root: Path) -> list[str]:
    """The class folders of train: a label is an index into this list. Test may lack a class (as an .npz's test
    split may, with the same note) but may not add one, whose label no training sample could have."""
    found = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            raise UserError(f"dataset.root {root}: no {split} folder; {_LAYOUT}")
        found[split] = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not found[split]:
            raise UserError(f"dataset.root {root}: {folder} holds no class folders; {_LAYOUT}")
    only_test = sorted(set(found["test"]) - set(found["train"]))
    if only_test:
        raise UserError(
            f"dataset.root {root}: class {only_test[0]!r} is only in test; every test class needs a train folder"
        )
    return found["train"]


def _files(folder: Path, classes: list[str], required: bool) -> Files:
    """Every image of ``folder`` with its label; a class without images is refused where ``required`` (train)."""
    files: Files = []
    for label, name in enumerate(classes):
        class_dir = folder / name
        images = sorted(
            (p for p in class_dir.rglob("*") if _is_image(p, class_dir)),
            key=lambda p: p.relative_to(class_dir).as_posix(),
        )
        if not images and required:
            raise UserError(f"class folder {class_dir} holds no images ({', '.join(SUFFIXES)})")
        files += [(p, label) for p in images]
    return files


def _is_image(path: Path, class_dir: Path) -> bool:
    parts = path.relative_to(class_dir).parts
    return path.suffix.lower() in SUFFIXES and not any(part.startswith(".") for part in parts) and path.is_file()


def _check_memory(every: list[Path], image_size: int | None) -> None:
    """Refuse, before decoding, what the pixels will take: each image decoded, then stacked (two uint8 copies
    of three channels), at ``image_size`` or at the first image's size read from its header alone."""
    if image_size is not None:
        width = height = image_size
        key, what = "dataset.image_size", f"{len(every)} images of {image_size}x{image_size}"
    else:
        try:
            with Image.open(every[0]) as im:
                width, height = im.size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return  # decoding names the unreadable image in one line
        key, what = "dataset.root", f"{len(every)} images of {width}x{height}"
    check_fits(len(every) * 3 * width * height * 2, key, what)


def _decode_all(files: dict[str, Files], image_size: int | None) -> dict[str, np.ndarray]:
    """Both splits decoded, at one size and one channel count for all, or a one-line error naming the image."""
    pixels: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    first: tuple[Path, tuple[int, int]] | None = None
    gray = True
    for split in SPLITS:
        for path, _ in files[split]:
            img = _decode(path, image_size)
            size = img.shape[:2]
            if first is None:
                first = (path, size)
            elif size != first[1]:
                raise UserError(
                    f"image {path} is {size[1]}x{size[0]} but {first[0]} is {first[1][1]}x{first[1][0]}: images must "
                    "share one size; set dataset.image_size to resize them all"
                )
            gray = gray and img.ndim == 2
            pixels[split].append(img)
    out = {}
    for split in SPLITS:
        stacked = [img[None] if img.ndim == 2 else img.transpose(2, 0, 1) for img in pixels[split]]
        if not gray:  # a grayscale image among colour ones gets three equal channels
            stacked = [np.repeat(img, 3, axis=0) if img.shape[0] == 1 else img for img in stacked]
        out[f"x_{split}"] = np.stack(stacked)
        out[f"y_{split}"] = np.array([label for _, label in files[split]], dtype=np.int64)
    return out


def _decode(path: Path, image_size: int | None) -> np.ndarray:
    """uint8 (H, W) for a grayscale image, (H, W, 3) otherwise."""
    try:
        with Image.open(path) as im:
            im = im.convert("L" if im.mode in _GRAY_MODES else "RGB")
            if image_size is not None and im.size != (image_size, image_size):
                im = im.resize((image_size, image_size), Image.Resampling.BILINEAR)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        text = str(e).strip().splitlines()
        raise UserError(f"image {path} cannot be read: {text[0] if text else type(e).__name__}") from None
