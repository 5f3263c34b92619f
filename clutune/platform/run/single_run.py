"""``clutune run``: one method through one scenario in this process, without Ray, recorded like a grid's trial.

The same order as the grid commands' set-up path (:mod:`clutune.platform.run.launch`): the config, the method's
hyperparameters, the output folder, the data and the model are all checked before the folder, the results
stream or the MLflow run exist.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from clutune.core import storage
from clutune.core.config import ConfigSource, Overrides, bare_overrides, load_config
from clutune.core.experiment import (
    ExperimentRun,
    attack_cost_line,
    method_hparams,
    oracle_for,
    prepare,
    validate_methods_section,
)
from clutune.core.margins import MARGINS_DIR
from clutune.core.oracle import SplitShape, oracle_key, oracle_requests
from clutune.core.results import ResultStream, check_out_dir, compact, format_row
from clutune.errors import MethodFailed, UserError
from clutune.guards.folder_lock import check_unlocked, folder_lock
from clutune.guards.seeds import check_seed_option
from clutune.platform.record.publish import publish_runs
from clutune.platform.record.tracking import SweepTracker, resolve_tracking_uri
from clutune.platform.reports.relapse_report import write_relapse
from clutune.platform.run.log import Log, libraries_logged, print_line
from clutune.platform.run.recurring import RECURRING, failure_line


@dataclass(frozen=True)
class RunOptions:
    """One run's options, named like ``clutune run``'s flags."""

    method: str
    out: str  # a folder, or an object-store URI the finished folder is uploaded to
    seed: int | None = None  # None: the config's seed
    save_predictions: bool = False
    overwrite: bool = False
    tracking_uri: str | None = None
    tracking: bool = True


@dataclass
class RunResult:
    """What ``clutune.run`` returns: the run's rows (one per request) and where they are."""

    rows: pd.DataFrame
    out: str
    run_id: str  # the results' run_id
    mlflow_run_id: str
    tracking_uri: str


def run_single(
    config: ConfigSource, options: RunOptions, overrides: Overrides = None, log: Log = print_line
) -> RunResult:
    loaded = load_config(config, overrides)
    if options.seed is not None:
        loaded.seed = check_seed_option(options.seed, "--seed")
    validate_methods_section(loaded)
    hparams = method_hparams(loaded, options.method, loaded.dataset.name, bare_overrides(overrides))
    out = _out_folder(options.out, options.overwrite)
    check_unlocked(out)
    check_out_dir(out, options.overwrite, resumable=False)
    uri = resolve_tracking_uri(options.tracking_uri)
    prep = prepare(loaded)
    run_key = uuid.uuid4().hex[:12]  # the results' run_id, also the MLflow run's clutune.trial_id
    wanted = oracle_requests(loaded.oracle.policy, loaded.oracle.every, [r.kind for r in prep.scenario.requests])

    def oracle(k: int) -> Any:
        if not wanted[k]:
            return None  # oracle.policy gives this request no oracle
        key = oracle_key(prep.dataset.fingerprint, prep.owned_ids(k), prep.recipe, loaded.oracle.seed)
        if not prep.cache.has(key, SplitShape.of(prep.dataset)):
            log(f"  training the oracle of request {k} ({len(prep.owned_ids(k))} owned samples)")
        return oracle_for(prep, k)

    predictions = out / "predictions" if options.save_predictions else None
    run = ExperimentRun(
        prep, options.method, hparams, loaded.seed, run_key, oracle=oracle, predictions_dir=predictions, margins_out=out
    )
    # Every input is known good from here on: the folder, the stream and the MLflow run may now exist.
    with folder_lock(out), libraries_logged(out, log):
        if options.overwrite:  # a shorter stream must not leave an earlier run's later requests behind
            for stale in [*(out / "predictions").glob("request-*.parquet"), *(out / "parts").glob("*.arrows")]:
                stale.unlink()
            shutil.rmtree(out / MARGINS_DIR, ignore_errors=True)
        stream = ResultStream(out)
        tracker = SweepTracker(uri, loaded.sweep.experiment or loaded.name, out.resolve(), enabled=options.tracking)
        params = {"method": options.method, "seed": loaded.seed, **asdict(hparams)}
        tracker.start_run(f"{loaded.name}-{options.method}-s{loaded.seed}", run_key, loaded.as_dict(), params)
        total = len(prep.scenario)
        what = f"{loaded.name} ({loaded.dataset.name}, {total} requests, seed {loaded.seed})"
        cost = attack_cost_line(prep)
        log(f"clutune run: {options.method} on {what}" + (f"; {cost}" if cost else ""))

        def on_row(row: dict, _run: object) -> None:
            stream.append("run", [row])  # appended as it is measured: a crash loses nothing before it
            tracker.log_request(run_key, row)
            log(format_row(row, total))

        try:
            run.run(on_row)
        except RECURRING as e:  # the grid's line: a method bug that a rerun would repeat, at the method's own line
            tracker.fail_parent()
            kind = prep.scenario.requests[run.done].kind
            raise MethodFailed(failure_line(options.method, run.done, kind, e)) from None
        except BaseException:
            tracker.fail_parent()
            raise
        finally:
            stream.close()
            rows = compact(out)
        frame = pd.DataFrame(rows)
        write_relapse(frame, out)
        if rows:
            publish_runs(tracker, out, frame)  # figures into out/plots/<run_id>/ and onto the run
        tracker.finish({}, {}, {})
        if storage.is_remote(options.out):  # the local working copy goes up whole: results, predictions, plots
            storage.upload(out, options.out)
        return RunResult(frame, options.out, run_key, tracker.parent_id, tracker.uri)


def _out_folder(location: str, overwrite: bool) -> Path:
    """The folder the run writes: ``out`` itself, or for an object store (no append) a local working copy that
    goes up when the run ends."""
    storage.check_location(location, "--out")
    if not storage.is_remote(location):
        return Path(storage.local_path(location))
    if storage.exists(storage.join(location, "results.parquet")) and not overwrite:
        raise UserError(f"--out {location} already holds results.parquet; choose another folder or pass --overwrite")
    folder = storage.staging_dir(location)
    shutil.rmtree(folder, ignore_errors=True)
    return folder


__all__ = ["RunOptions", "RunResult", "run_single"]
