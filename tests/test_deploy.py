"""deploy/rayjob.yaml is a RayJob whose entrypoint is the documented sweep command, parsed and validated by
clutune itself (every --set key exists, every location is one clutune can write), on the Ray the project pins."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from clutune.cli import build_parser
from clutune.core import storage
from clutune.core.config import load_config

REPO = Path(__file__).resolve().parents[1]
JOB = yaml.safe_load((REPO / "deploy" / "rayjob.yaml").read_text())


def _pinned_ray() -> str:
    """The tested Ray release: pinned in constraints.txt (pyproject.toml states a compatible range)."""
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return next(re.match(r"ray==(\S+)", line)[1] for line in lines if line.startswith("ray=="))


def test_rayjob_runs_the_documented_sweep_command():
    assert (JOB["apiVersion"], JOB["kind"]) == ("ray.io/v1", "RayJob")
    entrypoint = JOB["spec"]["entrypoint"]
    guide = " ".join((REPO / "docs" / "cluster.md").read_text().replace("\\\n", " ").split())
    assert " ".join(entrypoint.split()) in guide  # the cluster guide documents exactly this command
    argv = shlex.split(entrypoint)
    assert argv[:2] == ["clutune", "sweep"]
    args = build_parser().parse_args(argv[1:])
    assert args.address is None  # a Ray job finds its cluster through RAY_ADDRESS
    config = load_config(args.config, args.sets)  # every key checked, as the command would
    for location in (config.sweep.storage_path, config.oracle.cache_dir):
        storage.check_location(location, "rayjob")
        assert storage.is_remote(location)  # shared by every pod: nothing a trial writes stays on one node


def test_rayjob_cluster_matches_the_pinned_ray_and_image():
    spec = JOB["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == _pinned_ray()
    base = re.search(r"^FROM rayproject/ray:(\S+?)-py311", (REPO / "deploy" / "Dockerfile").read_text(), re.M)
    assert base and base[1] == _pinned_ray()
    head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
    workers = spec["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert head["image"] == workers["image"]  # the driver and the workers import the same clutune
    assert workers["resources"]["limits"]["nvidia.com/gpu"] >= 1
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
