"""What the command fuzzer draws and how it judges one input: the command lines of every ``clutune`` command and
the calls of every API function, over received folders (a real run's folder, then damaged: links out of it,
malformed or hostile records, junk tables) and data files (npz archives and image folders, whole or crafted).

The property, for every input: the command succeeds, or fails with a non-zero status and exactly one line
``clutune: error: ...`` on stderr (the API: a UserError or RunFailed of one line), never a traceback; and no file
anywhere in the workspace changes outside the places the input names for writing (the output folder, the MLflow
store, the oracle and data caches). tests/test_fuzz_commands.py runs it in the suite; bench/fuzz.py runs it
longer and writes what it drew to bench/results/fuzz.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from hypothesis import strategies as st
from PIL import Image
from recipes import tiny_config

CONFIG = tiny_config("fuzz", methods=("finetune", "er"))
COMMANDS = ("run", "sweep", "compare", "study", "oracles", "ui", "dashboard", "report", "aggregate", "export",
            "sync", "check-method")  # fmt: skip
HOSTILE = ["", " ", "-1", "0", "nan", "1e308", "99999999999999999999999", "abc", "../../x", "/etc/passwd",
           "a\x1bb", "é" * 200, "file://runs", "ftp://h/x", "http://u:p@h"]  # fmt: skip


@dataclass
class Workspace:
    """The module's shared ground: a real run's folder to damage, its MLflow store, the caches, an outside
    folder that links point at, and the folder each case lives in."""

    root: Path
    origin: Path  # a real `clutune run` output folder
    store: Path  # the sqlite file that run recorded into
    cache: Path  # the oracle cache every case shares
    data_cache: Path
    outside: Path  # what links point to: must never change, and never be read into a report
    config: Path

    @classmethod
    def make(cls, root: Path, run: Callable[[list[str]], int]) -> Workspace:
        outside = root / "outside"
        (outside / "train" / "a").mkdir(parents=True)
        (outside / "secret.txt").write_text("not for a report\n")
        _png(outside / "train" / "a" / "x.png", 0)
        config = root / "config.yaml"  # the cache named in the file: a call whose overrides are dropped keeps it
        config.write_text(yaml.safe_dump({**CONFIG, "oracle": {**CONFIG["oracle"], "cache_dir": str(root / "cache")}}))
        ws = cls(root, root / "origin" / "out", root / "origin" / "mlflow.db", root / "cache", root / "datacache",
                 outside, config)  # fmt: skip
        argv = ["run", "--config", str(config), "--method", "finetune", "--out", str(ws.origin)]
        code = run([*argv, "--tracking-uri", f"sqlite:///{ws.store}"])
        assert code == 0, "the received folder's run failed"
        return ws


@dataclass
class Case:
    """One input's folder: ``inputs/`` (what the user was given), ``out`` (where it may write), ``cwd``."""

    ws: Workspace
    dir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.dir / "out"

    @property
    def cwd(self) -> Path:
        return self.dir / "cwd"

    @property
    def store(self) -> Path:
        return self.dir / "store" / "mlflow.db"

    def writable(self) -> list[Path]:
        """Where a command may write: the output, the store given, and the caches."""
        return [self.out, self.store.parent, self.ws.cache, self.ws.data_cache]


def _png(path: Path, shade: int, size: int = 8) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size), shade, dtype=np.uint8)).save(path)


# ---- received folders ---------------------------------------------------------------------------------------

FOLDER_KINDS = ["whole", "record-truncated", "record-list", "record-junk", "record-dotdot", "record-link-out",
                "record-store-outside", "record-huge", "plot-link-out", "parts-link-out", "table-junk",
                "table-link-out", "folder-link", "empty", "missing", "a-file"]  # fmt: skip


def received_folder(case: Case, kind: str, name: str = "received") -> Path:
    """A copy of the real run's folder, damaged as ``kind`` says, inside the case's inputs."""
    folder = case.dir / "inputs" / name
    folder.parent.mkdir(parents=True, exist_ok=True)
    if kind == "missing":
        return folder
    if kind == "a-file":
        folder.write_text("not a folder\n")
        return folder
    if kind == "empty":
        folder.mkdir()
        return folder
    if kind == "folder-link":
        shutil.copytree(case.ws.origin, folder.with_name(name + "-real"))
        folder.symlink_to(folder.with_name(name + "-real"), target_is_directory=True)
        return folder
    shutil.copytree(case.ws.origin, folder)
    record = folder / "mlflow-record" / "record.json"
    text = record.read_text()
    outside = case.ws.outside
    if kind == "record-truncated":
        record.write_text(text[: len(text) // 2])
    elif kind == "record-list":
        record.write_text("[1, 2, 3]")
    elif kind == "record-junk":
        record.write_bytes(b"\xff\xfe{\x00")
    elif kind == "record-dotdot":
        data = json.loads(text)
        data["children"] = {"../../../x": {"name": "../../evil", "params": {}, "role": "run"}}
        data["artifacts"] = [{"trial": "../../x", "path": "../../../../etc/passwd", "artifact_path": "../.."}]
        data["experiment"] = "../../evil"
        record.write_text(json.dumps(data))
    elif kind == "record-link-out":
        record.unlink()
        record.symlink_to(outside / "secret.txt")
    elif kind == "record-store-outside":
        data = json.loads(text)
        data["uri"] = f"sqlite:///{outside / 'planted.db'}"
        record.write_text(json.dumps(data))
    elif kind == "record-huge":
        data = json.loads(text)
        data["params"] = {f"k{i}": "v" * 1000 for i in range(2000)}
        record.write_text(json.dumps(data))
    elif kind == "plot-link-out":
        plot = next((folder / "plots").rglob("*.png"))
        plot.unlink()
        plot.symlink_to(outside / "secret.txt")
    elif kind == "parts-link-out":
        shutil.rmtree(folder / "parts")
        (folder / "parts").symlink_to(outside, target_is_directory=True)
    elif kind == "table-junk":
        (folder / "results.parquet").write_bytes(b"PAR1 not a table PAR1")
    elif kind == "table-link-out":
        (folder / "results.parquet").unlink()
        (folder / "results.parquet").symlink_to(outside / "secret.txt")
    return folder


# ---- data files ---------------------------------------------------------------------------------------------

NPZ_KINDS = ["whole", "header-1e12-rows", "pickled-object", "beyond-float32", "string-labels", "missing-key",
             "truncated", "not-a-zip", "link-out", "negative-labels"]  # fmt: skip
IMAGE_KINDS = ["whole", "class-link-out", "file-link-out", "not-an-image", "no-test", "mixed-sizes", "empty-class"]


def _arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = rng.normal(size=(60, 6)).astype(np.float32)
    y = np.arange(60) % 3
    return {"x_train": x[:40], "y_train": y[:40], "x_test": x[40:], "y_test": y[40:]}


def _npy_header_claiming(rows: int) -> bytes:
    """A .npy file whose header says ``rows`` float32 rows of 6 and that holds almost nothing."""
    header = repr({"descr": "<f4", "fortran_order": False, "shape": (rows, 6)}).encode()
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\x00" * 24


def npz_file(case: Case, kind: str) -> Path:
    path = case.dir / "inputs" / "data" / "arrays.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = _arrays(np.random.default_rng(0))
    if kind == "link-out":
        target = case.ws.outside / "arrays.npz"
        if not target.exists():
            np.savez(target, **arrays)
        path.symlink_to(target)
        return path
    if kind == "header-1e12-rows":
        import zipfile

        with zipfile.ZipFile(path, "w") as z:
            for key, value in arrays.items():
                z.writestr(f"{key}.npy", _npy_header_claiming(10**12) if key == "x_train" else _npy(value))
        return path
    if kind == "pickled-object":
        arrays["y_train"] = np.array([{"a": 1}] * 40, dtype=object)
    elif kind == "beyond-float32":
        arrays["x_train"] = arrays["x_train"].astype(np.float64) * 1e39
    elif kind == "string-labels":
        arrays["y_train"] = np.array(["cat"] * 40)
    elif kind == "negative-labels":
        arrays["y_train"] = -arrays["y_train"] - 1
    elif kind == "missing-key":
        del arrays["y_test"]
    with path.open("wb") as f:
        np.savez(f, **arrays)
    if kind == "truncated":
        path.write_bytes(path.read_bytes()[:300])
    elif kind == "not-a-zip":
        path.write_bytes(b"\x00" * 100)
    return path


def _npy(value: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, value, allow_pickle=True)
    return buffer.getvalue()


def image_folder(case: Case, kind: str) -> Path:
    root = case.dir / "inputs" / "images"
    for split, count in (("train", 4), ("test", 2)):
        if split == "test" and kind == "no-test":
            continue
        for label, cls in enumerate(("a", "b")):
            for i in range(count):
                size = 8 if not (kind == "mixed-sizes" and i == 0 and cls == "b") else 12
                _png(root / split / cls / f"{i}.png", 60 * label + 10 * i, size)
    if kind == "class-link-out":
        shutil.rmtree(root / "train" / "b")
        (root / "train" / "b").symlink_to(case.ws.outside / "train" / "a", target_is_directory=True)
    elif kind == "file-link-out":
        (root / "train" / "a" / "0.png").unlink()
        (root / "train" / "a" / "0.png").symlink_to(case.ws.outside / "train" / "a" / "x.png")
    elif kind == "not-an-image":
        (root / "train" / "a" / "1.png").write_bytes(b"GIF89a not really")
    elif kind == "empty-class":
        shutil.rmtree(root / "test" / "b")
        (root / "test" / "b").mkdir()
    return root


# ---- command lines ------------------------------------------------------------------------------------------


def _flag(draw: Any, name: str, valid: list[str], hostile_share: float = 0.3) -> list[str]:
    """``[name, value]``: a valid value mostly, a hostile one otherwise; sometimes the flag is left out."""
    choice = draw(st.sampled_from(["valid"] * int(10 * (1 - hostile_share)) + ["hostile"] * int(10 * hostile_share)
                                  + ["absent"]))  # fmt: skip
    if choice == "absent":
        return []
    return [name, draw(st.sampled_from(valid if choice == "valid" else HOSTILE))]


def _tracking(draw: Any, case: Case) -> list[str]:
    kind = draw(st.sampled_from(["none"] * 3 + ["store"] * 2 + ["hostile"]))
    if kind == "none":
        return ["--no-tracking"]
    if kind == "store":
        case.store.parent.mkdir(parents=True, exist_ok=True)
        return ["--tracking-uri", f"sqlite:///{case.store}"]
    return ["--tracking-uri", draw(st.sampled_from(["ftp://h/x", "http://", "sqlite://x.db", "", "bogus://"]))]


def _store(draw: Any, case: Case, copy: bool = False) -> list[str]:
    """``--tracking-uri`` of the commands that only read or sync a store: the case's own (``copy``: a copy of the
    received run's, to read), a hostile one, or none (the default ``./mlflow.db``)."""
    kind = draw(st.sampled_from(["store"] * 3 + ["hostile", "absent"]))
    if kind == "absent":
        return []
    if kind == "hostile":
        return ["--tracking-uri", draw(st.sampled_from(["ftp://h/x", "http://", "sqlite://x.db", "", "bogus://"]))]
    case.store.parent.mkdir(parents=True, exist_ok=True)
    if copy:
        shutil.copyfile(case.ws.store, case.store)
    return ["--tracking-uri", f"sqlite:///{case.store}"]


def _data_sets(draw: Any, case: Case) -> list[str]:
    """The config's dataset, now and then an npz archive or an image folder of the drawn kind."""
    kind = draw(st.sampled_from(["digits"] * 4 + ["npz"] * 2 + ["images"] * 2))
    if kind == "digits":
        return []
    follow = draw(st.sampled_from([[], [], ["dataset.follow_links=true"]]))
    if kind == "npz":
        npz = draw(st.sampled_from(NPZ_KINDS))
        case.notes.append(f"npz:{npz}")
        return ["dataset.name=npz", f"dataset.path={npz_file(case, npz)}", *follow]
    images = draw(st.sampled_from(IMAGE_KINDS))
    case.notes.append(f"images:{images}")
    size = draw(st.sampled_from([[], *[[f"dataset.image_size={n}"] for n in (8, 100000, 0)]]))
    return ["dataset.name=imagefolder", f"dataset.root={image_folder(case, images)}", *size, *follow]


def _sets(items: list[str]) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def _config_sets(draw: Any, case: Case) -> list[str]:
    extra = draw(st.lists(st.sampled_from(["oracle.epochs=1", "seed=1", "probe_size=0", "oracle.lr=-1",
                                           "model.hidden=[-5]", "bogus=1", "scenario.requests=[]",
                                           "oracle.epochs=.nan", "name=../x"]), max_size=2))  # fmt: skip
    return _sets([*_data_sets(draw, case), *extra])


def _received(draw: Any, case: Case, name: str = "received") -> Path:
    kind = draw(st.sampled_from(FOLDER_KINDS))
    case.notes.append(f"folder:{kind}")
    return received_folder(case, kind, name)


@st.composite
def command_lines(draw: Any, case: Case, commands: tuple[str, ...] = COMMANDS) -> list[str]:
    command = draw(st.sampled_from(commands))
    case.notes.insert(0, command)
    config = ["--config", str(case.ws.config)]
    if command == "run":
        return ["run", *config, "--method", draw(st.sampled_from(["finetune", "finetune", "bogus", ""])),
                "--out", str(case.out), *_flag(draw, "--seed", ["0", "4294967295"]),
                *_tracking(draw, case), *_config_sets(draw, case)]  # fmt: skip
    if command in ("compare", "study"):
        return [command, *config, "--methods", draw(st.sampled_from(["finetune", "finetune,er", "bogus", ",", ""])),
                *_flag(draw, "--seeds", ["0", "0,1"]), "--out", str(case.out), *_tracking(draw, case),
                *_flag(draw, "--num-cpus", ["1", "2"]), *_config_sets(draw, case)]  # fmt: skip
    if command == "sweep":
        sets = _config_sets(draw, case) + _sets([f"sweep.storage_path={case.out}"])
        return ["sweep", *config, "--method", "finetune", "--trials", draw(st.sampled_from(["1", "0", "-1", "abc"])),
                *_flag(draw, "--concurrency", ["1"]), *_flag(draw, "--seed", ["0"]),
                *_flag(draw, "--scheduler", ["asha", "pbt"]), *_tracking(draw, case), *sets]  # fmt: skip
    if command == "oracles":
        mode = draw(st.sampled_from(["train", "prune", "describe"]))
        cache = draw(st.sampled_from([str(case.ws.cache), str(case.out), str(case.ws.config), ""]))
        if mode == "train":
            return ["oracles", *config, *_config_sets(draw, case)]
        if mode == "describe":
            return ["oracles", "--cache-dir", cache]
        return ["oracles", "--prune", "--cache-dir", cache, *_flag(draw, "--max-age", ["365", "0"]),
                *_flag(draw, "--max-size", ["1G", "10G"])]  # fmt: skip
    if command == "ui":
        return ["ui", "--no-browser", *_flag(draw, "--host", ["127.0.0.1"]), "--port",
                draw(st.sampled_from([str(_free_port()), "0", "99999", "abc", "-1"])),
                *_store(draw, case, copy=True)]  # fmt: skip
    if command == "dashboard":
        return ["dashboard", str(_received(draw, case)), *_flag(draw, "--host", ["127.0.0.1"]),
                "--port", draw(st.sampled_from([str(_free_port()), "99999", "x"]))]  # fmt: skip
    if command == "report":
        source = draw(st.sampled_from(["folder", "folder", "experiment"]))
        src = str(_received(draw, case)) if source == "folder" else draw(st.sampled_from(["fuzz", "nope", ""]))
        out = draw(st.sampled_from([str(case.out / "report.html"), str(case.out / "report.html"), "", str(case.out)]))
        return ["report", src, "--out", out, *_store(draw, case, copy=True)]
    if command == "aggregate":
        folders = [str(_received(draw, case, f"r{i}")) for i in range(draw(st.integers(1, 2)))]
        return ["aggregate", *folders, "--out", draw(st.sampled_from([str(case.out), ""]))]
    if command == "export":
        store = draw(st.sampled_from(["copy", "copy", "absent"]))
        case.store.parent.mkdir(parents=True, exist_ok=True)
        if store == "copy":
            shutil.copyfile(case.ws.store, case.store)
        name = draw(st.sampled_from(["fuzz", "fuzz", "nope", "", "../x"]))
        out = draw(st.sampled_from([str(case.out / "x.parquet"), str(case.out / "x.parquet"), "", str(case.dir)]))
        return ["export", "--experiment", name, "--tracking-uri", f"sqlite:///{case.store}", "--out", out]
    if command == "sync":
        return ["sync", str(_received(draw, case)), *_store(draw, case)]
    assert command == "check-method"
    return ["check-method", draw(st.sampled_from(["finetune", "bogus", "", "../x", "os:system"])),
            *_flag(draw, "--seed", ["0"])]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- judging one input --------------------------------------------------------------------------------------


def snapshot(root: Path, skip: list[Path]) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` (links not followed) with its size and mtime, except under ``skip``."""
    skipped = [str(p) for p in skip]
    seen = {}
    for folder, dirs, files in os.walk(root):
        if any(folder == s or folder.startswith(s + os.sep) for s in skipped):
            dirs[:] = []
            continue
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            path = os.path.join(folder, name)
            if any(path == s or path.startswith(s + os.sep) for s in skipped):
                continue
            st_ = os.lstat(path)
            seen[path] = (st_.st_size, st_.st_mtime_ns)
    return seen


def changed(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


@contextlib.contextmanager
def interrupt_when_serving(argv: list[str]):
    """A valid ``ui`` or ``dashboard`` serves until Ctrl-C: once its port answers, this sends the main thread the
    SIGINT Ctrl-C would (a real signal, which ends the wait for the server's process), so the command ends as a
    user ends it."""
    port = argv[argv.index("--port") + 1] if "--port" in argv else None
    if argv[0] not in ("ui", "dashboard") or port is None or not port.isdigit() or not 0 < int(port) < 65536:
        yield
        return
    stop = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", int(port)), timeout=1):
                time.sleep(1.0)  # answered: let the command reach its wait before Ctrl-C
                if not stop.is_set():
                    signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
                return
            time.sleep(0.2)

    # Ctrl-C as a terminal delivers it, even where this process was started with SIGINT ignored (a background job)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        signal.signal(signal.SIGINT, previous)


def judge_cli(code: int, stderr: str, argv: list[str]) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr
    served = argv[0] in ("ui", "dashboard") and code in (0, 130)  # ended by the Ctrl-C above
    if code == 0 or served:
        return
    errors = [line for line in lines if line.startswith("clutune: error: ")]
    assert len(errors) == 1, lines


# ---- API calls ----------------------------------------------------------------------------------------------

HOSTILE_VALUES = [None, "", " ", -1, 0, 2**40, "3", 1.5, float("nan"), True, [], [-1], ["x"], {}, {1: 2},
                  b"bytes", Path(""), ("a=1",), "a=1"]  # fmt: skip


def _quiet(line: str) -> None:
    del line


def _valid_arguments(function: str, case: Case, draw: Any) -> dict[str, Any]:
    """Arguments the function runs with, paths as Path or str alike."""
    as_path = draw(st.sampled_from([Path, str]))
    config = as_path(case.ws.config)
    runs = {"config": config, "tracking": False, "log": _quiet, "overrides": {"probe_size": 0}}
    received = lambda: as_path(_received(draw, case))  # noqa: E731 (drawn only by the functions that read one)
    store = f"sqlite:///{case.store}"
    if function in ("export", "report", "ui"):  # a store to read; sync writes into a fresh one
        case.store.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(case.ws.store, case.store)
    return {
        "run": lambda: {**runs, "method": "finetune", "out": as_path(case.out), "seed": 0},
        "compare": lambda: {**runs, "methods": ["finetune"], "out": as_path(case.out), "seeds": [0]},
        "study": lambda: {**runs, "methods": ["finetune"], "out": as_path(case.out)},
        "sweep": lambda: {
            **runs,
            "method": "finetune",
            "trials": 1,
            "overrides": {**runs["overrides"], "sweep.storage_path": str(case.out)},
        },  # fmt: skip
        "aggregate": lambda: {"folders": [received()], "out": as_path(case.out)},
        "oracles": lambda: {"cache_dir": as_path(case.ws.cache), "log": _quiet},
        "report": lambda: {"source": received(), "out": as_path(case.out / "r.html"), "tracking_uri": store},
        "export": lambda: {"experiment": "fuzz", "out": as_path(case.out / "x.parquet"), "tracking_uri": store},
        "sync": lambda: {"source": received(), "tracking_uri": store},
        "check_method": lambda: {"method": draw(st.sampled_from(["finetune", "bogus"])), "seed": 0},
        "ui": lambda: {"tracking_uri": store, "port": _free_port(), "browser": False, "log": _quiet},
        "dashboard": lambda: {"sweep_dir": received(), "port": _free_port(), "log": _quiet},
    }[function]()


API_FUNCTIONS = ("run", "compare", "study", "sweep", "aggregate", "oracles", "report", "export", "sync",
                 "check_method", "ui", "dashboard")  # fmt: skip


@st.composite
def api_calls(draw: Any, case: Case) -> tuple[str, dict[str, Any]]:
    """A function, its valid arguments, then each replaced by a hostile value with a chance of one in four."""
    function = draw(st.sampled_from(API_FUNCTIONS))
    case.notes.insert(0, f"api.{function}")
    kwargs = _valid_arguments(function, case, draw)
    for name in sorted(kwargs):
        if draw(st.integers(0, 3)) == 0:
            kwargs[name] = draw(st.sampled_from(HOSTILE_VALUES))
            case.notes.append(f"{name}={kwargs[name]!r}")
    return function, kwargs
