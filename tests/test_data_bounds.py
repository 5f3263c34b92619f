"""User data stays in its folder and within this machine's memory: links out of a data root are refused unless
``dataset.follow_links`` is true; an npz header, an image size and a first layer are sized before anything is
allocated; values beyond float32 are refused. Real files, real links."""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clutune.data import load_dataset
from clutune.data.cache import CACHE_ENV
from clutune.errors import UserError
from clutune.models import build_mlp

CLASSES = ("ant", "bee", "cat", "dog")


def write_folder(root: Path) -> Path:
    """ROOT/{train,test}/<class>/<n>.png: 8 train and 3 test 10x12 RGB images per class, each class a colour."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 3)):
        for label, name in enumerate(CLASSES):
            (root / split / name).mkdir(parents=True)
            for i in range(n):
                pixels = np.clip(40 + 50 * label + rng.normal(0, 10, size=(10, 12, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i:02d}.png")
    return root


def write_npz(path: Path, **replace: np.ndarray) -> Path:
    """48 train and 16 test vectors of 6 floats, four classes; ``replace`` swaps an array to make a bad file."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 48), ("test", 16)):
        y = np.arange(n) % len(CLASSES)
        arrays[f"x_{split}"] = (np.eye(len(CLASSES), 6)[y] * 3 + rng.normal(0, 0.5, (n, 6))).astype(np.float32)
        arrays[f"y_{split}"] = y
    np.savez(path, **{**arrays, **replace})
    return path


@pytest.fixture(autouse=True)
def _data_cache(tmp_path: Path) -> Iterator[None]:
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path / "data-cache")
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


def _one_line(e: pytest.ExceptionInfo) -> str:
    message = str(e.value)
    assert "\n" not in message
    return message


def test_a_class_folder_linked_outside_the_root_is_refused_before_any_read(tmp_path):
    root = write_folder(tmp_path / "pets")
    outside = write_folder(tmp_path / "elsewhere") / "train" / "ant"
    for split in ("train", "test"):
        target = root / split / "ant"
        for f in target.iterdir():
            f.unlink()
        target.rmdir()
        target.symlink_to(outside, target_is_directory=True)
    with pytest.raises(UserError) as refused:
        load_dataset("imagefolder", root)
    assert "links to" in _one_line(refused) and "follow_links" in str(refused.value)
    assert not (tmp_path / "data-cache").exists()  # nothing decoded, nothing cached

    assert load_dataset("imagefolder", root, follow_links=True).num_classes == 4


def test_a_file_linked_outside_the_root_is_refused(tmp_path):
    root = write_folder(tmp_path / "pets")
    secret = tmp_path / "private.png"
    (root / "train" / "ant" / "00.png").rename(secret)
    (root / "train" / "ant" / "00.png").symlink_to(secret)
    with pytest.raises(UserError) as refused:
        load_dataset("imagefolder", root)
    assert str(secret) in _one_line(refused)
    assert load_dataset("imagefolder", root, follow_links=True).n_train == 32


def test_a_link_to_the_root_of_the_disk_is_one_check_not_a_scan(tmp_path):
    root = write_folder(tmp_path / "pets")
    (root / "train" / "ant" / "everything").symlink_to("/", target_is_directory=True)
    with pytest.raises(UserError, match="links to /, outside"):
        load_dataset("imagefolder", root)


def test_a_link_inside_the_root_is_fine(tmp_path):
    root = write_folder(tmp_path / "pets")
    (root / "test" / "ant" / "again.png").symlink_to(root / "train" / "ant" / "00.png")
    assert load_dataset("imagefolder", root).n_test == 13


def test_an_npz_linked_from_outside_its_folder_is_refused(tmp_path):
    data = write_npz(tmp_path / "elsewhere.npz")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "data.npz").symlink_to(data)
    with pytest.raises(UserError) as refused:
        load_dataset("npz", path=tmp_path / "mine" / "data.npz")
    assert "links to" in _one_line(refused)
    assert load_dataset("npz", path=tmp_path / "mine" / "data.npz", follow_links=True).n_train == 48


def _npz_claiming(path: Path, rows: int) -> Path:
    """A real .npz whose x_train header claims ``rows`` rows of 8 floats, with only a few bytes behind it."""
    small = {k: v for k, v in np.load(write_npz(path.with_suffix(".small.npz"))).items()}
    with zipfile.ZipFile(path, "w") as z:
        for key, value in small.items():
            buffer = io.BytesIO()
            if key == "x_train":
                header = {"descr": "<f4", "fortran_order": False, "shape": (rows, 8)}
                np.lib.format.write_array_header_1_0(buffer, header)
                buffer.write(b"\0" * 64)
            else:
                np.lib.format.write_array(buffer, value)
            z.writestr(f"{key}.npy", buffer.getvalue())
    return path


def test_an_npz_header_claiming_10_to_the_12_rows_is_refused_from_the_header(tmp_path):
    with pytest.raises(UserError) as refused:
        load_dataset("npz", path=_npz_claiming(tmp_path / "bomb.npz", 10**12))
    message = _one_line(refused)
    assert "dataset.path" in message and "TiB" in message and "more than this machine's" in message


def test_an_image_size_of_100000_is_refused_before_decoding(tmp_path):
    root = write_folder(tmp_path / "pets")
    with pytest.raises(UserError) as refused:
        load_dataset("imagefolder", root, image_size=100000)
    assert "dataset.image_size" in _one_line(refused) and "more than this machine's" in str(refused.value)
    assert not (tmp_path / "data-cache").exists()


def test_two_million_features_into_65536_units_is_refused_before_allocation():
    with pytest.raises(UserError) as refused:
        build_mlp({"hidden": [65536]}, (2_000_000,), 10)
    assert "model.hidden" in _one_line(refused) and "2000000 features" in str(refused.value)


def test_npz_values_beyond_float32_are_refused(tmp_path):
    x = np.ones((48, 6))
    x[3, 2] = 1e39
    with pytest.raises(UserError) as refused:
        load_dataset("npz", path=write_npz(tmp_path / "big.npz", x_train=x))
    assert "beyond float32" in _one_line(refused)
