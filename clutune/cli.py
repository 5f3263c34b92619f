"""``clutune`` command line. Every input is validated before any work starts; bad input exits 2 with one line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from clutune.errors import UserError


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
    from clutune.config import bare_overrides, load_config
    from clutune.experiment import ExperimentRun, method_hparams, oracle_for, prepare, validate_methods_section
    from clutune.oracle import oracle_key
    from clutune.results import check_out_dir, format_row, write_results

    config = load_config(args.config, args.sets)
    if args.seed is not None:
        config.seed = args.seed
    validate_methods_section(config)
    hparams = method_hparams(config, args.method, config.dataset.name, bare_overrides(args.sets))
    out = Path(args.out)
    check_out_dir(out, args.overwrite)
    prep = prepare(config)
    total = len(prep.scenario)
    rows: list[dict] = []
    predictions = out / "predictions" if args.save_predictions else None
    if args.overwrite:  # a shorter stream must not leave an earlier run's later requests behind
        for stale in (out / "predictions").glob("request-*.parquet"):
            stale.unlink()
    print(f"clutune run: {args.method} on {config.name} ({config.dataset.name}, {total} requests, seed {config.seed})")

    def on_row(row: dict, _method: object) -> None:
        rows.append(row)
        write_results(out / "results.parquet", rows)
        print(format_row(row, total), flush=True)

    def oracle(k: int):
        if not prep.cache.has(oracle_key(prep.dataset.fingerprint, prep.owned_ids(k), prep.recipe, config.oracle.seed)):
            print(f"  training the oracle of request {k} ({len(prep.owned_ids(k))} owned samples)", flush=True)
        return oracle_for(prep, k)

    ExperimentRun(prep, args.method, hparams, config.seed, oracle=oracle, predictions_dir=predictions).run(on_row)
    print(f"wrote {out / 'results.parquet'} ({len(rows)} rows)")
    return 0


# Ray on loopback only, no token file in the home folder, no usage reporting, trials keep the driver's cwd.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
    "RAY_DEDUP_LOGS": "0",
}


def set_ray_env() -> None:
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_sweep(args: argparse.Namespace) -> int:
    set_ray_env()
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
        seed=args.seed,
        address=args.address,
        num_cpus=args.num_cpus,
    )
    print(f"sweep finished in {summary.seconds:.0f} s: {len(summary.trials)} trials, folder {summary.sweep_dir}")
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
    print(f"MLflow parent run {summary.parent_run_id} in {summary.tracking_uri}")
    print(f"browse it with: {sys.argv[0]} ui --tracking-uri {summary.tracking_uri}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    set_ray_env()
    from clutune.platform.compare import format_table, run_compare

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UserError(f"--seeds {args.seeds!r}: expected integers separated by commas") from None
    out = Path(args.out)
    result = run_compare(
        args.config,
        methods,
        seeds,
        out,
        sets=args.sets,
        address=args.address,
        num_cpus=args.num_cpus,
        overwrite=args.overwrite,
    )
    print(f"compare finished in {result.seconds:.0f} s; mean ± std over seeds {seeds} of each run's request mean:")
    print(format_table(result.table))
    print(f"wrote {out / 'results.parquet'} ({len(result.rows)} rows) and {out / 'comparison.md'}")
    return 0


def cmd_oracles(args: argparse.Namespace) -> int:
    set_ray_env()
    from clutune.config import load_config
    from clutune.experiment import prepare
    from clutune.platform.oracle_pool import plan_oracles, submit_oracles
    from clutune.platform.sweep import absolutize, ensure_ray

    config = load_config(args.config, args.sets)
    absolutize(config)
    prep = prepare(config)
    plan = plan_oracles(prep)
    print(f"{len(plan.owned)} distinct oracles for {len(prep.scenario)} requests; {len(plan.cached)} already cached")
    if not plan.missing:
        return 0
    import ray

    ensure_ray(args.address, args.num_cpus)
    refs = submit_oracles(prep, plan)
    pending = {refs[k]: k for k in plan.missing}
    done = 0
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        outputs = ray.get(ready[0])
        done += 1
        key = pending.pop(ready[0])
        print(
            f"[{done}/{len(plan.missing)}] oracle {key}: {outputs.seconds:.1f} s, {outputs.samples_processed} samples"
        )
    print(f"cache: {prep.cache.root}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    import subprocess

    from clutune.platform.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri]
    cmd += ["--host", args.host, "--port", str(args.port), "--workers", "1"]
    print(f"MLflow UI for {uri} on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
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
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: start local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("compare", help="run several methods on the same scenario, seeds and oracles, in parallel")
    _add_config_args(p)
    p.add_argument("--methods", required=True, help="comma-separated method names")
    p.add_argument("--seeds", default="0", help="comma-separated run seeds (default 0)")
    p.add_argument("--out", required=True, help="output folder for results.parquet and comparison.md")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--address", default=None, help="Ray cluster address; default: start local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("oracles", help="train (or find cached) every oracle of a scenario, in parallel on Ray")
    _add_config_args(p)
    p.add_argument("--address", default=None, help="Ray cluster address; default: start local Ray")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray (default: all)")
    p.set_defaults(func=cmd_oracles)

    p = sub.add_parser("ui", help="serve the MLflow UI on 127.0.0.1")
    p.add_argument("--tracking-uri", default=None, help="MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(func=cmd_ui)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"clutune: error: {e}", file=sys.stderr)
        return 2
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
