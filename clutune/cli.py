"""``clutune`` command line. Every input is validated before any work starts; bad input exits 2 with one line."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import uuid
from pathlib import Path

from clutune.errors import RunFailed, UserError
from clutune.masking import mask


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="a YAML file or a preset name from configs/")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted, e.g. oracle.epochs=30) or a method hyperparameter (gamma=2)",
    )


def cmd_run(args: argparse.Namespace) -> int:
    from clutune import storage
    from clutune.config import bare_overrides, load_config
    from clutune.experiment import ExperimentRun, method_hparams, oracle_for, prepare, validate_methods_section
    from clutune.oracle import oracle_key, oracle_requests
    from clutune.results import ResultStream, check_out_dir, compact, format_row

    config = load_config(args.config, args.sets)
    if args.seed is not None:
        config.seed = args.seed
    validate_methods_section(config)
    hparams = method_hparams(config, args.method, config.dataset.name, bare_overrides(args.sets))
    out = _run_out(args.out, args.overwrite)
    check_out_dir(out, args.overwrite, resumable=False)
    prep = prepare(config)
    total = len(prep.scenario)
    predictions = out / "predictions" if args.save_predictions else None
    if args.overwrite:  # a shorter stream must not leave an earlier run's later requests behind
        for stale in [*(out / "predictions").glob("request-*.parquet"), *(out / "parts").glob("*.arrows")]:
            stale.unlink()
    stream = ResultStream(out)
    run_key = uuid.uuid4().hex[:12]  # the results' run_id, also the MLflow run's clutune.trial_id
    tracker = _run_tracker(args, config, out, run_key, hparams)
    print(f"clutune run: {args.method} on {config.name} ({config.dataset.name}, {total} requests, seed {config.seed})")

    def on_row(row: dict, _method: object) -> None:
        stream.append("run", [row])  # appended as it is measured: a crash loses nothing before it
        tracker.log_request(run_key, row)
        print(format_row(row, total), flush=True)

    wanted = oracle_requests(config.oracle.policy, config.oracle.every, [r.kind for r in prep.scenario.requests])

    def oracle(k: int):
        if not wanted[k]:
            return None  # oracle.policy gives this request no oracle
        if not prep.cache.has(oracle_key(prep.dataset.fingerprint, prep.owned_ids(k), prep.recipe, config.oracle.seed)):
            print(f"  training the oracle of request {k} ({len(prep.owned_ids(k))} owned samples)", flush=True)
        return oracle_for(prep, k)

    run = ExperimentRun(prep, args.method, hparams, config.seed, run_key, oracle=oracle, predictions_dir=predictions)
    try:
        run.run(on_row)
    except BaseException:
        if tracker.parent_id:
            tracker.client.set_terminated(tracker.parent_id, status="FAILED")
        raise
    finally:
        stream.close()
        rows = compact(out)
    _finish_run(tracker, out, rows)
    if storage.is_remote(args.out):  # the local working copy goes up whole: results, predictions, plots
        storage.upload(out, args.out)
    print(f"wrote {storage.join(args.out, 'results.parquet')} ({len(rows)} rows)")
    return 0


def _run_out(location: str, overwrite: bool) -> Path:
    """The folder ``clutune run`` writes: --out itself, or for an object store (no append) a local working copy
    that goes up when the run ends."""
    from clutune import storage

    storage.check_location(location, "--out")
    if not storage.is_remote(location):
        return Path(storage.local_path(location))
    if storage.exists(storage.join(location, "results.parquet")) and not overwrite:
        raise UserError(f"--out {location} already holds results.parquet; choose another folder or pass --overwrite")
    folder = storage.staging_dir(location)
    shutil.rmtree(folder, ignore_errors=True)
    return folder


def _run_tracker(args: argparse.Namespace, config, out: Path, run_key: str, hparams: object):  # -> SweepTracker
    """``clutune run``'s one MLflow run: the sweep's URI rule; params are the config, method, seed, hparams."""
    from dataclasses import asdict

    from clutune.platform.tracking import SweepTracker, resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    tracker = SweepTracker(uri, config.sweep.experiment or config.name, out.resolve(), enabled=not args.no_tracking)
    params = {"method": args.method, "seed": config.seed, **asdict(hparams)}
    tracker.start_run(f"{config.name}-{args.method}-s{config.seed}", run_key, config.as_dict(), params)
    return tracker


def _finish_run(tracker, out: Path, rows: list[dict]) -> None:  # tracker: SweepTracker
    """Figures into out/plots/<run_id>/ and onto the run, then the run is marked finished."""
    import pandas as pd

    from clutune.platform.publish import publish_runs

    if rows:
        publish_runs(tracker, out, pd.DataFrame(rows))
    tracker.finish({}, {}, {})
    if tracker.parent_id:
        print(f"MLflow run {tracker.parent_id} in {mask(tracker.uri)}")


# A local Ray on loopback only, no token file in the home folder, no usage reporting, trials keep the driver's cwd.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "0",
}


def set_ray_env(address: str | None = None) -> None:
    """A driver that joins a cluster (``--address``, or ``RAY_ADDRESS`` as in a Ray job) keeps Ray's own node
    addressing: on loopback it could not find its node among the cluster's, which have the machines' addresses."""
    from clutune.platform.ray_address import joins_cluster

    joining = joins_cluster(address)
    for key, value in RAY_ENV.items():
        if not (joining and key == "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"):
            os.environ.setdefault(key, value)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_sweep(args: argparse.Namespace) -> int:
    set_ray_env(args.address)
    from clutune.platform.sweep import run_sweep

    summary = run_sweep(
        args.config,
        args.method,
        args.trials,
        sets=args.sets,
        space_path=args.space,
        concurrency=args.concurrency,
        resume=args.resume,
        tracking_uri=args.tracking_uri,
        tracking=not args.no_tracking,
        seed=args.seed,
        address=args.address,
        num_cpus=args.num_cpus,
    )
    print(f"sweep finished in {summary.seconds:.0f} s: {len(summary.trials)} trials, folder {summary.location}")
    print(f"oracles: {summary.oracles_trained} trained, {summary.oracles_total - summary.oracles_trained} from cache")
    if summary.best:
        print(f"best trial {summary.best['best_trial']}:")
        for k, v in {**summary.best["best_metrics"], **summary.best["best_params"]}.items():
            print(f"  {k} = {_fmt(v)}")
    else:
        print("no trial completed every request")
    if summary.pareto is not None:
        print(f"Pareto front ({len(summary.pareto)} trials):")
        print(summary.pareto.to_string(index=False))
    if summary.confirmed is not None:
        print("confirmed on fresh seeds (tuned -> confirmed; worse_than_tuned beyond sweep.confirm_tolerance):")
        print(summary.confirmed.to_string(index=False))
    print(f"MLflow parent run {summary.parent_run_id} in {mask(summary.tracking_uri)}")
    print(f"browse it with: clutune ui --tracking-uri {mask(summary.tracking_uri)}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    set_ray_env(args.address)
    from clutune.platform.compare import format_table, run_compare

    methods, seeds = _methods_and_seeds(args)
    out = _grid_out(args.out)
    result = run_compare(
        args.config,
        methods,
        seeds,
        out,
        sets=args.sets,
        address=args.address,
        num_cpus=args.num_cpus,
        overwrite=args.overwrite,
        resume=args.resume,
        tracking_uri=args.tracking_uri,
        tracking=not args.no_tracking,
    )
    print(f"compare finished in {result.seconds:.0f} s; mean ± std over seeds {seeds} of each run's request mean:")
    print(format_table(result.table))
    print(f"wrote {out / 'results.parquet'} ({len(result.rows)} rows) and {out / 'comparison.md'}")
    return 0


def _grid_out(out: str) -> Path:
    """compare and study keep their Tune state in --out, which every node writes checkpoints to: a folder (a
    shared mount on a cluster), or file://; an object store is for sweeps."""
    from clutune import storage

    storage.check_location(out, "--out")
    if storage.is_remote(out):
        raise UserError(f"--out {out}: compare and study write to a folder (a shared mount on a cluster), not {out}")
    return Path(storage.local_path(out))


def _methods_and_seeds(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r}: expected integers separated by commas") from None
    return methods, seeds


def cmd_study(args: argparse.Namespace) -> int:
    set_ray_env(args.address)
    from clutune.platform.study import run_study

    methods, seeds = _methods_and_seeds(args)
    study = run_study(
        args.config,
        methods,
        seeds,
        _grid_out(args.out),
        sets=args.sets,
        address=args.address,
        num_cpus=args.num_cpus,
        overwrite=args.overwrite,
        resume=args.resume,
        tracking_uri=args.tracking_uri,
        tracking=not args.no_tracking,
    )
    print(f"study finished in {study.seconds / 60:.1f} min: {len(study.rows)} rows")
    print(f"oracles: {study.oracles_trained} trained, {study.oracles_total - study.oracles_trained} from cache")
    print(f"wrote {study.out / 'results.parquet'}, {study.out / 'curves.png'} and {study.out / 'summary.md'}")
    print(f"MLflow parent run {study.parent_run_id} in {mask(study.tracking_uri)}")
    return 0


def cmd_oracles(args: argparse.Namespace) -> int:
    """Train a scenario's oracles (--config), prune the cache (--prune), or report its size (--cache-dir)."""
    from clutune.config import OracleConfig, load_config
    from clutune.oracle import OracleCache

    max_age_s, max_bytes = _check_oracles_args(args)
    config = load_config(args.config, args.sets) if args.config else None
    if config is not None and args.cache_dir:
        config.oracle.cache_dir = args.cache_dir
    cache = OracleCache(config.oracle.cache_dir if config else args.cache_dir or OracleConfig().cache_dir)
    if args.prune:
        _prune_oracles(cache, max_age_s, max_bytes)
    elif config is not None:
        _train_oracles(config, args.address, args.num_cpus)
    entries = cache.entries()
    print(f"cache {cache.root}: {len(entries)} oracles, {_fmt_bytes(sum(e.bytes for e in entries))}")
    return 0


def _check_oracles_args(args: argparse.Namespace) -> tuple[float | None, int | None]:
    """Every combination checked before any work; returns the prune limits in seconds and bytes."""
    limited = args.max_age is not None or args.max_size is not None
    if limited and not args.prune:
        raise UserError("--max-age and --max-size only apply with --prune")
    if args.prune and not limited:
        raise UserError("--prune needs a limit: --max-age DAYS and/or --max-size SIZE (e.g. 500M, 2G)")
    if args.config is None and not (args.prune or args.cache_dir):
        raise UserError("oracles: give --config to train, --prune to prune, or --cache-dir to report a cache's size")
    if args.sets and args.config is None:
        raise UserError("--set needs --config")
    if args.max_age is not None and args.max_age < 0:
        raise UserError(f"--max-age {args.max_age:g}: must be at least 0 days")
    max_age_s = None if args.max_age is None else args.max_age * 86400.0
    return max_age_s, None if args.max_size is None else _parse_size(args.max_size)


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def _parse_size(text: str) -> int:
    """``500M``, ``2G``, ``1.5G``, ``800K`` or plain bytes; units are powers of 1024, a trailing B is allowed."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text, re.IGNORECASE)
    if match is None:
        raise UserError(f"--max-size {text!r}: expected a size like 500M, 2G or 1048576")
    return int(float(match[1]) * _SIZE_UNITS[match[2].upper()])


def _fmt_bytes(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n >= _SIZE_UNITS[unit]:
            return f"{n / _SIZE_UNITS[unit]:.1f}{unit}"
    return f"{n}B"


def _prune_oracles(cache, max_age_s: float | None, max_bytes: int | None) -> None:  # cache: OracleCache
    import time

    entries = {e.key: e for e in cache.entries()}
    plan = cache.prune_plan(max_age_s, max_bytes, set())
    for key in cache.remove(plan.remove):
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entries[key].last_used))
        print(f"removed {key} ({_fmt_bytes(entries[key].bytes)}, last used {used})")
    for key in plan.spared:
        print(f"kept {key} ({_fmt_bytes(entries[key].bytes)}): a running job holds a lease on it")
    if not plan.remove and not plan.spared:
        print("nothing to prune: the cache is within the limits")


def _train_oracles(config, address: str | None, num_cpus: int | None) -> None:  # config: Config
    """Only the oracles ``oracle.policy`` needs; the missing ones train in parallel on Ray."""
    set_ray_env(address)
    from clutune.experiment import prepare
    from clutune.platform.engine import absolutize, ensure_ray
    from clutune.platform.oracle_pool import plan_oracles, submit_oracles
    from clutune.platform.ray_address import check_ray_address

    absolutize(config)
    check_ray_address(address)
    prep = prepare(config)
    plan = plan_oracles(prep)
    needed = sum(key is not None for key in plan.key_of_request)
    policy = "" if needed == len(prep.scenario) else f" (oracle.policy {config.oracle.policy}: {needed} get one)"
    print(
        f"{len(plan.owned)} distinct oracles for {len(prep.scenario)} requests{policy}; "
        f"{len(plan.cached)} already cached"
    )
    if not plan.missing:
        return
    import ray

    ensure_ray(address, num_cpus)
    refs = submit_oracles(prep, plan)
    pending = {refs[k]: k for k in plan.missing}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        outputs = ray.get(ready[0])
        done += 1
        key = pending.pop(ready[0])
        cost = f"{outputs.seconds:.1f} s, {outputs.samples_processed} samples"
        print(f"[{done}/{len(plan.missing)}] oracle {key}: {cost}")


def _add_tracking_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)")
    p.add_argument("--no-tracking", action="store_true", help="record nothing in MLflow (results.parquet only)")


def cmd_ui(args: argparse.Namespace) -> int:
    from clutune.platform.serve import serve_mlflow

    return serve_mlflow(args.tracking_uri, args.host, args.port, open_browser=not args.no_browser)


def cmd_dashboard(args: argparse.Namespace) -> int:
    from clutune.platform.serve import serve_dashboard

    return serve_dashboard(Path(args.sweep_dir), args.host, args.port)


def cmd_report(args: argparse.Namespace) -> int:
    from clutune.platform.report import write_report

    path = write_report(args.source, Path(args.out), args.tracking_uri)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, self-contained: open it in any browser, offline)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from clutune.platform.export import export_experiment

    frame = export_experiment(args.experiment, args.tracking_uri, Path(args.out))
    print(f"wrote {args.out}: {len(frame)} rows, {frame['run_id'].nunique() if len(frame) else 0} runs")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    from clutune.platform.sync import sync_folder

    done = sync_folder(Path(args.source), args.tracking_uri)
    print(
        f"synced {args.source} to {done.uri}: parent {done.parent_id}, {done.runs_created} runs created, "
        f"{done.steps_logged} request steps and {done.artifacts_logged} artifacts written"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clutune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one method through a scenario and write results.parquet")
    _add_config_args(p)
    p.add_argument("--method", required=True, help="method name (see README, Methods)")
    p.add_argument("--out", required=True, help="output folder for results.parquet (and predictions/)")
    p.add_argument("--seed", type=int, default=None, help="run seed (model init, shuffling); default: config seed")
    p.add_argument("--save-predictions", action="store_true", help="also write predictions/request-<k>.parquet")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    _add_tracking_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="tune a method with Ray Tune + Optuna; every trial recorded in MLflow")
    _add_config_args(p)
    p.add_argument("--method", required=True)
    p.add_argument("--space", default=None, help="search space YAML (default: search_spaces/<method>.yaml)")
    p.add_argument("--trials", type=int, required=True, help="number of trials (Optuna samples)")
    p.add_argument("--concurrency", type=int, default=2, help="trials running at once")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep to --trials")
    p.add_argument("--seed", type=int, default=None, help="run seed for every trial; default: config seed")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)")
    p.add_argument("--no-tracking", action="store_true", help="record nothing in MLflow (results.parquet only)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: start local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("compare", help="run several methods on the same scenario, seeds and oracles, in parallel")
    _add_config_args(p)
    p.add_argument("--methods", required=True, help="comma-separated method names")
    p.add_argument("--seeds", default="0", help="comma-separated run seeds (default 0)")
    p.add_argument("--out", required=True, help="output folder for results.parquet and comparison.md")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--resume", action="store_true", help="continue an interrupted compare in --out")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)")
    p.add_argument("--no-tracking", action="store_true", help="record nothing in MLflow (results.parquet only)")
    p.add_argument("--address", default=None, help="Ray cluster address; default: start local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "study", help="long-stream stability study: methods x seeds, curves per request, drift slopes, MLflow"
    )
    _add_config_args(p)
    p.add_argument("--methods", default="ugclu,er,derpp,sfron,finetune", help="comma-separated method names")
    p.add_argument("--seeds", default="0", help="comma-separated run seeds (default 0)")
    p.add_argument("--out", required=True, help="folder for results.parquet, curves.png and summary.md")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study in --out")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)")
    p.add_argument("--no-tracking", action="store_true", help="record nothing in MLflow (results.parquet only)")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: start local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser(
        "oracles", help="train (or find cached) the oracles of a scenario on Ray; prune or size the oracle cache"
    )
    p.add_argument("--config", default=None, help="a YAML file or a preset name (not needed with --prune/--cache-dir)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    p.add_argument("--cache-dir", default=None, help="oracle cache (default: the config's oracle.cache_dir)")
    p.add_argument("--prune", action="store_true", help="remove least recently used oracles (needs a limit)")
    p.add_argument("--max-age", type=float, default=None, metavar="DAYS", help="prune oracles unused this long")
    p.add_argument("--max-size", default=None, metavar="SIZE", help="prune down to this size (500M, 2G)")
    p.add_argument("--address", default=None, help="Ray cluster address; default: start local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.set_defaults(func=cmd_oracles)

    p = sub.add_parser("ui", help="serve the MLflow UI on 127.0.0.1 and print the runs table's address")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--no-browser", action="store_true", help="only print the address")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("dashboard", help="optuna-dashboard on a sweep's own Optuna study, on 127.0.0.1")
    p.add_argument("sweep_dir", help="a sweep folder (holds optuna-journal.log, or names its RDB study storage)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("report", help="one self-contained HTML page: comparison table, plots, config")
    p.add_argument("source", help="a results folder, a sweep folder, or an MLflow experiment name")
    p.add_argument("--out", required=True, help="the HTML file to write")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI for an experiment name")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="every run of an MLflow experiment as one Parquet table (results schema)")
    p.add_argument("--experiment", required=True, help="MLflow experiment name")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)")
    p.add_argument("--out", required=True, help="the .parquet file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sync", help="write to MLflow what a folder holds and MLflow misses (no duplicates)")
    p.add_argument("source", help="a folder written by run, compare, study or sweep")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)")
    p.set_defaults(func=cmd_sync)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        tracking = sys.modules.get("clutune.platform.tracking")  # MLflow writes fail soft: report them last
        failures = tracking.tracking_failures() if tracking is not None else []
        for line in failures:
            print(f"clutune: error: {line}", file=sys.stderr)
        return 3 if code == 0 and failures else code
    except UserError as e:
        print(f"clutune: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"clutune: error: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        from clutune.clu.runner import Diverged

        if not isinstance(e, Diverged):
            raise
        print(f"clutune: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clutune: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
