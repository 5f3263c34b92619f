"""Sweeps on an object store: a real S3-compatible server (moto's standalone server on 127.0.0.1) holds the Tune
experiment, results.parquet and the oracle cache, all written through pyarrow.fs; a second sweep on the same
scenario finds every oracle there and trains none. Bad locations are refused with one line before any work."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from clutune.cli import main
from clutune.core.oracle import OracleCache

CLUTUNE = str(Path(sys.executable).parent / "clutune")


def _config(tiny_scenario, folder: Path) -> Path:
    return tiny_scenario(folder, "tiny-s3", oracle={"epochs": 3}, sweep={"asha": False}, file="tiny")


@pytest.fixture
def s3(tmp_path, monkeypatch, free_port):
    """moto's S3 server on a free loopback port with one bucket; the standard AWS variables point at it."""
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True)
        fs.create_dir("clutune")
        yield {"fs": fs, "env": env}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def _sweep(config: Path, storage: str, cwd: Path, env: dict[str, str], trials: int, sets: list[str]):
    cmd = [CLUTUNE, "sweep", "--config", str(config), "--method", "ugclu", "--trials", str(trials), "--num-cpus", "2"]
    cmd += ["--set", f"sweep.storage_path={storage}", "--set", "oracle.cache_dir=s3://clutune/oracles"]
    cmd += sets + ["--tracking-uri", f"sqlite:///{cwd / 'mlflow.db'}"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # a sweep, a grid or an oracle plan on Ray: `make test` runs it (docs/testing.md)
def test_sweep_on_s3_stores_everything_there_and_a_second_trains_no_oracle(s3, tmp_path, tiny_scenario, fast_sets):
    config = _config(tiny_scenario, tmp_path)
    home = tmp_path / "home"  # the driver's local working copy of the remote sweep folder lives under HOME
    env = {**os.environ, **s3["env"], "HOME": str(home)}
    first = _sweep(config, "s3://clutune/sweeps", tmp_path, env, trials=2, sets=fast_sets)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "oracles: 4 trained, 0 from cache" in first.stdout

    fs = s3["fs"]
    folder = "clutune/sweeps/tiny-s3-ugclu"
    names = {info.base_name for info in fs.get_file_info(pafs.FileSelector(folder))}
    assert {"results.parquet", "trials.csv", "tuner.pkl", "optuna-journal.log", "mlflow-record"} <= names, names
    rows = pq.read_table(f"{folder}/results.parquet", filesystem=fs).to_pylist()
    assert len(rows) == 2 * 4 and len({r["trial_id"] for r in rows}) == 2
    checkpoints = fs.get_file_info(pafs.FileSelector(folder, recursive=True))
    assert any(info.base_name == "state.pt" for info in checkpoints)  # trial checkpoints went to S3 too
    cache = OracleCache("s3://clutune/oracles")
    assert len(cache.entries()) == 4 and not list((tmp_path / "oracles").glob("*"))
    assert all(cache.load(e.key) is not None for e in cache.entries())

    second = _sweep(config, "s3://clutune/sweeps2", tmp_path, env, trials=1, sets=fast_sets)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "oracles: 0 trained, 4 from cache" in second.stdout
    assert fs.get_file_info("clutune/sweeps2/tiny-s3-ugclu/results.parquet").type == pafs.FileType.File


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("sweep.storage_path", "ftp://host/sweeps", "unsupported URI scheme ftp://"),
        ("oracle.cache_dir", "hdfs://namenode/oracles", "unsupported URI scheme hdfs://"),
        ("sweep.storage_path", "s3:///no-bucket", "names no bucket"),
    ],
)
def test_an_unsupported_location_is_one_line_before_any_work(
    tmp_path, capsys, monkeypatch, tiny_scenario, key, value, message
):
    monkeypatch.chdir(tmp_path)
    config = _config(tiny_scenario, tmp_path)
    argv = ["sweep", "--config", str(config), "--method", "ugclu", "--trials", "1", "--set", f"{key}={value}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("clutune: error: ") and message in err and "\n" not in err
    assert list(tmp_path.iterdir()) == [config]  # nothing written, no Ray started


@pytest.mark.parametrize(
    ("address", "message"),
    [
        pytest.param(
            "127.0.0.1:FREE_PORT", "no Ray cluster answers at 127.0.0.1:", marks=pytest.mark.slow
        ),  # waits too
        pytest.param("http://127.0.0.1:8265", "dashboard address", marks=pytest.mark.slow),  # waits out a connection
    ],
)
def test_an_unreachable_address_is_one_line_before_any_work(tmp_path, free_port, tiny_scenario, address, message):
    config = _config(tiny_scenario, tmp_path)
    address = address.replace("FREE_PORT", str(free_port()))
    cmd = [CLUTUNE, "sweep", "--config", str(config), "--method", "ugclu", "--trials", "1", "--address", address]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().startswith("clutune: error: --address") and message in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert time.perf_counter() - t0 < 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]
