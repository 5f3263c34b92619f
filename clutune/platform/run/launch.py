"""The one set-up path of every command that runs on Ray (sweep, compare, study, oracles): inputs checked whole,
then the record.

Two phases, so that nothing exists until everything is known good:

1. :func:`prepare_command`: the Ray address answers, every path is absolute, the data loads and the scenario
   builds. No folder, MLflow store, run, cache entry or Ray instance exists yet; the command adds its own checks
   (methods, search space, output folder) around it, all before phase 2.
2. :func:`session`: the libraries' own log lines sent to the folder's ``libraries.log``
   (:mod:`clutune.platform.run.log`), the MLflow tracker, Ray (:func:`local_ray`: started here only when no Ray
   is running in the process, and shut down again when the command ends, so that a second call in the same process
   starts clean), and the leased oracles. When the command fails inside it, its MLflow parent run is marked FAILED,
   from Python as from the shell. ``clutune oracles`` records nothing: it takes the same lease and Ray, without a
   tracker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ray

from clutune.core.config import Config
from clutune.core.experiment import Prepared, prepare
from clutune.guards.pack_memory import check_pack_fits
from clutune.platform.cluster.ray_address import check_ray_address
from clutune.platform.record.tracking import SweepTracker, resolve_tracking_uri
from clutune.platform.run.engine import Oracles, absolutize, ensure_ray, leased_oracles
from clutune.platform.run.log import Log, libraries_logged, print_line


@dataclass(frozen=True)
class Cluster:
    """Where a command's trials and oracle tasks run, and where its record goes: the options every grid command
    shares, named like their command-line flags."""

    address: str | None = None  # a running cluster (host:port, auto, ray://...); None: start a local Ray
    num_cpus: int | None = None  # CPUs of a local Ray; None: all of the machine's
    tracking_uri: str | None = None  # MLflow; None: $MLFLOW_TRACKING_URI, then ./mlflow.db
    tracking: bool = True  # False: nothing goes to MLflow (results.parquet only)


def prepare_command(config: Config, cluster: Cluster) -> Prepared:
    """Phase 1: everything that can be checked without a side effect, the memory of a packed oracle step
    included (an ensemble's members train in packs of up to ``oracle.pack``)."""
    check_ray_address(cluster.address)
    absolutize(config)
    prep = prepare(config)
    oracle = config.oracle
    if oracle.ensemble > 1:
        ds = prep.dataset
        size = min(oracle.pack, oracle.ensemble - 1)
        check_pack_fits(prep.recipe.model, ds.input_shape, ds.num_classes, prep.recipe.batch_size, size)
    return prep


@dataclass
class Session:
    """What a running grid command holds: its prepared inputs, its MLflow record and its oracles."""

    prep: Prepared
    tracker: SweepTracker
    oracles: Oracles


@contextlib.contextmanager
def local_ray(cluster: Cluster) -> Iterator[None]:
    """Ray for one command: joined or started here only when none is running in the process, and then shut down
    when the command ends, so that a second call in the same process starts clean."""
    started = not ray.is_initialized()
    try:
        ensure_ray(cluster.address, cluster.num_cpus)
        yield
    finally:
        if started and ray.is_initialized():
            ray.shutdown()


@contextlib.contextmanager
def session(prep: Prepared, folder: Path, cluster: Cluster, log: Log = print_line, floor: int = 0) -> Iterator[Session]:
    """Phase 2: the record, Ray and the oracles (``floor``: KLoM floor models per scored request), for a command
    whose inputs :func:`prepare_command` passed."""
    with libraries_logged(folder, log):
        uri = resolve_tracking_uri(cluster.tracking_uri)
        experiment = prep.config.sweep.experiment or prep.config.name
        tracker = SweepTracker(uri, experiment, folder, enabled=cluster.tracking)
        try:
            with local_ray(cluster), leased_oracles(prep, log, floor) as oracles:
                yield Session(prep, tracker, oracles)
        except BaseException:
            tracker.fail_parent()
            raise


__all__ = ["Cluster", "Session", "local_ray", "prepare_command", "session"]
