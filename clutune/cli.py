"""``clutune`` command line. Every input is validated before any work starts; bad input exits 2 with one line.

Each command parses its flags, calls its function in :mod:`clutune.api`, prints and sets the exit status: the
platform is reached only through the API (tests/test_thin_cli.py), so Python callers get the same behaviour."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from clutune.docs_links import docs_page
from clutune.errors import DISK_FULL_ERRNOS, DiskFull, RunFailed, UserError
from clutune.guards.masking import mask


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="a YAML file or a preset name (e.g. digits-agnostic-class)")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted, e.g. oracle.epochs=30) or a method hyperparameter (gamma=2)",
    )


def _overrides(args: argparse.Namespace) -> dict:
    from clutune.core.config import sets_to_overrides

    return sets_to_overrides(args.sets)


def cmd_run(args: argparse.Namespace) -> int:
    import clutune
    from clutune.core import storage

    result = clutune.run(
        args.config,
        method=args.method,
        out=args.out,
        seed=args.seed,
        save_predictions=args.save_predictions,
        overwrite=args.overwrite,
        overrides=_overrides(args),
        tracking_uri=args.tracking_uri,
        tracking=not args.no_tracking,
    )
    if result.mlflow_run_id:
        print(f"MLflow run {result.mlflow_run_id} in {mask(result.tracking_uri)}")
    print(f"wrote {storage.join(result.out, 'results.parquet')} ({len(result.rows)} rows)")
    return 0


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def cmd_sweep(args: argparse.Namespace) -> int:
    import clutune

    summary = clutune.sweep(
        args.config,
        method=args.method,
        trials=args.trials,
        space=args.space,
        concurrency=args.concurrency,
        resume=args.resume,
        seed=args.seed,
        scheduler=args.scheduler,
        overrides=_overrides(args),
        address=args.address,
        num_cpus=args.num_cpus,
        tracking_uri=args.tracking_uri,
        tracking=not args.no_tracking,
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
    import clutune

    methods, seeds = _methods_and_seeds(args)
    result = clutune.compare(args.config, methods=methods, seeds=seeds, out=args.out, **_grid_flags(args))
    print(f"compare finished in {result.seconds:.0f} s; over seeds {seeds}, each run's mean over its requests:")
    print(result.to_markdown())
    print(f"wrote {result.out / 'results.parquet'} ({len(result.rows)} rows) and {result.out / 'comparison.md'}")
    return 0


def _grid_flags(args: argparse.Namespace) -> dict:
    """The flags compare and study share, as the API's keywords."""
    return {
        "overrides": _overrides(args),
        "overwrite": args.overwrite,
        "resume": args.resume,
        "address": args.address,
        "num_cpus": args.num_cpus,
        "tracking_uri": args.tracking_uri,
        "tracking": not args.no_tracking,
    }


def _methods_and_seeds(args: argparse.Namespace) -> tuple[list[str], list[int]]:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    return methods, _seeds(args.seeds)


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",")]
    except ValueError:
        raise UserError(f"--seeds {text!r}: expected integers separated by commas") from None


def cmd_study(args: argparse.Namespace) -> int:
    import clutune

    methods, seeds = _methods_and_seeds(args)
    study = clutune.study(args.config, methods=methods, seeds=seeds, out=args.out, **_grid_flags(args))
    print(f"study finished in {study.seconds / 60:.1f} min: {len(study.rows)} rows")
    print(f"oracles: {study.oracles_trained} trained, {study.oracles_total - study.oracles_trained} from cache")
    print(f"wrote {study.out / 'results.parquet'}, {study.out / 'curves.png'} and {study.out / 'summary.md'}")
    print(f"MLflow parent run {study.parent_run_id} in {mask(study.tracking_uri)}")
    return 0


def cmd_oracles(args: argparse.Namespace) -> int:
    """Train a scenario's oracles (--config), prune the cache (--prune), or report its size (--cache-dir)."""
    import clutune

    state = clutune.oracles(
        args.config or None,
        overrides=args.sets,
        cache_dir=args.cache_dir or None,
        prune=args.prune,
        max_age=args.max_age,
        max_size=args.max_size,
        address=args.address,
        num_cpus=args.num_cpus,
    )
    print(f"cache {state.root}: {state.oracles} oracles, {state.size}")
    return 0


_TRACKING_URI_HELP = "MLflow URI (default: $MLFLOW_TRACKING_URI, ./mlflow.db)"


def _add_tracking_uri(p: argparse.ArgumentParser, what: str = _TRACKING_URI_HELP) -> None:
    p.add_argument("--tracking-uri", default=None, help=what)


def _add_study_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--study-storage",
        default=None,
        metavar="URL",
        help="the sweep's Optuna RDB storage; a storage the folder's record names is never opened on its own",
    )


def _add_tracking_args(p: argparse.ArgumentParser) -> None:
    _add_tracking_uri(p)
    p.add_argument("--no-tracking", action="store_true", help="record nothing in MLflow (results.parquet only)")


def cmd_ui(args: argparse.Namespace) -> int:
    import clutune

    server = clutune.ui(tracking_uri=args.tracking_uri, host=args.host, port=args.port, browser=not args.no_browser)
    return server.wait()


def cmd_dashboard(args: argparse.Namespace) -> int:
    import clutune

    return clutune.dashboard(args.sweep_dir, host=args.host, port=args.port, study_storage=args.study_storage).wait()


def cmd_report(args: argparse.Namespace) -> int:
    import clutune

    path = clutune.report(args.source, out=args.out, tracking_uri=args.tracking_uri, study_storage=args.study_storage)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, self-contained: open it in any browser, offline)")
    return 0


def cmd_aggregate(args: argparse.Namespace) -> int:
    import clutune

    seeds = None if args.seeds is None else _seeds(args.seeds)
    result = clutune.aggregate(args.folders, out=args.out, seeds=seeds)
    print(result.to_markdown(), end="")
    written = "aggregate.md, aggregate.csv, scores.csv, floors.csv, leave_one_out.csv and performance_profile.png"
    print(f"wrote {args.out}/{written}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import clutune

    frame = clutune.export(args.experiment, out=args.out, tracking_uri=args.tracking_uri)
    print(f"wrote {args.out}: {len(frame)} rows, {frame['run_id'].nunique() if len(frame) else 0} runs")
    return 0


def cmd_sync(args: argparse.Namespace) -> int:
    import clutune

    done = clutune.sync(args.source, tracking_uri=args.tracking_uri)
    print(
        f"synced {args.source} to {mask(done.uri)}: parent {done.parent_id}, {done.runs_created} runs created, "
        f"{done.steps_logged} request steps and {done.artifacts_logged} artifacts written"
    )
    return 0


def cmd_check_method(args: argparse.Namespace) -> int:
    import clutune

    report = clutune.check_method(args.name, seed=args.seed)
    print(report.table())
    return 0 if report.passed else 1


class _Parser(argparse.ArgumentParser):
    """argparse's own refusals (a missing flag, ``--trials abc``) in the one line every other refusal takes;
    argparse would print the usage first, over several lines, and name the subcommand in the prefix."""

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("clutune").strip()
        self.exit(2, f"clutune: error: {message} (see clutune {command + ' ' if command else ''}--help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="clutune", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one method through a scenario and write results.parquet")
    _add_config_args(p)
    p.add_argument("--method", required=True, help=f"method name (the Methods page: {docs_page('methods')})")
    p.add_argument("--out", required=True, help="output folder for results.parquet (and predictions/)")
    p.add_argument("--seed", type=int, default=None, help="run seed (model init, shuffling); default: config seed")
    p.add_argument("--save-predictions", action="store_true", help="also write predictions/request-<k>.parquet")
    p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    _add_tracking_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("sweep", help="tune a method with Ray Tune + Optuna; every trial recorded in MLflow")
    _add_config_args(p)
    p.add_argument("--method", required=True)
    p.add_argument("--space", default=None, help="search space YAML (default: the one shipped for the method)")
    p.add_argument("--trials", type=int, required=True, help="number of trials (Optuna samples)")
    p.add_argument("--concurrency", type=int, default=2, help="trials running at once")
    p.add_argument("--resume", action="store_true", help="continue an interrupted sweep to --trials")
    p.add_argument("--scheduler", choices=["asha", "pbt"], default=None, help="asha (default) or pbt over the stream")
    p.add_argument("--seed", type=int, default=None, help="run seed for every trial; default: config seed")
    _add_tracking_args(p)
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
    _add_tracking_args(p)
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
    _add_tracking_args(p)
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
    _add_tracking_uri(p)
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--no-browser", action="store_true", help="only print the address")
    p.set_defaults(func=cmd_ui)

    p = sub.add_parser("dashboard", help="optuna-dashboard on a sweep's own Optuna study, on 127.0.0.1")
    p.add_argument("sweep_dir", help="a sweep folder (holds optuna-journal.log, or names its RDB study storage)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default loopback only)")
    p.add_argument("--port", type=int, default=8080)
    _add_study_storage(p)
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("report", help="one self-contained HTML page: comparison table, plots, config")
    p.add_argument("source", help="a results folder, a sweep folder, or an MLflow experiment name")
    p.add_argument("--out", required=True, help="the HTML file to write")
    _add_tracking_uri(p, "MLflow URI for an experiment name")
    _add_study_storage(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("aggregate", help="IQM of KL / retrain noise floor across compare or study folders, with CIs")
    p.add_argument("folders", nargs="+", help="compare or study folders, one scenario each, each with a retrain run")
    p.add_argument("--out", required=True, help="folder for aggregate.md, the CSVs and performance_profile.png")
    p.add_argument("--seeds", default=None, help="comma-separated seeds: count only their runs (default: all)")
    p.set_defaults(func=cmd_aggregate)

    p = sub.add_parser("export", help="every run of an MLflow experiment as one Parquet table (results schema)")
    p.add_argument("--experiment", required=True, help="MLflow experiment name")
    _add_tracking_uri(p)
    p.add_argument("--out", required=True, help="the .parquet file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("sync", help="write to MLflow what a folder holds and MLflow misses (no duplicates)")
    p.add_argument("source", help="a folder written by run, compare, study or sweep")
    _add_tracking_uri(p)
    p.set_defaults(func=cmd_sync)

    p = sub.add_parser("check-method", help="check that a method keeps clutune's guarantees on a tiny stream")
    p.add_argument("name", help="a method name: built in or from an installed package's entry point")
    p.add_argument("--seed", type=int, default=0, help="the run seed of the checked runs [0]")
    p.set_defaults(func=cmd_check_method)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a refusal (2), already printed: a status to return, as for the rest
        return e.code if isinstance(e.code, int) else 2
    try:
        code = args.func(args)
        from clutune.api import tracking_failures

        failures = tracking_failures()  # MLflow writes fail soft: report them last
        for line in failures:
            print(f"clutune: error: {line}", file=sys.stderr)
        return 3 if code == 0 and failures else code
    except UserError as e:
        print(f"clutune: error: {e}", file=sys.stderr)
        return 2
    except RunFailed as e:
        print(f"clutune: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a write for want of room outside clutune's own writers (a library's, a log's)
        if e.errno not in DISK_FULL_ERRNOS:
            raise
        print(f"clutune: error: {DiskFull.of(e)}", file=sys.stderr)
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
