"""A full disk, for real: ``clutune run`` in a child process whose file size limit (RLIMIT_FSIZE, with SIGXFSZ
ignored) makes the kernel refuse any write past a size, as a full disk refuses the next block. Whatever write
meets the limit, the command ends in one line and exit 1, and every file it left is whole or absent: the parts
cut back to their whole batches, no half plot, no temporary file."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from PIL import Image
from recipes import tiny_config

from clutune.cli import main

REPO = Path(__file__).resolve().parents[1]

CONFIG = tiny_config(
    "full-disk",
    classes_per_task=2,
    requests=[{"learn": {"task": t}} for t in range(4)] + [{"unlearn": {"classes": [0]}}],
)

# The child: the limit first, then the command line, exactly as a user's shell would start it.
CHILD = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]),) * 2)
from clutune.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _argv(config: Path, out: Path, cache: Path) -> list[str]:
    return ["run", "--config", str(config), "--method", "finetune", "--out", str(out), "--no-tracking",
            "--set", f"oracle.cache_dir={cache}"]  # fmt: skip


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    """The config and an oracle cache that already holds its oracle, so the limited runs write only the output
    folder; and the sizes an unlimited run writes there, which the limits are chosen between."""
    root = tmp_path_factory.mktemp("full-disk")
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(_argv(config, root / "whole", root / "cache")) == 0
    sizes = {str(p.relative_to(root / "whole")): p.stat().st_size for p in (root / "whole").rglob("*") if p.is_file()}
    return config, root / "cache", sizes


def _whole(path: Path) -> None:
    """Read the file through the reader of its kind, strictly: a torn file raises."""
    if path.suffix == ".arrows":
        with pa.ipc.open_stream(path.read_bytes()) as reader:
            reader.read_all()
    elif path.suffix == ".parquet":
        pq.read_table(path)
    elif path.suffix == ".json":
        json.loads(path.read_text())
    elif path.suffix == ".png":
        with Image.open(path) as im:
            im.load()
    elif path.suffix == ".pt":
        torch.load(path, weights_only=True)
    elif path.suffix == ".csv":
        pd.read_csv(path)
    else:
        raise AssertionError(f"a file of an unexpected kind: {path}")


# parts/ in the fast loop, plots/ in `make test` (each a run in a child process)
@pytest.mark.parametrize("where", ["parts", pytest.param("plots", marks=pytest.mark.slow)])
def test_a_full_disk_is_one_line_and_leaves_every_file_whole_or_absent(tmp_path, cached, where):
    config, cache, sizes = cached
    (part,) = [n for n in sizes if n.startswith("parts/")]
    table = sizes["results.parquet"]  # rewritten after each request, so at most this size on the way
    smallest_plot = min(s for n, s in sizes.items() if n.startswith("plots/"))
    # parts: past the record and every table, short of the whole stream (an Arrow stream row is larger than a
    # Parquet one); plots: past every table and part, short of the smallest figure
    larger = sizes[part] if where == "parts" else smallest_plot
    assert larger > max(table, sizes["mlflow-record/record.json"], sizes[part] if where == "plots" else 0), sizes
    limit = (max(table, sizes[part] if where == "plots" else 0) + larger) // 2
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(limit), *_argv(config, out, cache)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("clutune: error: cannot write "), done.stderr
    assert f"/out/{where}/" in lines[0] and "every file already written is whole" in lines[0]
    left = [p for p in out.rglob("*") if p.is_file()]
    assert not [p for p in left if p.name.startswith(".") or p.suffix == ".tmp"], left
    for path in left:
        _whole(path)
    if where == "parts":  # cut back to whole batches, not removed: the rows measured before the limit are kept
        with pa.ipc.open_stream((out / part).read_bytes()) as reader:
            assert 0 < reader.read_all().num_rows < len(CONFIG["scenario"]["requests"])
