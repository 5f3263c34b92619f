"""Image readers against tiny files written in the real on-disk formats, so no download is needed."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from clutune.data import load_dataset
from clutune.data.cifar10 import load_cifar10
from clutune.data.tinyimagenet import load_tinyimagenet
from clutune.errors import UserError

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TINY_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLUTUNE_DATA_CACHE", str(tmp_path / "cache"))


def _single_line(exc: pytest.ExceptionInfo[UserError]) -> bool:
    return "\n" not in str(exc.value)


# ---------------------------------------------------------------- CIFAR-10


def _pickle(path: Path, obj: dict, bytes_keys: bool) -> None:
    if bytes_keys:
        obj = {k.encode(): v for k, v in obj.items()}
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _write_cifar(parent: Path, bytes_keys: bool = False) -> Arrays:
    """Five train batches of 4 images and a test batch of 3, as the release lays them out."""
    folder = parent / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=4)]
        _pickle(
            folder / f"data_batch_{i}",
            {"batch_label": f"training batch {i} of 5", "data": data, "labels": labels},
            bytes_keys,
        )
        xs.append(data)
        ys.extend(labels)
    x_test = rng.integers(0, 256, size=(3, 3072), dtype=np.uint8)
    y_test = [9, 0, 4]
    _pickle(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "data": x_test, "labels": y_test},
        bytes_keys,
    )
    names = [n.encode() for n in CIFAR_NAMES] if bytes_keys else CIFAR_NAMES
    _pickle(folder / "batches.meta", {"label_names": names, "num_cases_per_batch": 4, "num_vis": 3072}, bytes_keys)
    return np.concatenate(xs), np.array(ys), x_test, np.array(y_test)


@pytest.mark.parametrize("bytes_keys", [False, True])
def test_cifar_round_trips_pixels_labels_and_names(tmp_path: Path, bytes_keys: bool) -> None:
    x_tr, y_tr, x_te, y_te = _write_cifar(tmp_path, bytes_keys)
    ds = load_cifar10(tmp_path)

    assert ds.name == "cifar10"
    assert ds.x_train.shape == (20, 3, 32, 32) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (3, 3, 32, 32) and ds.x_test.dtype == torch.uint8
    assert ds.y_train.dtype == torch.int64 and ds.y_test.dtype == torch.int64
    # Row-major 3072 = channel planes of 32x32, so (N, 3, 32, 32) is a plain reshape in file order.
    assert torch.equal(ds.x_train, torch.from_numpy(x_tr.reshape(20, 3, 32, 32)))
    assert torch.equal(ds.x_test, torch.from_numpy(x_te.reshape(3, 3, 32, 32)))
    assert ds.y_train.tolist() == y_tr.tolist()
    assert ds.y_test.tolist() == y_te.tolist()
    assert ds.class_names == CIFAR_NAMES
    assert ds.pixel_mean == (0.4914, 0.4822, 0.4465)
    assert ds.pixel_std == (0.2470, 0.2435, 0.2616)


def test_cifar_accepts_the_folder_itself_and_the_registry_name(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    from_parent = load_cifar10(tmp_path)
    from_folder = load_cifar10(tmp_path / "cifar-10-batches-py")
    via_registry = load_dataset("cifar10", str(tmp_path))
    assert from_parent.fingerprint == from_folder.fingerprint == via_registry.fingerprint


def test_cifar_fingerprint_is_stable_and_sees_one_pixel(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    first = load_cifar10(tmp_path).fingerprint
    assert load_cifar10(tmp_path).fingerprint == first

    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with path.open("rb") as f:
        batch = pickle.load(f, encoding="latin1")
    batch["data"][2, 100] ^= 1
    _pickle(path, batch, bytes_keys=False)
    assert load_cifar10(tmp_path).fingerprint != first


def test_cifar_missing_folder_says_where_it_looked_and_where_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match="cifar-10-python.tar.gz") as exc:
        load_cifar10(missing)
    assert str(missing) in str(exc.value)
    assert CIFAR_URL in str(exc.value) and "dataset.root" in str(exc.value)
    assert _single_line(exc)


def test_cifar_without_root_points_at_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset.root") as exc:
        load_cifar10(None)
    assert CIFAR_URL in str(exc.value) and _single_line(exc)


def test_cifar_missing_batch_names_the_file(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(UserError, match="data_batch_4") as exc:
        load_cifar10(tmp_path)
    assert str(tmp_path / "cifar-10-batches-py" / "data_batch_4") in str(exc.value)
    assert _single_line(exc)


def test_cifar_garbage_file_is_a_user_error(tmp_path: Path) -> None:
    _write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="test_batch") as exc:
        load_cifar10(tmp_path)
    assert _single_line(exc)


# ---------------------------------------------------------------- Tiny ImageNet

WNIDS = ["n01443537", "n01629819", "n01641577"]
# Train colours per class, two images each; the second image of class 1 is grayscale.
TRAIN = {
    "n01443537": [("n01443537_0.JPEG", (200, 30, 30)), ("n01443537_1.JPEG", (30, 200, 30))],
    "n01629819": [("n01629819_0.JPEG", (30, 30, 200)), ("n01629819_1.JPEG", 128)],
    "n01641577": [("n01641577_0.JPEG", (220, 220, 40)), ("n01641577_1.JPEG", (40, 220, 220))],
}
# Written out of name order, to check that the reader sorts; the 32x32 one checks the resize.
VAL = [
    ("val_3.JPEG", "n01443537", (250, 250, 250), 64),
    ("val_0.JPEG", "n01641577", (10, 10, 10), 64),
    ("val_2.JPEG", "n01629819", (180, 90, 20), 32),
    ("val_1.JPEG", "n01443537", (20, 90, 180), 64),
]


def _jpeg(path: Path, colour: tuple[int, int, int] | int, size: int = 64) -> None:
    mode = "L" if isinstance(colour, int) else "RGB"
    Image.new(mode, (size, size), colour).save(path, "JPEG", quality=95)


def _write_tiny(parent: Path, words: bool = True) -> Path:
    folder = parent / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    if words:
        (folder / "words.txt").write_text(
            "n00001740\tentity\n"
            "n01443537\tgoldfish, Carassius auratus\n"
            "n01629819\tEuropean fire salamander, Salamandra salamandra\n"
        )
    for wnid, images in TRAIN.items():
        (folder / "train" / wnid / "images").mkdir(parents=True)
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for name, colour in images:
            _jpeg(folder / "train" / wnid / "images" / name, colour)
    (folder / "val" / "images").mkdir(parents=True)
    for name, _, colour, size in VAL:
        _jpeg(folder / "val" / "images" / name, colour, size)
    (folder / "val" / "val_annotations.txt").write_text(
        "".join(f"{name}\t{wnid}\t0\t0\t63\t63\n" for name, wnid, _, _ in VAL)
    )
    (folder / "test" / "images").mkdir(parents=True)
    _jpeg(folder / "test" / "images" / "test_0.JPEG", (0, 0, 0))
    return folder


def _mean_colour(x: torch.Tensor) -> list[float]:
    return x.float().mean(dim=(1, 2)).tolist()


def _close(x: torch.Tensor, colour: tuple[int, int, int] | int) -> bool:
    want = [colour] * 3 if isinstance(colour, int) else list(colour)
    return all(abs(got - w) < 4 for got, w in zip(_mean_colour(x), want, strict=True))


def test_tiny_reads_labels_order_shapes_and_colours(tmp_path: Path) -> None:
    _write_tiny(tmp_path)
    ds = load_tinyimagenet(tmp_path)

    assert ds.name == "tinyimagenet"
    assert ds.x_train.shape == (6, 3, 64, 64) and ds.x_train.dtype == torch.uint8
    assert ds.x_test.shape == (4, 3, 64, 64) and ds.x_test.dtype == torch.uint8
    assert ds.y_train.dtype == torch.int64 and ds.y_test.dtype == torch.int64
    assert ds.y_train.tolist() == [0, 0, 1, 1, 2, 2]
    train_colours = [c for images in TRAIN.values() for _, c in images]
    assert all(_close(ds.x_train[i], c) for i, c in enumerate(train_colours))

    val_sorted = sorted(VAL)
    assert ds.y_test.tolist() == [WNIDS.index(wnid) for _, wnid, _, _ in val_sorted]
    assert all(_close(ds.x_test[i], c) for i, (_, _, c, _) in enumerate(val_sorted))

    assert ds.class_names == [
        "goldfish, Carassius auratus",
        "European fire salamander, Salamandra salamandra",
        "n01641577",
    ]
    assert ds.num_classes == 3
    assert ds.pixel_mean == (0.4802, 0.4481, 0.3975)
    assert ds.pixel_std == (0.2302, 0.2265, 0.2262)


def test_tiny_without_words_names_classes_by_wnid(tmp_path: Path) -> None:
    _write_tiny(tmp_path, words=False)
    assert load_tinyimagenet(tmp_path / "tiny-imagenet-200").class_names == WNIDS


def test_tiny_cache_is_written_once_and_then_served(tmp_path: Path) -> None:
    _write_tiny(tmp_path)
    first = load_tinyimagenet(tmp_path)
    caches = list((tmp_path / "cache").iterdir())
    assert len(caches) == 1 and caches[0].name.startswith("tinyimagenet-") and caches[0].suffix == ".npz"
    mtime = caches[0].stat().st_mtime_ns

    again = load_dataset("tinyimagenet", tmp_path / "tiny-imagenet-200")
    assert again.fingerprint == first.fingerprint
    assert list((tmp_path / "cache").iterdir()) == caches and caches[0].stat().st_mtime_ns == mtime

    # Overwrite the cached pixels: if a load still decoded JPEGs it could not return these.
    with np.load(caches[0]) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["x_train"] = np.full_like(arrays["x_train"], 7)
    np.savez(caches[0], **arrays)
    assert bool((load_tinyimagenet(tmp_path).x_train == 7).all())


def test_tiny_fingerprint_sees_a_changed_image(tmp_path: Path) -> None:
    folder = _write_tiny(tmp_path)
    first = load_tinyimagenet(tmp_path).fingerprint

    path = folder / "train" / "n01641577" / "images" / "n01641577_0.JPEG"
    before = path.stat()
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[5, 5] = (0, 0, 0)
    Image.fromarray(pixels).save(path, "JPEG", quality=95)
    # Coarse filesystem clocks can give a quick rewrite the same mtime; a real edit never lands that fast.
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))

    assert load_tinyimagenet(tmp_path).fingerprint != first
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_tiny_missing_folder_says_where_it_looked_and_where_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="tiny-imagenet-200.zip") as exc:
        load_tinyimagenet(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(exc.value)
    assert TINY_URL in str(exc.value) and "dataset.root" in str(exc.value)
    assert _single_line(exc)

    with pytest.raises(UserError, match="dataset.root") as exc:
        load_tinyimagenet(None)
    assert TINY_URL in str(exc.value) and _single_line(exc)


def test_tiny_missing_wnids_or_annotations_is_one_line(tmp_path: Path) -> None:
    folder = _write_tiny(tmp_path)
    (folder / "val" / "val_annotations.txt").unlink()
    with pytest.raises(UserError, match="val_annotations.txt") as exc:
        load_tinyimagenet(tmp_path)
    assert str(folder / "val" / "val_annotations.txt") in str(exc.value) and TINY_URL in str(exc.value)
    assert _single_line(exc)

    (folder / "wnids.txt").unlink()
    with pytest.raises(UserError, match="wnids.txt") as exc:
        load_tinyimagenet(tmp_path)
    assert str(tmp_path) in str(exc.value) and TINY_URL in str(exc.value)
    assert _single_line(exc)
    assert not (tmp_path / "cache").exists()


def test_tiny_rebuilds_a_corrupt_cache(tmp_path: Path) -> None:
    _write_tiny(tmp_path)
    first = load_tinyimagenet(tmp_path)
    (cache,) = (tmp_path / "cache").iterdir()
    cache.write_bytes(b"truncated")
    assert load_tinyimagenet(tmp_path).fingerprint == first.fingerprint
    with np.load(cache) as npz:
        assert sorted(npz.files) == ["x_test", "x_train", "y_test", "y_train"]


def test_tiny_unwritable_cache_warns_but_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_tiny(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    monkeypatch.setenv("CLUTUNE_DATA_CACHE", str(blocker / "cache"))
    with pytest.warns(UserWarning, match="cache not written"):
        ds = load_tinyimagenet(tmp_path)
    assert ds.n_train == 6
