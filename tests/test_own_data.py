"""A user's own data with no code: npz arrays (vectors and images) and an image folder of real PNG files run
end to end through `clutune run` and `clutune compare`; every kind of bad data is refused with exit 2 and one
line before anything is written; the content fingerprint follows the content."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from clutune.cli import main
from clutune.data import load_dataset
from clutune.data.arrays import MissingTestClass
from clutune.data.cache import CACHE_ENV
from clutune.errors import UserError

CONFIG = """
name: own-data
dataset: DATASET
model: MODEL
oracle: {epochs: 2, batch_size: 16, cache_dir: CACHE}
probe_size: 50
scenario:
  classes_per_task: 2
  requests:
    - learn: {task: 0}
    - learn: {task: 1}
    - unlearn: {classes: [1]}
"""
FAST = ["methods.finetune.epochs_per_learn=2", "methods.finetune.iters_per_unlearn=5"]
FAST += ["methods.er.epochs_per_learn=2", "methods.er.iters_per_unlearn=5", "methods.er.buffer_size=20"]
CLASSES = ("ant", "bee", "cat", "dog")  # four classes: two tasks of two


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Decoded images go to a temporary cache, in this process and in the Ray workers it starts (which copy
    the environment when Ray starts), never to the home folder."""
    folder = tmp_path_factory.mktemp("data-cache")
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


# ---------------------------------------------------------------- writers of real files


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % len(CLASSES)


def write_npz(path: Path, images: bool = False, seed: int = 0, **replace: np.ndarray | None) -> Path:
    """Learnable data: each class a cluster. Vectors (N, 6) float32, or uint8 images (N, 8, 8) without a
    channel axis. ``replace`` swaps (or with None drops) an array, to make bad files."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", 48), ("test", 16)):
        y = _labels(n)
        if images:
            base = np.linspace(40, 200, len(CLASSES))[y][:, None, None]
            x = np.clip(base + rng.normal(0, 20, size=(n, 8, 8)), 0, 255).astype(np.uint8)
        else:
            x = (np.eye(len(CLASSES), 6)[y] * 3 + rng.normal(0, 0.5, size=(n, 6))).astype(np.float32)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x, y
    for key, value in replace.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    np.savez(path, **arrays)
    return path


def write_png(path: Path, label: int, rng: np.random.Generator, size: tuple[int, int] = (10, 12)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [200, 200, 30]][label], dtype=np.float64)
    pixels = np.clip(colour + rng.normal(0, 25, size=(*size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)


def write_folder(root: Path, per_class: dict[str, int] | None = None) -> Path:
    """ROOT/{train,test}/<class>/<n>.png: 8 train and 3 test images per class, 10x12 RGB."""
    rng = np.random.default_rng(0)
    per_class = per_class or {"train": 8, "test": 3}
    for split, n in per_class.items():
        for label, name in enumerate(CLASSES):
            for i in range(n):
                write_png(root / split / name / f"{i:02d}.png", label, rng)
    return root


def write_config(folder: Path, dataset: str, model: str = "{name: mlp, hidden: [16]}") -> Path:
    path = folder / "own.yaml"
    text = CONFIG.replace("DATASET", dataset).replace("MODEL", model).replace("CACHE", str(folder / "oracles"))
    path.write_text(text)
    return path


def cli(*argv: str, sets: list[str] | None = None) -> int:
    extra = [a for s in [*(sets or []), "device=cpu"] for a in ("--set", s)]
    return main([*argv, *extra])


# ---------------------------------------------------------------- end to end

KINDS = {
    "npz-vectors": lambda d: f"{{name: npz, path: {write_npz(d / 'vectors.npz')}}}",
    "npz-images": lambda d: f"{{name: npz, path: {write_npz(d / 'images.npz', images=True)}}}",
    "imagefolder": lambda d: f"{{name: imagefolder, root: {write_folder(d / 'pics')}}}",
}
MODELS = {"npz-vectors": "{name: mlp, hidden: [16]}", "npz-images": "{name: cnn, width: 8}"}


# one kind in the fast loop, the npz kinds in `make test` (each a run and a Ray grid)
@pytest.mark.parametrize(
    "kind", [k if k == "imagefolder" else pytest.param(k, marks=pytest.mark.slow) for k in sorted(KINDS)]
)
def test_own_data_runs_and_compares_on_shared_oracles(local_ray, kind: str, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, KINDS[kind](tmp_path), MODELS.get(kind, "{name: cnn, width: 8}"))
    run_out, grid_out = tmp_path / "run", tmp_path / "compare"
    run = ["run", "--config", str(config), "--method", "finetune", "--out", str(run_out), "--no-tracking"]
    assert cli(*run, sets=FAST) == 0
    rows = pq.read_table(run_out / "results.parquet").to_pylist()
    assert [r["kind"] for r in rows] == ["learn", "learn", "unlearn"]
    assert all(np.isfinite(r["kl_oracle_all"]) and 0 <= r["acc_test"] <= 1 for r in rows)
    n_train = 32 if kind == "imagefolder" else 48
    assert rows[-1]["n_owned"] == n_train - n_train // 4  # class 1 of four unlearned
    oracles = sorted(p.name for p in (tmp_path / "oracles").iterdir() if p.name != "leases")
    assert len(oracles) == 3

    compare = ["compare", "--config", str(config), "--methods", "finetune,er", "--out", str(grid_out), "--no-tracking"]
    assert cli(*compare, sets=FAST) == 0, capsys.readouterr().err
    grid = pq.read_table(grid_out / "results.parquet").to_pylist()
    assert {(r["method"], r["request"]) for r in grid} == {(m, k) for m in ("finetune", "er") for k in range(3)}
    # The same content gives the same fingerprint, so the compare scored against the oracles the run trained.
    assert {r["oracle_key"] for r in grid} == {r["oracle_key"] for r in rows}
    assert sorted(p.name for p in (tmp_path / "oracles").iterdir() if p.name != "leases") == oracles


def test_npz_images_get_a_channel_axis_and_normalised_pixels(tmp_path: Path) -> None:
    ds = load_dataset("npz", path=write_npz(tmp_path / "images.npz", images=True))
    assert ds.input_shape == (1, 8, 8) and ds.x_train.dtype.is_floating_point is False
    assert ds.num_classes == 4 and ds.class_names == ["0", "1", "2", "3"]
    x = ds.inputs(ds.x_train)
    assert abs(float(x.mean())) < 1e-4 and abs(float(x.std()) - 1) < 1e-2  # train statistics per channel


def test_npz_class_names_are_read(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "named.npz", class_names=np.array(CLASSES))
    assert load_dataset("npz", path=path).class_names == list(CLASSES)


def test_imagefolder_classes_in_sorted_order_and_rows_by_file(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pics")
    ds = load_dataset("imagefolder", root=root)
    assert ds.class_names == sorted(CLASSES) and ds.input_shape == (3, 10, 12)
    assert ds.y_train.tolist() == [c for c in range(4) for _ in range(8)]
    first = np.asarray(Image.open(root / "train" / "ant" / "00.png")).transpose(2, 0, 1)
    assert (ds.x_train[0].numpy() == first).all()
    resized = load_dataset("imagefolder", root=root, image_size=6)
    assert resized.input_shape == (3, 6, 6) and resized.fingerprint != ds.fingerprint


def test_imagefolder_of_grayscale_images_has_one_channel(tmp_path: Path) -> None:
    root = tmp_path / "gray"
    for split, n in (("train", 2), ("test", 1)):
        for label, name in enumerate(CLASSES[:2]):
            for i in range(n):
                (root / split / name).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((5, 5), 60 * label + i, dtype=np.uint8)).save(root / split / name / f"{i}.png")
    assert load_dataset("imagefolder", root=root).input_shape == (1, 5, 5)


def _without_test_class(kind: str, d: Path) -> Path:
    """The same set either way, but with no test sample of class 2 ('cat')."""
    if kind == "npz":
        y_test = _labels(16)
        keep = y_test != 2
        with np.load(write_npz(d / "full.npz")) as npz:
            x_test = npz["x_test"][keep]
        return write_npz(d / "gap.npz", x_test=x_test, y_test=y_test[keep])
    root = write_folder(d / "pics")
    for p in (root / "test" / "cat").iterdir():
        p.unlink()
    (root / "test" / "cat").rmdir()
    return root


@pytest.mark.parametrize("kind", ["npz", "imagefolder"])
def test_a_test_split_may_lack_a_class_with_the_same_one_line_note(kind: str, tmp_path: Path) -> None:
    where = _without_test_class(kind, tmp_path)
    with pytest.warns(MissingTestClass) as notes:
        ds = load_dataset(kind, **({"path": where} if kind == "npz" else {"root": where}))
    assert ds.num_classes == 4 and 2 not in ds.y_test.tolist()
    (note,) = [str(n.message) for n in notes if issubclass(n.category, MissingTestClass)]
    assert "\n" not in note
    assert note.endswith("the test split has no sample of class 2; test metrics cover the other classes only")


def test_string_labels_get_the_hint_to_map_them_to_integers(tmp_path: Path) -> None:
    path = write_npz(tmp_path / "named.npz", y_test=np.array(CLASSES)[_labels(16)])
    with pytest.raises(UserError, match=r"y_test holds strings \(dtype <U3\); map them to integers") as e:
        load_dataset("npz", path=path)
    assert "np.unique(y_test, return_inverse=True)" in str(e.value) and "class_names" in str(e.value)


# ---------------------------------------------------------------- fingerprints and the cache


def test_npz_fingerprint_follows_content_not_file(tmp_path: Path) -> None:
    a = load_dataset("npz", path=write_npz(tmp_path / "a.npz"))
    copy = load_dataset("npz", path=write_npz(tmp_path / "copy.npz"))
    assert a.fingerprint == copy.fingerprint
    with np.load(tmp_path / "a.npz") as npz:
        arrays = dict(npz)
    arrays["x_test"][3, 2] += 1.0
    np.savez(tmp_path / "a.npz", **arrays)
    assert load_dataset("npz", path=tmp_path / "a.npz").fingerprint != a.fingerprint


def test_imagefolder_fingerprint_follows_content_and_the_cache_is_never_stale(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    root = write_folder(tmp_path / "pics")
    first = load_dataset("imagefolder", root=root)
    assert len(list(cache.iterdir())) == 1
    assert load_dataset("imagefolder", root=root).fingerprint == first.fingerprint
    assert len(list(cache.iterdir())) == 1  # served from the cache, not decoded again into a second entry

    target = root / "test" / "bee" / "01.png"
    stat = target.stat()
    pixels = np.asarray(Image.open(target)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(target)
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the bytes tell the change
    changed = load_dataset("imagefolder", root=root)
    assert changed.fingerprint != first.fingerprint
    row = 3 + 1  # test rows: ant 00-02, then bee 00, 01
    assert (changed.x_test[row].numpy() == pixels.transpose(2, 0, 1)).all()
    assert len(list(cache.iterdir())) == 2


# ---------------------------------------------------------------- bad data: exit 2, one line, nothing written


def _bad_npz(**replace: np.ndarray | None):
    def make(d: Path) -> str:
        return f"{{name: npz, path: {write_npz(d / 'bad.npz', **replace)}}}"

    return make


def _bad_folder(edit):
    def make(d: Path) -> str:
        root = write_folder(d / "pics")
        edit(root)
        return f"{{name: imagefolder, root: {root}}}"

    return make


def _garbage_file(d: Path) -> str:
    (d / "bad.npz").write_bytes(b"not an archive")
    return f"{{name: npz, path: {d / 'bad.npz'}}}"


def _object_array(d: Path) -> str:
    write_npz(d / "bad.npz", y_test=np.array([object()] * 16, dtype=object))
    return f"{{name: npz, path: {d / 'bad.npz'}}}"


def _empty_class(root: Path) -> None:
    for p in (root / "train" / "cat").iterdir():
        p.unlink()


def _extra_class(root: Path) -> None:
    write_png(root / "test" / "eel" / "00.png", 0, np.random.default_rng(1))


def _unreadable(root: Path) -> None:
    (root / "train" / "dog" / "05.png").write_bytes(b"\x89PNG but not really")


def _other_size(root: Path) -> None:
    write_png(root / "test" / "ant" / "00.png", 0, np.random.default_rng(1), size=(12, 12))


BAD = {
    "missing array": (_bad_npz(y_test=None), "no array 'y_test'"),
    "mismatched lengths": (_bad_npz(y_train=_labels(40)), "x_train has 48 samples but y_train has 40"),
    "float labels": (_bad_npz(y_train=_labels(48).astype(np.float32)), "integer labels"),
    "negative label": (_bad_npz(y_test=_labels(16) - 1), "negative label -1"),
    "label gap": (_bad_npz(y_train=np.where(_labels(48) == 2, 4, _labels(48))), "no sample of class 2"),
    "unseen test label": (_bad_npz(y_test=np.full(16, 7)), "y_test holds label 7"),
    "train and test shapes": (_bad_npz(x_test=np.zeros((16, 5), np.float32)), "differ in shape"),
    "not an archive": (_garbage_file, "not an .npz archive"),
    "pickled objects": (_object_array, "never unpickled"),
    "empty class folder": (_bad_folder(_empty_class), "holds no images"),
    "class only in test": (_bad_folder(_extra_class), "class 'eel' is only in test"),
    "string labels": (_bad_npz(y_train=np.array(CLASSES)[_labels(48)]), "map them to integers 0..K-1"),
    "unreadable image": (_bad_folder(_unreadable), "05.png cannot be read"),
    "image sizes differ": (_bad_folder(_other_size), "images must share one size"),
    "missing test folder": (_bad_folder(lambda r: os.rename(r / "test", r / "val")), "no test folder"),
    "npz without a path": (lambda d: "{name: npz}", "'dataset.path': npz needs"),
}


def _refused(capsys, tmp_path: Path, argv: list[str], expected: str, written: list[Path]) -> None:
    cache = Path(os.environ[CACHE_ENV])
    before = sorted(cache.iterdir()) if cache.exists() else []
    assert cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("clutune: error: ") and expected in err[0], err
    for path in [*written, tmp_path / "oracles", tmp_path / "mlflow.db"]:
        assert not path.exists(), path
    assert (sorted(cache.iterdir()) if cache.exists() else []) == before  # no decoded-image cache entry


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_data_is_refused_by_run_before_anything_is_written(case: str, tmp_path: Path, capsys) -> None:
    make, expected = BAD[case]
    config = write_config(tmp_path, make(tmp_path))
    out = tmp_path / "out"
    argv = ["run", "--config", str(config), "--method", "finetune", "--out", str(out)]
    _refused(capsys, tmp_path, [*argv, "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"], expected, [out])


@pytest.mark.parametrize("command", ["compare", "study", "sweep"])
def test_bad_data_is_refused_by_every_grid_command(command: str, tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, BAD["label gap"][0](tmp_path))
    out, sweeps = tmp_path / "out", tmp_path / "sweeps"
    argv = [command, "--config", str(config), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"]
    if command == "sweep":
        argv += ["--method", "finetune", "--trials", "1"]
    else:
        argv += ["--methods", "finetune", "--out", str(out)]
    argv += ["--set", f"sweep.storage_path={sweeps}"]
    _refused(capsys, tmp_path, argv, "no sample of class 2", [out, sweeps])


def test_a_model_that_cannot_take_the_inputs_is_refused_before_work(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, KINDS["npz-vectors"](tmp_path), "{name: cnn}")
    out = tmp_path / "out"
    argv = ["run", "--config", str(config), "--method", "finetune", "--out", str(out), "--no-tracking"]
    _refused(capsys, tmp_path, argv, "cnn needs image inputs", [out])
